"""Fixtures of the AWS adapter tests: an ObjectStore over a versioned bucket on moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from custseg.aws import s3 as s3_module
from custseg.aws.s3 import S3_CONFIG, ObjectStore

BUCKET = "custseg-test-bucket"
PART = 5 * 1024 * 1024  # S3's smallest multipart part


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    """An ObjectStore on moto with one versioned bucket, :data:`BUCKET`; its client is
    configured as the functions' (:data:`custseg.aws.s3.S3_CONFIG`)."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=S3_CONFIG)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield ObjectStore(client)


@pytest.fixture
def small_multipart(monkeypatch: pytest.MonkeyPatch) -> int:
    """Uploads above 5 MiB go in 5 MiB parts (S3's minimum) instead of above 256 MiB in
    16 MiB parts: an 11 MiB file goes in three. Returns the part size."""
    monkeypatch.setattr(
        s3_module, "_TRANSFER", TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)
    )
    return PART

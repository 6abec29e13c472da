"""Fixtures of the AWS adapter tests: an ObjectStore over a versioned bucket on moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from custseg.aws.s3 import S3_CONFIG, ObjectStore

BUCKET = "custseg-test-bucket"


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

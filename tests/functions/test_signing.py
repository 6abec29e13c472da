"""The KMS signer and verifier (moto's KMS): a signature verifies only with its own key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from custseg.aws.signing import ALGORITHM, KmsSigner, KmsVerifier
from custseg.model.signing import Signature


@pytest.fixture
def kms() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def _key(kms: Any) -> str:
    return str(
        kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    )


def test_a_signature_verifies_with_its_key_only(kms: Any) -> None:
    trusted, other = _key(kms), _key(kms)
    digest = hashlib.sha256(b"metadata").digest()
    signature = KmsSigner(trusted, kms).sign(digest)
    assert signature.key_id == trusted and signature.algorithm == ALGORITHM
    assert KmsVerifier(trusted, kms).verify(digest, signature)
    assert not KmsVerifier(trusted, kms).verify(hashlib.sha256(b"other").digest(), signature)
    forged = KmsSigner(other, kms).sign(digest)
    assert not KmsVerifier(trusted, kms).verify(digest, forged)
    # the verifier keeps its own key, whatever key the signature names
    assert not KmsVerifier(trusted, kms).verify(
        digest, Signature(key_id=trusted, algorithm=ALGORITHM, value=forged.value)
    )
    assert not KmsVerifier(trusted, kms).verify(
        digest, Signature(key_id=trusted, algorithm="RSASSA_PSS_SHA_256", value=signature.value)
    )


class _Failing:
    def __init__(self, code: str) -> None:
        self.code = code

    def verify(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "Verify")


def test_kms_errors_other_than_an_invalid_signature_propagate() -> None:
    signature = Signature(key_id="k", algorithm=ALGORITHM, value=b"x")
    invalid = KmsVerifier("k", _Failing("KMSInvalidSignatureException"))
    assert invalid.verify(b"d" * 32, signature) is False
    with pytest.raises(ClientError, match="AccessDeniedException"):  # retried, not "forged"
        KmsVerifier("k", _Failing("AccessDeniedException")).verify(b"d" * 32, signature)
    with pytest.raises(ValueError, match="MODEL_SIGNING_KEY"):
        KmsVerifier("")

"""The model-signing key on KMS: the :class:`~custseg.model.signing.Signer` of the training
function and the :class:`~custseg.model.signing.Verifier` of everything that loads or promotes
a model.

The key (``ModelSigningKey`` in the template: ``ECC_NIST_P256``, ``SIGN_VERIFY``) never
leaves KMS; only the training roles (training and fan-out functions) may ``kms:Sign``
with it. Digests are sent as such (``MessageType=DIGEST``, ECDSA over the metadata's SHA-256).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from custseg.model.signing import Signature

ALGORITHM = "ECDSA_SHA_256"


def _client(client: Any | None) -> Any:
    return client if client is not None else boto3.client("kms")


class KmsSigner:
    """Signs digests with one KMS asymmetric key (``kms:Sign``)."""

    def __init__(self, key_id: str, client: Any | None = None) -> None:
        if not key_id:
            raise ValueError("no model-signing key configured (MODEL_SIGNING_KEY)")
        self.key_id = key_id
        self._kms = _client(client)

    def sign(self, digest: bytes) -> Signature:
        answer = self._kms.sign(
            KeyId=self.key_id,
            Message=digest,
            MessageType="DIGEST",
            SigningAlgorithm=ALGORITHM,
        )
        return Signature(
            key_id=str(answer["KeyId"]), algorithm=ALGORITHM, value=answer["Signature"]
        )


class KmsVerifier:
    """Checks signatures against one trusted KMS key (``kms:Verify``).

    The key is the one configured here, never the one a signature names. A signature that
    is not the key's is ``False``; other KMS errors (throttling, access denied) propagate,
    so that the invocation fails and is retried rather than calling the model forged.
    """

    def __init__(self, key_id: str, client: Any | None = None) -> None:
        if not key_id:
            raise ValueError("no model-signing key configured (MODEL_SIGNING_KEY)")
        self._key_id = key_id
        self._kms = _client(client)

    @property
    def key_id(self) -> str:
        return self._key_id

    def verify(self, digest: bytes, signature: Signature) -> bool:
        if signature.algorithm != ALGORITHM:
            return False
        try:
            answer = self._kms.verify(
                KeyId=self._key_id,
                Message=digest,
                MessageType="DIGEST",
                Signature=signature.value,
                SigningAlgorithm=ALGORITHM,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
                return False
            raise
        return bool(answer.get("SignatureValid"))

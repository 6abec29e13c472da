"""A signer and verifier for tests that need no KMS: HMAC-SHA-256 with a secret of their own.

A verifier accepts only its own key's signatures, like the KMS verifier of the stack; a
``TestKey`` made with another secret stands for a forger's key.
"""

from __future__ import annotations

import hashlib
import hmac

from custseg.model.signing import Signature

ALGORITHM = "HMAC_SHA_256"


class TestKey:
    """Signs and verifies with one secret (both protocols of :mod:`custseg.model.signing`)."""

    __test__ = False  # not a pytest test class

    def __init__(self, secret: bytes = b"trusted", key_id: str = "test-key") -> None:
        self._secret = secret
        self._key_id = key_id
        self.verified = 0  # how many signatures were checked

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, digest: bytes) -> Signature:
        value = hmac.new(self._secret, digest, hashlib.sha256).digest()
        return Signature(key_id=self._key_id, algorithm=ALGORITHM, value=value)

    def verify(self, digest: bytes, signature: Signature) -> bool:
        self.verified += 1
        expected = hmac.new(self._secret, digest, hashlib.sha256).digest()
        return signature.algorithm == ALGORITHM and hmac.compare_digest(expected, signature.value)

"""Model signatures: what is signed, and the signer / verifier the artifact code is given.

A model version is signed at training time with a key only the training function may use
(a KMS asymmetric key in the stack: :mod:`custseg.aws.signing`). What is signed is the
SHA-256 of the metadata's canonical JSON (:func:`signed_digest`): every metadata field
except the signature itself, so the model file's SHA-256, the model name and the version
(which name its S3 path), the library versions, the schema and the gates are all covered.
The signature is kept in the metadata file under ``signature``
(``{"key_id", "algorithm", "value"}``, the value base64).

The verifier is bound to the trusted key: it never takes the key from the metadata (a
forger writes what he likes there); ``key_id`` in the metadata only names the signer in
error messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SIGNATURE_FIELD = "signature"


class SignatureError(ValueError):
    """A signature entry that cannot be read (not a mapping, missing fields, bad base64)."""


@dataclass(frozen=True)
class Signature:
    """One signature of a metadata digest."""

    key_id: str  # the key that signed (as the signer reports it: a KMS key ARN)
    algorithm: str  # e.g. ECDSA_SHA_256
    value: bytes

    def to_dict(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "value": base64.b64encode(self.value).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Signature:
        if not isinstance(raw, Mapping):
            raise SignatureError("the signature entry is not an object")
        missing = [k for k in ("key_id", "algorithm", "value") if not isinstance(raw.get(k), str)]
        if missing:
            raise SignatureError(f"the signature entry lacks {', '.join(missing)}")
        try:
            value = base64.b64decode(str(raw["value"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"the signature value is not base64: {exc}") from exc
        if not value:
            raise SignatureError("the signature value is empty")
        return cls(key_id=str(raw["key_id"]), algorithm=str(raw["algorithm"]), value=value)


class Signer(Protocol):
    """Signs a SHA-256 digest with the model-signing key."""

    def sign(self, digest: bytes) -> Signature: ...


class Verifier(Protocol):
    """Checks a signature of a SHA-256 digest against the one trusted model-signing key."""

    @property
    def key_id(self) -> str:
        """The trusted key (for messages)."""
        ...

    def verify(self, digest: bytes, signature: Signature) -> bool:
        """True only when ``signature`` was made over ``digest`` by the trusted key."""
        ...


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8, no NaN.

    Python writes a float as the shortest text that reads back as the same float, so
    metadata parsed from its file gives back the bytes it was signed as.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_digest(metadata: Mapping[str, Any]) -> bytes:
    """The SHA-256 that is signed: of the canonical JSON of ``metadata`` without its
    signature entry."""
    unsigned = {k: v for k, v in metadata.items() if k != SIGNATURE_FIELD}
    return hashlib.sha256(canonical_json(unsigned)).digest()

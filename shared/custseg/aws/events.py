"""The events the handlers accept, parsed by Powertools Parser models.

S3 notifications (``S3Model``) and EventBridge events (``EventBridgeModel``: the
custseg bus's events and the rescore schedule) are validated against AWS's own shapes
before a handler reads a field; an event of another shape fails with
:class:`UnrecognisedEvent`, which names the model and the fields that did not fit
(never their values: an event may carry customer file names).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model
from pydantic import BaseModel, ValidationError

__all__ = ["Bridge", "UnrecognisedEvent", "bridge_event", "decode_s3_key", "s3_records"]

M = TypeVar("M", bound=BaseModel)


class UnrecognisedEvent(ValueError):
    """An event that is not of the shape its handler accepts."""


def _parse(event: dict[str, Any], model: type[M]) -> M:
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        raise UnrecognisedEvent(_fields(model.__name__, exc)) from None


def _fields(model: str, exc: ValidationError) -> str:
    """``not a valid S3Model: Records.0.s3.object.key (missing), ...`` (no values)."""
    errors = exc.errors(include_input=False, include_url=False)
    where = [".".join(str(p) for p in e["loc"]) + f" ({e['type']})" for e in errors[:5]]
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f"not a valid {model}: " + ", ".join(where) + more


def decode_s3_key(raw: str) -> str:
    """S3 event keys are URL-encoded with ``+`` for space: ``My+File.csv`` -> ``My File.csv``."""
    return unquote_plus(raw)


def s3_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """An S3 notification's objects as ``{bucket, key, version_id, etag, size}`` (the key
    decoded; ``size`` in bytes)."""
    out = []
    for record in _parse(event, S3Model).Records:
        obj = record.s3.object
        if obj is None:
            raise UnrecognisedEvent("not an object notification: Records.s3.object (missing)")
        out.append(
            {
                "bucket": record.s3.bucket.name,
                "key": decode_s3_key(obj.key),
                "version_id": obj.versionId,
                "etag": obj.eTag,
                "size": None if obj.size is None else int(obj.size),
            }
        )
    return out


class Bridge:
    """An EventBridge event's id, detail type, time (UTC) and detail."""

    def __init__(self, model: EventBridgeModel) -> None:
        self.id: str = model.id
        self.detail_type: str = model.detail_type
        self.time: dt.datetime = model.time.astimezone(dt.UTC)
        self.detail: dict[str, Any] = model.detail if isinstance(model.detail, dict) else {}


def bridge_event(event: dict[str, Any]) -> Bridge:
    """An EventBridge event (a custseg bus event or the rescore schedule), parsed."""
    return Bridge(_parse(event, EventBridgeModel))

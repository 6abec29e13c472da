"""The handlers' events parse with Powertools Parser models; other shapes are refused
with the fields that did not fit, never their values."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from custseg.aws.events import UnrecognisedEvent, bridge_event, s3_records

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return event


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("s3-*.json")))
def test_every_sample_s3_event_parses_to_its_object(name: str) -> None:
    (record,) = s3_records(_load(name))
    assert record["bucket"].startswith("custseg-dev-data-")
    assert record["version_id"] and record["etag"] and isinstance(record["size"], int)


def test_an_s3_key_is_decoded() -> None:
    (record,) = s3_records(_load("s3-put-incoming.json"))
    assert record["key"] == "incoming/shop/My File été.csv"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EVENTS.glob("*.json") if p.name.startswith(("event", "sch")))
)
def test_every_sample_eventbridge_event_parses(name: str) -> None:
    event = bridge_event(_load(name))
    assert event.time.tzinfo == dt.UTC and event.detail_type and event.id


def test_an_s3_event_missing_its_object_key_names_the_field_not_the_values() -> None:
    event = _load("s3-put-incoming.json")
    del event["Records"][0]["s3"]["object"]["key"]
    with pytest.raises(UnrecognisedEvent) as err:
        s3_records(event)
    message = str(err.value)
    assert "S3Model" in message and "Records.0.s3.object.key" in message
    assert "custseg-dev-data" not in message  # no value of the event


def test_an_eventbridge_event_without_its_time_is_refused() -> None:
    event = _load("schedule-rescore.json")
    del event["time"]
    with pytest.raises(UnrecognisedEvent, match="EventBridgeModel: time"):
        bridge_event(event)

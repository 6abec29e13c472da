"""EventBridge events custseg publishes (source ``custseg``), in one place.

- ``Training Requested`` (score, when no champion exists):
  dataset, model, clean_manifest_key, reason, promote
- ``Model Promoted`` (train): dataset, model, version, clean_manifest_key, reason
- ``Retrain Recommended`` (score / rescore, verdict ``retrain``):
  dataset, model, model_version, run_id, clean_manifest_key, features, reasons, promote
- ``Run Committed`` (score / rescore): dataset, run_id, manifest_key, verdict, rows
- ``Effect Measured`` (score, a campaign results upload): dataset, campaign, effect_key,
  segments_run_id, causal, customers, negative_segments
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "custseg"
TRAINING_REQUESTED = "Training Requested"
MODEL_PROMOTED = "Model Promoted"
RETRAIN_RECOMMENDED = "Retrain Recommended"
RUN_COMMITTED = "Run Committed"
EFFECT_MEASURED = "Effect Measured"


class EventBus:
    def __init__(self, bus_name: str, client: EventBridgeClient | None = None) -> None:
        self.bus_name = bus_name
        self.client: EventBridgeClient = client or boto3.client("events")

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        resp = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {detail_type}: {resp['Entries']}")

"""Event delivery of the emulated stack: the events waiting in each function's queue (S3
notifications and EventBridge events, moto delivering both), taken one function at a
time and completed to the exact shape AWS sends (URL-encoded keys, version ids,
sequencers, the account)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from custseg.local.resources import ClientFor
from custseg.local.template import ACCOUNT_ID, StackSpec


@dataclass
class EventDelivery:
    """Reads and empties the functions' queues (``queues``: logical id -> queue URL)."""

    spec: StackSpec
    client: ClientFor
    queues: dict[str, str]
    # (bucket, key, version id) of each object version a delivered notification named
    _announced: set[tuple[str, str, str]] = field(default_factory=set)
    _announced_lock: threading.Lock = field(default_factory=threading.Lock)

    def _messages(self, url: str) -> list[dict[str, Any]]:
        """The next messages of a queue (at most 10; none: it is empty)."""
        sqs = self.client("sqs")
        messages: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10
        ).get("Messages", [])
        return messages

    def purge(self) -> None:
        """Drop every waiting message of every function's queue."""
        sqs = self.client("sqs")
        for url in self.queues.values():
            while msgs := self._messages(url):
                for m in msgs:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def pending(self) -> int:
        """How many messages wait in the functions' queues (approximately, as SQS says)."""
        sqs = self.client("sqs")
        total = 0
        for url in self.queues.values():
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            total += int(attrs.get("ApproximateNumberOfMessages", 0))
        return total

    def receive(self, logical: str) -> list[dict[str, Any]]:
        """Take the events waiting for one function (deleting them from its queue)."""
        sqs = self.client("sqs")
        url = self.queues[logical]
        out: list[dict[str, Any]] = []
        while msgs := self._messages(url):
            for msg in msgs:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                body = json.loads(msg["Body"])
                if body.get("Event") == "s3:TestEvent":
                    continue
                if "Records" in body:
                    body = self.complete_s3_event(body)
                elif "detail-type" in body:  # moto's EventBridge leaves the account out
                    body.setdefault("account", ACCOUNT_ID)
                out.append(body)
        return out

    def complete_s3_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Fill the fields AWS sends that moto's notification leaves out."""
        for rec in event.get("Records", []):
            rec.setdefault("userIdentity", {"principalId": "AWS:LOCALUSER"})
            rec.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
            rec.setdefault(
                "responseElements",
                {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
            )
            obj = rec["s3"]["object"]
            # AWS URL-encodes keys with + for space but leaves "/" as is; moto encodes "/".
            obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
            obj.setdefault(
                "sequencer", f"{dt.datetime.now().timestamp():.6f}".replace(".", "")[:18]
            )
            bucket = rec["s3"]["bucket"]["name"]
            rec["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "A3LOCALOWNER"})
            rec["s3"]["bucket"].setdefault("arn", f"arn:aws:s3:::{bucket}")
            if "versionId" not in obj and bucket in self.spec.versioned:
                version = self._announced_version(bucket, unquote_plus(obj["key"]), obj.get("eTag"))
                if version is not None:
                    obj["versionId"] = version
        return event

    def _announced_version(self, bucket: str, key: str, etag: str | None) -> str | None:
        """The version a notification announced, found by its ETag (the key's current
        version may already be a later upload's): the oldest version with that ETag not
        handed to an earlier notification, so that uploads of identical bytes keep one
        version each, as AWS's notifications do. None when no version matches."""
        if not etag:
            return None
        wanted = etag.strip('"')
        paginator = self.client("s3").get_paginator("list_object_versions")
        matching = [
            version["VersionId"]
            for page in paginator.paginate(Bucket=bucket, Prefix=key)
            for version in page.get("Versions", [])
            if version["Key"] == key and version["ETag"].strip('"') == wanted
        ]
        if not matching:
            return None
        with self._announced_lock:
            fresh = [v for v in reversed(matching) if (bucket, key, v) not in self._announced]
            chosen = fresh[0] if fresh else matching[0]  # newest first: a redelivery
            self._announced.add((bucket, key, chosen))
        return str(chosen)

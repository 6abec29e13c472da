"""The emulated stack's resources, made (or found) from ``infra/template.yaml``: the
model-signing KMS keys, buckets (with versioning), the idempotency table, the dead-letter
queue, the event bus, one SQS queue per function, and every trigger (S3 notifications and
EventBridge rules delivering to those queues)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from custseg.local.template import FunctionSpec, S3Trigger, StackSpec, placeholder_arn

ClientFor = Callable[[str], Any]
"""A service name -> its (shared) boto3 client."""


def queue_name(logical: str) -> str:
    """The SQS queue that stands for a function's event source."""
    return f"local-{logical}"


@dataclass
class StackResources:
    """Makes the template's resources, or finds those another process made."""

    spec: StackSpec
    client: ClientFor
    made_arns: dict[str, str] = field(default_factory=dict)  # placeholder -> real ARN

    # ---------------------------------------------------------------- signing keys
    def _key_alias(self, logical: str) -> str:
        """The alias a signing key is made under (and found by)."""
        return f"alias/custseg-{self.spec.parameters.get('EnvName', 'local')}-{logical}"

    def _use_key(self, logical: str, arn: str) -> None:
        """Put a made key's ARN where the functions' environment names it."""
        self.made_arns[placeholder_arn(logical)] = arn
        # calls name the key by its real ARN: the IAM check maps it back to the template's
        self.spec.kms_key_arns[arn] = placeholder_arn(logical)

    def create_signing_keys(self) -> None:
        """Make each signing key the template declares, with its alias."""
        kms = self.client("kms")
        for logical, key_spec in self.spec.signing_keys.items():
            meta = kms.create_key(
                KeySpec=key_spec, KeyUsage="SIGN_VERIFY", Description=f"custseg {logical}"
            )["KeyMetadata"]
            kms.create_alias(AliasName=self._key_alias(logical), TargetKeyId=meta["KeyId"])
            self._use_key(logical, meta["Arn"])

    def find_signing_keys(self) -> None:
        """Find the signing keys another process made, by their aliases."""
        kms = self.client("kms")
        for logical in self.spec.signing_keys:
            meta = kms.describe_key(KeyId=self._key_alias(logical))["KeyMetadata"]
            self._use_key(logical, meta["Arn"])

    # ---------------------------------------------------------------- storage and bus
    def create_storage(self) -> None:
        """Make the buckets (versioned where the template says), the idempotency table,
        the dead-letter queue and the event bus."""
        s3 = self.client("s3")
        for name in self.spec.buckets.values():
            s3.create_bucket(Bucket=name)
            if name in self.spec.versioned:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.client("dynamodb").create_table(
            TableName=self.spec.idempotency_table,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.client("sqs").create_queue(QueueName=self.spec.dead_letter_queue)
        self.client("events").create_event_bus(Name=self.spec.event_bus)

    # ---------------------------------------------------------------- triggers
    def create_triggers(self) -> dict[str, str]:
        """Make a queue per function and wire its S3 notifications and EventBridge rules
        to it; the queue URL of each function (logical id)."""
        s3 = self.client("s3")
        queues: dict[str, str] = {}
        notifications: dict[str, list[dict[str, Any]]] = {}
        for logical, fn in self.spec.functions.items():
            url, arn = self._create_queue(logical)
            queues[logical] = url
            for trig in fn.s3_triggers:
                notifications.setdefault(trig.bucket, []).append(_queue_configuration(trig, arn))
            self._put_rules(logical, fn, arn)
        for bucket, configs in notifications.items():
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configs}
            )
        return queues

    def _create_queue(self, logical: str) -> tuple[str, str]:
        """Make a function's queue: (its URL, its ARN)."""
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=queue_name(logical))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    def _put_rules(self, logical: str, fn: FunctionSpec, arn: str) -> None:
        """Put a function's EventBridge rules on the bus, each enabled one targeting ``arn``."""
        events = self.client("events")
        for rule in fn.rules:
            events.put_rule(
                Name=rule.name,
                EventBusName=self.spec.event_bus,
                EventPattern=json.dumps(rule.pattern),
                State="ENABLED" if rule.enabled else "DISABLED",
            )
            if not rule.enabled:
                continue  # moto delivers to a disabled rule's targets; AWS does not
            events.put_targets(
                Rule=rule.name,
                EventBusName=self.spec.event_bus,
                Targets=[{"Id": logical, "Arn": arn}],
            )

    def find_queues(self) -> dict[str, str]:
        """The queue URL of each function (logical id), made by another process."""
        sqs = self.client("sqs")
        return {
            logical: sqs.get_queue_url(QueueName=queue_name(logical))["QueueUrl"]
            for logical in self.spec.functions
        }


def _queue_configuration(trig: S3Trigger, arn: str) -> dict[str, Any]:
    """A bucket notification's queue configuration for one S3 trigger."""
    rules = [{"Name": "prefix", "Value": trig.prefix}] if trig.prefix else []
    if trig.suffix:
        rules.append({"Name": "suffix", "Value": trig.suffix})
    return {
        "QueueArn": arn,
        "Events": trig.events,
        "Filter": {"Key": {"FilterRules": rules}},
    }

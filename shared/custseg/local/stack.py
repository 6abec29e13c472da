"""The emulated stack: the deployed system, on moto, in this process (or behind a local
S3 endpoint with ``custseg serve``).

Everything is built from ``infra/template.yaml``: buckets (with versioning), the event
bus, the idempotency table, the dead-letter queue, the model-signing KMS key (its ARN put
where the functions' environment names it), and every trigger. S3 notifications
and EventBridge rules deliver to one SQS queue per function (moto implements both), and
:meth:`LocalStack.drain` plays Lambda's part: it takes each message, completes S3
records to the exact shape AWS sends (URL-encoded keys, version ids, sequencers),
invokes the handler named by the function's ``ImageConfig.Command`` with that event,
retries failures as the template's ``EventInvokeConfig`` says, and sends events that
still fail to the dead-letter queue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import io
import json
import logging
import os
import sys
import threading
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3

from custseg.local.iam import AwsCall
from custseg.local.template import (
    ACCOUNT_ID,
    REGION,
    FunctionSpec,
    StackSpec,
    placeholder_arn,
    stack_spec,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

LOCAL_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    # events are delivered in rounds (every ingest, then every score): parts uploaded
    # together are registered before scoring starts, so no wait is needed to coalesce them
    "COALESCE_SECONDS": "0",
}


class FakeLambdaContext:
    """What handlers read from the Lambda context."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = (
            spec.environment.get("POWERTOOLS_SERVICE_NAME", "custseg") + "-" + spec.logical_id
        )
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = dt.datetime.now() + dt.timedelta(seconds=spec.timeout_s)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - dt.datetime.now()).total_seconds() * 1000))


_ACTIVE: LocalStack | None = None

# moto checks a condition (If-None-Match, If-Match, a DynamoDB ConditionExpression) and
# then writes, without a lock: two threads can both pass the check, where AWS lets exactly
# one win. Requests to the in-process emulation are therefore served one at a time
# (functions still run side by side; only the emulated service calls are serialised).
_MOTO_LOCK = threading.RLock()
_CLIENTS_LOCK = threading.Lock()


def _serialise_moto_requests() -> None:
    from moto.core.botocore_stubber import BotocoreStubber

    call = BotocoreStubber.__call__
    if getattr(call, "_custseg_serialised", False):
        return

    def serialised(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        with _MOTO_LOCK:
            return call(self, event_name, request, **kwargs)

    serialised._custseg_serialised = True  # type: ignore[attr-defined]
    BotocoreStubber.__call__ = serialised  # type: ignore[method-assign]


# Powertools keeps a process's metrics in one shared set (in Lambda an execution
# environment runs one invocation at a time). The local runner runs functions on threads
# side by side, so one invocation's flush could serialise the set while another empties
# or fills it ("Must contain at least one metric"): each change and flush of the set is
# made under one lock here.
_METRICS_LOCK = threading.RLock()


def _serialise_metric_updates() -> None:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider as Provider,
    )

    for name in ("add_metric", "add_dimension", "add_metadata", "flush_metrics", "clear_metrics"):
        method = getattr(Provider, name)
        if getattr(method, "_custseg_serialised", False):
            continue

        def serialised(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with _METRICS_LOCK:
                return _method(*args, **kwargs)

        serialised._custseg_serialised = True  # type: ignore[attr-defined]
        setattr(Provider, name, serialised)


def _record(params: dict[str, Any], model: Any, **_: Any) -> None:
    stack = _ACTIVE
    if stack is not None and stack._current is not None:
        # The request's parameters without its payload: keeping every uploaded body would
        # hold each file a handler writes in memory for the stack's lifetime.
        kept = {k: v for k, v in params.items() if k not in {"Body", "Message"}}
        service = model.service_model.service_name
        stack.calls.append(AwsCall(stack._current, model.name, kept, service))


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None  # the last attempt's traceback, when every attempt failed
    attempts: int = 1
    failures: list[str] = field(default_factory=list)  # each failed attempt's traceback


@dataclass
class LocalStack:
    """The stack on moto. Use inside ``moto.mock_aws()`` or with ``endpoint_url`` set."""

    spec: StackSpec = field(default_factory=stack_spec)
    endpoint_url: str | None = None
    log_stream: io.TextIOBase | None = None
    invocations: list[Invocation] = field(default_factory=list)
    queues: dict[str, str] = field(default_factory=dict)  # function logical id -> queue url
    _handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # Hooks for fault injection: called before each handler invocation.
    before_invoke: Callable[[str, dict[str, Any]], None] | None = None
    # Every AWS call made by handlers, or by Lambda for them (failure destinations):
    # (function logical id, operation, params, service) - to check IAM (custseg.local.iam).
    calls: list[AwsCall] = field(default_factory=list)
    _current: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _made_arns: dict[str, str] = field(default_factory=dict)  # placeholder -> real ARN
    # (bucket, key, version id) of each object version a delivered notification named
    _announced: set[tuple[str, str, str]] = field(default_factory=set)
    _announced_lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------- set-up
    def client(self, service: str) -> Any:
        """One client per service, made once: creating clients from boto3's default
        session is not thread-safe (parallel deliveries call this), and it is slow."""
        with _CLIENTS_LOCK:
            if service not in self._clients:
                self._clients[service] = boto3.client(  # type: ignore[call-overload]
                    service, region_name=REGION, endpoint_url=self.endpoint_url
                )
            return self._clients[service]

    @property
    def data_bucket(self) -> str:
        return self.spec.buckets["DataBucket"]

    @property
    def artifact_bucket(self) -> str:
        return self.spec.buckets["ArtifactBucket"]

    @property
    def results_bucket(self) -> str:
        return self.spec.buckets["ResultsBucket"]

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for fn in self.spec.functions.values():
            env.update({k: self._made_arns.get(v, v) for k, v in fn.environment.items()})
        env.update(LOCAL_ENV)
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env

    def _key_alias(self, logical: str) -> str:
        return f"alias/custseg-{self.spec.parameters.get('EnvName', 'local')}-{logical}"

    def _use_key(self, logical: str, arn: str) -> None:
        """Put a made key's ARN where the functions' environment names it."""
        self._made_arns[placeholder_arn(logical)] = arn
        # calls name the key by its real ARN: the IAM check maps it back to the template's
        self.spec.kms_key_arns[arn] = placeholder_arn(logical)

    def _create_signing_keys(self) -> None:
        kms = self.client("kms")
        for logical, key_spec in self.spec.signing_keys.items():
            meta = kms.create_key(
                KeySpec=key_spec, KeyUsage="SIGN_VERIFY", Description=f"custseg {logical}"
            )["KeyMetadata"]
            kms.create_alias(AliasName=self._key_alias(logical), TargetKeyId=meta["KeyId"])
            self._use_key(logical, meta["Arn"])

    def _find_signing_keys(self) -> None:
        kms = self.client("kms")
        for logical in self.spec.signing_keys:
            meta = kms.describe_key(KeyId=self._key_alias(logical))["KeyMetadata"]
            self._use_key(logical, meta["Arn"])

    def create(self) -> LocalStack:
        """Create every resource the template declares and wire every trigger."""
        os.environ.update(self.environment())
        if self.endpoint_url is None:
            _serialise_moto_requests()
        _serialise_metric_updates()
        self._create_signing_keys()
        os.environ.update(self.environment())
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
        sqs = self.client("sqs")
        sqs.create_queue(QueueName=self.spec.dead_letter_queue)
        events = self.client("events")
        events.create_event_bus(Name=self.spec.event_bus)

        notifications: dict[str, list[dict[str, Any]]] = {}
        for logical, fn in self.spec.functions.items():
            url = sqs.create_queue(QueueName=f"local-{logical}")["QueueUrl"]
            self.queues[logical] = url
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            for trig in fn.s3_triggers:
                rules = [{"Name": "prefix", "Value": trig.prefix}] if trig.prefix else []
                if trig.suffix:
                    rules.append({"Name": "suffix", "Value": trig.suffix})
                notifications.setdefault(trig.bucket, []).append(
                    {
                        "QueueArn": arn,
                        "Events": trig.events,
                        "Filter": {"Key": {"FilterRules": rules}},
                    }
                )
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
        for bucket, configs in notifications.items():
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configs}
            )
        self.purge()  # moto announces each notification with an s3:TestEvent
        self._record_calls()
        from custseg.aws import runtime

        runtime.reset()
        return self

    def attach(self) -> LocalStack:
        """Use a stack another process created on the same endpoint (no resource is made):
        as a second Lambda function's process shares the first one's AWS resources."""
        if self.endpoint_url is None:
            raise ValueError("attach() needs an endpoint_url (a moto server another process uses)")
        os.environ.update(self.environment())  # the endpoint and credentials first
        self._find_signing_keys()
        os.environ.update(self.environment())
        sqs = self.client("sqs")
        for logical in self.spec.functions:
            self.queues[logical] = sqs.get_queue_url(QueueName=f"local-{logical}")["QueueUrl"]
        self._record_calls()
        from custseg.aws import runtime

        runtime.reset()
        return self

    def _record_calls(self) -> None:
        """Record every AWS call a handler makes (clients created from now on)."""
        global _ACTIVE
        _ACTIVE = self
        session = boto3._get_default_session()
        session.events.register("provide-client-params", _record, unique_id="custseg-record-all")

    def purge(self) -> None:
        sqs = self.client("sqs")
        for url in self.queues.values():
            while True:
                msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                if not msgs:
                    break
                for m in msgs:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    # ---------------------------------------------------------------- handlers
    def handler(self, logical: str) -> Callable[..., Any]:
        if logical not in self._handlers:
            # the handlers: the checkout's functions/ folder, or the installed package
            if (REPO_ROOT / "functions").is_dir() and str(REPO_ROOT) not in sys.path:
                sys.path.insert(0, str(REPO_ROOT))
            module_name, func = self.spec.functions[logical].handler.rsplit(".", 1)
            module = importlib.import_module(module_name)
            self._handlers[logical] = getattr(module, func)
        return self._handlers[logical]

    @contextlib.contextmanager
    def _captured_output(self) -> Iterator[None]:
        """Send handler logs and EMF metrics to ``log_stream`` (or leave them on stdout)."""
        if self.log_stream is None:
            yield
            return
        service = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "custseg"))
        saved = [(h, getattr(h, "stream", None)) for h in service.handlers]
        for h, _ in saved:
            if isinstance(h, logging.StreamHandler):
                h.setStream(self.log_stream)
        try:
            with contextlib.redirect_stdout(self.log_stream), warnings.catch_warnings():
                # Powertools warns about empty metrics and skipped idempotency on stderr.
                warnings.simplefilter("ignore", UserWarning)
                yield
        finally:
            for h, stream in saved:
                if isinstance(h, logging.StreamHandler) and stream is not None:
                    h.setStream(stream)

    def invoke(self, logical: str, event: dict[str, Any]) -> Invocation:
        """Invoke like Lambda's asynchronous path: retries, then the dead-letter queue."""
        spec = self.spec.functions[logical]
        inv = Invocation(function=logical, event=event, attempts=0)
        for attempt in range(spec.max_retries + 1):
            inv.attempts = attempt + 1
            try:
                if self.before_invoke is not None:
                    self.before_invoke(logical, event)
                handler = self.handler(logical)
                self._current = logical
                with self._captured_output():
                    inv.result = handler(event, FakeLambdaContext(spec))
                inv.error = None
                break
            except Exception:  # Lambda catches everything too
                inv.error = traceback.format_exc()
                inv.failures.append(inv.error)
            finally:
                self._current = None
        if inv.error is not None:
            queue_url = self.client("sqs").get_queue_url(QueueName=self.spec.dead_letter_queue)[
                "QueueUrl"
            ]
            # Lambda sends to the on-failure destination with the function's own role.
            self.calls.append(AwsCall(logical, "SendMessage", {"QueueUrl": queue_url}, "sqs"))
            self.client("sqs").send_message(
                QueueUrl=queue_url,
                MessageBody=json.dumps(
                    {
                        "requestContext": {"functionArn": logical, "condition": "RetriesExhausted"},
                        "requestPayload": event,
                        "responsePayload": {"errorMessage": inv.error.splitlines()[-1]},
                    }
                ),
            )
        self.invocations.append(inv)
        return inv

    # ---------------------------------------------------------------- event delivery
    def _complete_s3_event(self, event: dict[str, Any]) -> dict[str, Any]:
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
        return chosen

    def pending(self) -> int:
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
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for msg in msgs:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                body = json.loads(msg["Body"])
                if body.get("Event") == "s3:TestEvent":
                    continue
                if "Records" in body:
                    body = self._complete_s3_event(body)
                out.append(body)

    def drain(
        self, max_rounds: int = 100, progress: Callable[[str, dict[str, Any]], None] | None = None
    ) -> list[Invocation]:
        """Deliver events until every queue is empty (handlers may cause more events)."""
        done: list[Invocation] = []
        for _ in range(max_rounds):
            delivered = False
            for logical in self.spec.functions:
                for event in self.receive(logical):
                    delivered = True
                    if progress is not None:
                        progress(logical, event)
                    done.append(self.invoke(logical, event))
            if not delivered:
                return done
        raise RuntimeError("events still pending after max_rounds: a trigger loop?")

    # ---------------------------------------------------------------- user actions
    def upload(
        self,
        path: Path,
        key: str,
        *,
        metadata: dict[str, str] | None = None,
        bucket: str | None = None,
    ) -> None:
        extra: dict[str, Any] = {"Metadata": metadata} if metadata else {}
        self.client("s3").upload_file(
            str(path), bucket or self.data_bucket, key, ExtraArgs=extra or None
        )

    def put_contract(self, dataset: str, contract_path: Path) -> None:
        from custseg.layout import contract_key

        self.client("s3").put_object(
            Bucket=self.artifact_bucket, Key=contract_key(dataset), Body=contract_path.read_bytes()
        )

    def scheduled_event(
        self, when: dt.datetime, function: str = "RescoreFunction"
    ) -> dict[str, Any]:
        """An EventBridge scheduled event, exactly as AWS delivers it."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/custseg-{function}"],
            "detail": {},
        }

    def tick(self, when: dt.datetime) -> list[Invocation]:
        """Fire the rescore schedule at ``when`` and deliver everything that follows."""
        first = self.invoke("RescoreFunction", self.scheduled_event(when))
        return [first, *self.drain()]

    def dump(self, out_dir: Path) -> list[Path]:
        """Write every object of every bucket under ``out_dir/<bucket>/<key>``."""
        s3 = self.client("s3")
        written = []
        for bucket in self.spec.buckets.values():
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    dest = out_dir / bucket / obj["Key"]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, obj["Key"], str(dest))
                    written.append(dest)
        return written

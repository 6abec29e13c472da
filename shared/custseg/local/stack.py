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

:class:`LocalStack` is the face of three collaborators: :mod:`custseg.local.resources`
(the resources the template declares), :mod:`custseg.local.delivery` (the queues' events,
completed to AWS's shape) and :mod:`custseg.local.invoker` (handlers, retries, the
dead-letter queue).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from custseg.local.delivery import EventDelivery
from custseg.local.iam import AwsCall
from custseg.local.invoker import REPO_ROOT, FakeLambdaContext, Invocation, Invoker
from custseg.local.resources import StackResources
from custseg.local.template import ACCOUNT_ID, REGION, StackSpec, stack_spec

__all__ = ["LOCAL_ENV", "REPO_ROOT", "FakeLambdaContext", "Invocation", "LocalStack"]

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
class LocalStack:
    """The stack on moto. Use inside ``moto.mock_aws()`` or with ``endpoint_url`` set."""

    spec: StackSpec = field(default_factory=stack_spec)
    endpoint_url: str | None = None
    log_stream: io.TextIOBase | None = None
    invocations: list[Invocation] = field(default_factory=list)
    queues: dict[str, str] = field(default_factory=dict)  # function logical id -> queue url
    # Hooks for fault injection: called before each handler invocation.
    before_invoke: Callable[[str, dict[str, Any]], None] | None = None
    # Every AWS call made by handlers, or by Lambda for them (failure destinations):
    # (function logical id, operation, params, service) - to check IAM (custseg.local.iam).
    calls: list[AwsCall] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)
    _resources: StackResources = field(init=False)
    _delivery: EventDelivery = field(init=False)
    _invoker: Invoker = field(init=False)

    def __post_init__(self) -> None:
        self._resources = StackResources(self.spec, self.client)
        self._delivery = EventDelivery(self.spec, self.client, self.queues)
        self._invoker = Invoker(self.spec, self.client, lambda call: self.calls.append(call))

    @property
    def _current(self) -> str | None:
        """The function whose handler runs now (its AWS calls are recorded as its own)."""
        return self._invoker.current

    @_current.setter
    def _current(self, logical: str | None) -> None:
        self._invoker.current = logical

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
        """The functions' environment, made resources' ARNs in place of placeholders."""
        made = self._resources.made_arns
        env: dict[str, str] = {}
        for fn in self.spec.functions.values():
            env.update({k: made.get(v, v) for k, v in fn.environment.items()})
        env.update(LOCAL_ENV)
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env

    def create(self) -> LocalStack:
        """Create every resource the template declares and wire every trigger."""
        os.environ.update(self.environment())
        if self.endpoint_url is None:
            _serialise_moto_requests()
        _serialise_metric_updates()
        self._resources.create_signing_keys()
        os.environ.update(self.environment())
        self._resources.create_storage()
        self.queues.update(self._resources.create_triggers())
        self.purge()  # moto announces each notification with an s3:TestEvent
        self._start_recording()
        return self

    def attach(self) -> LocalStack:
        """Use a stack another process created on the same endpoint (no resource is made):
        as a second Lambda function's process shares the first one's AWS resources."""
        if self.endpoint_url is None:
            raise ValueError("attach() needs an endpoint_url (a moto server another process uses)")
        os.environ.update(self.environment())  # the endpoint and credentials first
        self._resources.find_signing_keys()
        os.environ.update(self.environment())
        self.queues.update(self._resources.find_queues())
        self._start_recording()
        return self

    def _start_recording(self) -> None:
        """Record every AWS call a handler makes (clients created from now on), and start
        the functions' runtime afresh."""
        global _ACTIVE
        _ACTIVE = self
        session = boto3._get_default_session()
        session.events.register("provide-client-params", _record, unique_id="custseg-record-all")
        from custseg.aws import runtime

        runtime.reset()

    def purge(self) -> None:
        """Drop every waiting event."""
        self._delivery.purge()

    # ---------------------------------------------------------------- handlers
    def handler(self, logical: str) -> Callable[..., Any]:
        """A function's handler, imported once."""
        return self._invoker.handler(logical)

    def invoke(self, logical: str, event: dict[str, Any]) -> Invocation:
        """Invoke like Lambda's asynchronous path: retries, then the dead-letter queue."""
        inv = self._invoker.invoke(
            logical, event, before_invoke=self.before_invoke, log_stream=self.log_stream
        )
        self.invocations.append(inv)
        return inv

    # ---------------------------------------------------------------- event delivery
    def pending(self) -> int:
        """How many events wait in the functions' queues."""
        return self._delivery.pending()

    def receive(self, logical: str) -> list[dict[str, Any]]:
        """Take the events waiting for one function (deleting them from its queue)."""
        return self._delivery.receive(logical)

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

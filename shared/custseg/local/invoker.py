"""Invocation in the emulated stack, as Lambda's asynchronous path does it: the handler
named by the function's ``ImageConfig.Command`` is imported once and called with the
event and a Lambda-like context; failures are retried as the template's
``EventInvokeConfig`` says, and an event that still fails goes to the dead-letter queue."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import io
import json
import logging
import os
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseg.local.iam import AwsCall
from custseg.local.resources import ClientFor
from custseg.local.template import ACCOUNT_ID, REGION, FunctionSpec, StackSpec

REPO_ROOT = Path(__file__).resolve().parents[3]


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


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None  # the last attempt's traceback, when every attempt failed
    attempts: int = 1
    failures: list[str] = field(default_factory=list)  # each failed attempt's traceback


@contextlib.contextmanager
def captured_output(log_stream: io.TextIOBase | None) -> Iterator[None]:
    """Send handler logs and EMF metrics to ``log_stream`` (or leave them on stdout)."""
    if log_stream is None:
        yield
        return
    service = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "custseg"))
    saved = [(h, getattr(h, "stream", None)) for h in service.handlers]
    for h, _ in saved:
        if isinstance(h, logging.StreamHandler):
            h.setStream(log_stream)
    try:
        with contextlib.redirect_stdout(log_stream), warnings.catch_warnings():
            # Powertools warns about empty metrics and skipped idempotency on stderr.
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for h, stream in saved:
            if isinstance(h, logging.StreamHandler) and stream is not None:
                h.setStream(stream)


@dataclass
class Invoker:
    """Calls the functions' handlers. ``current``: the function whose handler runs now
    (its AWS calls are recorded as that function's); ``record``: records a call Lambda
    makes for a function (to its failure destination)."""

    spec: StackSpec
    client: ClientFor
    record: Callable[[AwsCall], None]
    current: str | None = None
    _handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def handler(self, logical: str) -> Callable[..., Any]:
        """A function's handler, imported once (Lambda's init phase)."""
        if logical not in self._handlers:
            # the handlers: the checkout's functions/ folder, or the installed package
            if (REPO_ROOT / "functions").is_dir() and str(REPO_ROOT) not in sys.path:
                sys.path.insert(0, str(REPO_ROOT))
            module_name, func = self.spec.functions[logical].handler.rsplit(".", 1)
            module = importlib.import_module(module_name)
            self._handlers[logical] = getattr(module, func)
        return self._handlers[logical]

    def invoke(
        self,
        logical: str,
        event: dict[str, Any],
        *,
        before_invoke: Callable[[str, dict[str, Any]], None] | None = None,
        log_stream: io.TextIOBase | None = None,
    ) -> Invocation:
        """Invoke like Lambda's asynchronous path: retries, then the dead-letter queue."""
        spec = self.spec.functions[logical]
        inv = Invocation(function=logical, event=event, attempts=0)
        for attempt in range(spec.max_retries + 1):
            inv.attempts = attempt + 1
            try:
                if before_invoke is not None:
                    before_invoke(logical, event)
                handler = self.handler(logical)
                self.current = logical
                with captured_output(log_stream):
                    inv.result = handler(event, FakeLambdaContext(spec))
                inv.error = None
                break
            except Exception:  # Lambda catches everything too
                inv.error = traceback.format_exc()
                inv.failures.append(inv.error)
            finally:
                self.current = None
        if inv.error is not None:
            self._dead_letter(logical, event, inv.error)
        return inv

    def _dead_letter(self, logical: str, event: dict[str, Any], error: str) -> None:
        """Send a failed event to the dead-letter queue, as Lambda's on-failure
        destination does (with the function's own role)."""
        queue_url = self.client("sqs").get_queue_url(QueueName=self.spec.dead_letter_queue)[
            "QueueUrl"
        ]
        # Lambda sends to the on-failure destination with the function's own role.
        self.record(AwsCall(logical, "SendMessage", {"QueueUrl": queue_url}, "sqs"))
        self.client("sqs").send_message(
            QueueUrl=queue_url,
            MessageBody=json.dumps(
                {
                    "requestContext": {"functionArn": logical, "condition": "RetriesExhausted"},
                    "requestPayload": event,
                    "responsePayload": {"errorMessage": error.splitlines()[-1]},
                }
            ),
        )

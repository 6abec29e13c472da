"""``custseg serve``: a local AWS endpoint wired like the deployed stack.

Starts moto's server on ``host:port`` (S3, SQS, EventBridge, DynamoDB ... behind one
HTTP endpoint), builds the stack described by ``infra/template.yaml`` on it (buckets,
event bus, idempotency table, notification wiring) and then plays Lambda's part: every
half second it delivers the S3 notifications and EventBridge events that arrived to the
handlers, exactly as :meth:`custseg.local.stack.LocalStack.drain` does, and fires the
template's schedules when they fall due. Any S3 client (the AWS CLI, boto3, a marketing
tool) can upload to ``incoming/<dataset>/`` and read ``segments/<dataset>/`` there.

Handlers reach the server through ``AWS_ENDPOINT_URL``, which
:meth:`LocalStack.create` puts in this process's environment (botocore reads it for
every client it creates). Handler logs go to a file; stdout gets one line per
invocation. Stop with Ctrl-C (or by setting ``stop``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote_plus

from custseg.local.template import REGION

DEFAULT_LOG_PATH = Path("custseg-out") / "serve-handler-logs.jsonl"
POLL_SECONDS = 0.5

_CRON = re.compile(r"^cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


class Schedule:
    """When a template schedule falls due: ``cron(M H * * ? *)`` (daily) or ``rate(N unit)``.

    Other expressions are not emulated (:attr:`supported` is False).
    """

    def __init__(self, expression: str, now: dt.datetime) -> None:
        self.expression = expression
        self.supported = True
        self.next_due: dt.datetime | None = None
        self.every: dt.timedelta | None = None
        cron, rate = _CRON.match(expression), _RATE.match(expression)
        if cron:
            minute, hour = int(cron.group(1)), int(cron.group(2))
            due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            self.next_due = due if due > now else due + dt.timedelta(days=1)
            self.every = dt.timedelta(days=1)
        elif rate:
            n, unit = int(rate.group(1)), rate.group(2).rstrip("s")
            self.every = dt.timedelta(**{f"{unit}s": n})
            self.next_due = now + self.every
        else:
            self.supported = False

    def due(self, now: dt.datetime) -> bool:
        """True once per period, when ``now`` has passed the next due time."""
        if self.next_due is None or self.every is None or now < self.next_due:
            return False
        while self.next_due <= now:
            self.next_due += self.every
        return True


def _describe(event: dict[str, Any]) -> str:
    if "Records" in event:
        keys = [unquote_plus(r["s3"]["object"]["key"]) for r in event["Records"]]
        return ", ".join(keys)
    if "detail-type" in event:
        return str(event["detail-type"])
    return "direct invocation"


def _outcome(result: Any) -> str:
    """A short status from a handler's result (``{"results": [{"status": ...}]}``)."""
    if not isinstance(result, dict):
        return "ok"
    statuses = [str(r.get("status")) for r in result.get("results", []) if isinstance(r, dict)] or (
        [str(result["status"])] if "status" in result else []
    )
    return ", ".join(s for s in statuses if s and s != "None") or "ok"


def _banner(
    stack: Any,
    endpoint: str,
    log_path: Path,
    schedules: list[tuple[str, Schedule]],
    out: TextIO,
) -> None:
    data, results = stack.data_bucket, stack.results_bucket
    ep = f"--endpoint-url {endpoint}"
    lines = [
        f"custseg stack (from infra/template.yaml) listening on {endpoint}",
        f"  data bucket:      {data}",
        f"  artifact bucket:  {stack.artifact_bucket}",
        f"  results bucket:   {results}",
        f"  model-signing key: {stack.environment().get('MODEL_SIGNING_KEY', '-')}",
        f"  handler logs:     {log_path}",
        "",
        f"credentials: any (e.g. AWS_ACCESS_KEY_ID=testing), region {REGION}",
        "upload a customer file (any CSV; the folder under incoming/ names the dataset):",
        f"  aws s3 cp my.csv s3://{data}/incoming/shop/ {ep}",
        "list the committed runs, then read the newest:",
        f"  aws s3 ls s3://{results}/segments/shop/ --recursive {ep}",
        f"  aws s3 cp s3://{results}/segments/shop/latest.json - {ep}",
        f"  aws s3 cp s3://{results}/segments/shop/current/ ./shop-segments/ --recursive {ep}",
        "",
    ]
    for logical, sched in schedules:
        when = f"next at {sched.next_due:%Y-%m-%d %H:%M} UTC" if sched.supported else "not emulated"
        lines.append(f"schedule {sched.expression} -> {logical}: {when}")
    lines.append(f"delivering events every {POLL_SECONDS} s; Ctrl-C to stop")
    print("\n".join(lines), file=out, flush=True)


def _fresh_handlers(stack: Any) -> None:
    """Forget imported handler modules: a new stack means cold Lambda containers.

    Handler modules create clients at import (the idempotency layer's DynamoDB client);
    a module imported earlier in this process (another stack, a test) would keep clients
    that point elsewhere.
    """
    for fn in stack.spec.functions.values():
        sys.modules.pop(fn.handler.rsplit(".", 1)[0], None)


def _deliver(stack: Any, out: TextIO, stop: threading.Event) -> int:
    """Deliver every waiting event once (as :meth:`LocalStack.drain` does for one round),
    one stdout line per invocation, until ``stop`` is set. Returns the invocation count."""
    count = 0
    for logical in stack.spec.functions:
        for event in stack.receive(logical):
            if stop.is_set():
                break
            started = time.monotonic()
            inv = stack.invoke(logical, event)
            seconds = time.monotonic() - started
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            if inv.error:
                last = inv.error.strip().splitlines()[-1]
                status = f"FAILED after {inv.attempts} attempts: {last}"
            else:
                status = _outcome(inv.result)
            print(
                f"{stamp} {logical:<16} {_describe(event)} -> {status} ({seconds:.1f}s)",
                file=out,
                flush=True,
            )
            count += 1
    stack.invocations.clear()  # a long-running server keeps no history
    return count


def serve(
    port: int = 5000,
    host: str = "127.0.0.1",
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    *,
    log_path: Path | None = None,
    out: TextIO | None = None,
) -> bool:
    """Run the emulated stack behind ``http://host:port`` until Ctrl-C or ``stop`` is set;
    True when Ctrl-C stopped it.

    ``ready`` is set once the stack exists and events are being delivered. Handler logs
    (JSON lines) go to ``log_path`` (default ``custseg-out/serve-handler-logs.jsonl``);
    progress goes to ``out`` (default stdout).
    """
    from moto.server import ThreadedMotoServer

    from custseg.local.stack import LocalStack

    out = out or sys.stdout
    stop = stop or threading.Event()
    log_path = Path(log_path or DEFAULT_LOG_PATH)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    endpoint = f"http://{host}:{port}"
    # One line per invocation, not one per HTTP request.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"starting the emulated stack on {endpoint} ...", file=out, flush=True)
    interrupted = threading.Event()
    previous_sigint = _stop_on_sigint(stop, interrupted, out)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    stack = LocalStack(endpoint_url=endpoint)
    saved_env = {name: os.environ.get(name) for name in stack.environment()}
    try:
        with log_path.open("a", encoding="utf-8") as log:
            stack.log_stream = log
            stack.create()
            _fresh_handlers(stack)
            now = dt.datetime.now(dt.UTC)
            schedules = [
                (logical, Schedule(expr, now))
                for logical, fn in stack.spec.functions.items()
                for expr in fn.schedules
            ]
            _banner(stack, endpoint, log_path, schedules, out)
            if ready is not None:
                ready.set()
            while not stop.is_set():
                try:
                    now = dt.datetime.now(dt.UTC)
                    for logical, sched in schedules:
                        if sched.due(now):
                            stack.client("sqs").send_message(
                                QueueUrl=stack.queues[logical],
                                MessageBody=json.dumps(stack.scheduled_event(now, logical)),
                            )
                    delivered = _deliver(stack, out, stop)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    print(f"delivery error: {type(exc).__name__}: {exc}", file=out, flush=True)
                    delivered = 0
                if not delivered:
                    stop.wait(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted.set()
    finally:
        if previous_sigint is not None:
            signal.signal(signal.SIGINT, previous_sigint)
        print("stopping", file=out, flush=True)
        _discard_state(endpoint)
        server.stop()
        _restore(saved_env, stack)
    return interrupted.is_set()


def _stop_on_sigint(stop: threading.Event, interrupted: threading.Event, out: TextIO) -> Any:
    """In the main thread, make Ctrl-C set ``stop`` and ``interrupted`` (the current
    invocation finishes; a handler's own ``except`` cannot swallow it); a second Ctrl-C
    stops at once.
    Returns the previous SIGINT handler, or None when not in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        stop.set()
        print(
            "\nCtrl-C: stopping after the current invocation (Ctrl-C again to stop now)",
            file=out,
            flush=True,
        )

    return signal.signal(signal.SIGINT, on_sigint)


def _discard_state(endpoint: str) -> None:
    """Drop the stack's resources with the server (moto's ``/moto-api/reset``): moto keeps
    them per process, and a server started later in this process builds its stack anew."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
        pass


def _restore(saved_env: dict[str, str | None], stack: Any) -> None:
    """Undo what the stack did to this process (environment, cached clients), so a
    server run in a thread leaves its host process as it found it."""
    from custseg.aws import runtime

    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # Forget the stack without binding anything to the environment restored: it may
    # describe no stack at all (no region, no table), and the next stack binds its own.
    runtime.forget()
    _fresh_handlers(stack)

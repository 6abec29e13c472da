"""``custseg serve`` stopped with Ctrl-C after it ran a handler, in a shell with no AWS
region set: one line, exit code 130, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import boto3
import pytest

from custseg.cli import main
from custseg.local.template import stack_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WAIT_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _upload_and_wait_for_clean_data(endpoint: str, problems: list[BaseException]) -> None:
    """Upload a file once the server answers, and return once its ingest committed (the
    handler modules are loaded then)."""
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        bucket = stack_spec().buckets["DataBucket"]
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:  # until the stack's upload trigger is wired
            try:
                if s3.get_bucket_notification_configuration(Bucket=bucket).get(
                    "QueueConfigurations"
                ):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        s3.upload_file(str(FIXTURES / "mall_customers.csv"), bucket, "incoming/shop/mall.csv")
        while time.monotonic() < deadline:
            if s3.list_objects_v2(Bucket=bucket, Prefix="clean/shop/").get("KeyCount"):
                return
            time.sleep(0.2)
        raise TimeoutError("no clean data appeared")
    except BaseException as exc:  # reported by the test, in the main thread
        problems.append(exc)


def test_ctrl_c_after_an_invocation_with_no_region_set_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the handler log file goes under ./custseg-out/
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    port = _free_port()
    problems: list[BaseException] = []
    serving = threading.Event()

    def drive() -> None:
        _upload_and_wait_for_clean_data(f"http://127.0.0.1:{port}", problems)
        if serving.is_set():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the main thread

    driver = threading.Thread(target=drive, daemon=True)
    serving.set()
    driver.start()
    try:
        code = main(["serve", "--port", str(port)])
    finally:
        serving.clear()
        driver.join(WAIT_SECONDS)
    assert problems == []
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "IngestFunction" in out  # a handler ran before Ctrl-C
    assert err.splitlines() == ["custseg: interrupted"]
    assert code == 130
    assert "AWS_DEFAULT_REGION" not in os.environ  # the server left the environment as it was

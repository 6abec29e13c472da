"""Two processes of one emulated stack: one creates it on a moto server, another attaches
(what ``scripts/bench.py`` does to run each function in its own process)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from custseg.local.stack import LocalStack


@pytest.fixture
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = dict(os.environ)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.environ.clear()
        os.environ.update(saved)  # the stacks set AWS_ENDPOINT_URL and the function settings
        server.stop()
        from custseg.aws import runtime

        runtime.reset()


def test_attached_stack_sees_the_created_one(endpoint: str) -> None:
    creator = LocalStack(endpoint_url=endpoint).create()
    attached = LocalStack(endpoint_url=endpoint).attach()
    assert attached.queues == creator.queues  # the same per-function queues, none created
    key = creator.environment()["MODEL_SIGNING_KEY"]  # the key the creator made, found
    assert key.startswith("arn:aws:kms:") and attached.environment()["MODEL_SIGNING_KEY"] == key
    creator.client("s3").put_object(
        Bucket=creator.data_bucket, Key="incoming/shop/a.csv", Body=b"customer_id\n1\n"
    )
    events = attached.receive("IngestFunction")  # the upload's S3 event, seen by the other
    assert [e["Records"][0]["s3"]["object"]["key"] for e in events] == ["incoming/shop/a.csv"]


def test_attach_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="endpoint_url"):
        LocalStack().attach()

"""An S3 notification names the object version it announced, found by its ETag: a second
upload of the same key, made before the first event is delivered, must not make the
first event read the second file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KEY = "incoming/shop/customers.csv"


def _put_twice(stack: Any, first: bytes, second: bytes) -> list[str]:
    s3 = stack.client("s3")
    return [
        s3.put_object(Bucket=stack.data_bucket, Key=KEY, Body=body)["VersionId"]
        for body in (first, second)
    ]


def test_each_event_names_the_version_it_announced_not_the_current_one(stack: Any) -> None:
    mall = (FIXTURES / "mall_customers.csv").read_bytes()
    telco = (FIXTURES / "telco_customer_churn.csv").read_bytes()
    versions = _put_twice(stack, mall, telco)  # both before any event is delivered
    events = stack.receive("IngestFunction")
    assert [e["Records"][0]["s3"]["object"]["versionId"] for e in events] == versions

    results = [stack.invoke("IngestFunction", e) for e in events]
    assert [r.error for r in results] == [None, None]
    outcomes = [r.result["results"][0] for r in results]
    # the first event read the first file (200 mall rows), not the second (7,043 telco)
    assert [o["rows_read"] for o in outcomes] == [200, 7043]


def test_uploads_of_identical_bytes_keep_one_version_each(stack: Any) -> None:
    body = (FIXTURES / "mall_customers.csv").read_bytes()
    versions = _put_twice(stack, body, body)
    events = stack.receive("IngestFunction")
    assert [e["Records"][0]["s3"]["object"]["versionId"] for e in events] == versions

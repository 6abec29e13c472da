"""Privacy and safety of what the flow writes.

- Personal data (name, e-mail, phone, address) is needed to act on a segment, never to
  compute one: its values must not reach logs, metrics, the idempotency table, clean
  data, models, or anything in the results bucket. Only the raw upload, the copy of a
  rejected original and ``rejected_rows.csv`` may hold them.
- Text that a spreadsheet would run as a formula comes out neutralised.
- A model artifact failing its signature, hash or version check is refused before it is
  unpickled: the score function's outcome says why (``model_refused``, an error log line
  and a ``ModelsRefused`` metric; no retries, as the same artifact would be refused
  again) and it writes no results run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from support import (
    MALL,
    dead_letters,
    get,
    get_json,
    keys,
    mall_like_csv,
    manifests,
    resign,
    seed_models,
)

from custseg.aws import registry
from custseg.aws.signing import KmsSigner
from custseg.layout import MODELS, RESULT_FILES
from custseg.model.signing import SIGNATURE_FIELD, signed_digest
from custseg.spreadsheet import FORMULA_PREFIXES

N = 150
ARTIFACT_FILES = ("model.joblib", "metadata.json")
# Distinctive strings in the personal columns (searched case-insensitively).
MARKERS = ("qxzname", "qxzmail", "qxzphone", "qxzstreet")
PERSONAL_HEADERS = {"Full Name", "E-mail", "Mobile", "Street", "name", "email", "phone", "address"}
FORMULA_IDS = ["=1+2", "+cmd", "-sum", "@evil"]
CHANNEL_FORMULA = '=HYPERLINK("http://evil.test/<script>x()</script>","go")'


def _customers(path: Path) -> Path:
    ids: list[int | str] = [*FORMULA_IDS, *range(1000, 1000 + N - len(FORMULA_IDS))]
    personal = {
        "Full Name": [f"Ann QXZNAME{i} Smith" for i in range(N)],
        "E-mail": [f"ann.qxzmail{i}@example.com" for i in range(N)],
        "Mobile": [f"+44 7700 QXZPHONE {i:04d}" for i in range(N)],
        "Street": [f"{i} QXZSTREET Road, Leeds" for i in range(N)],
        "Channel": [["web", "store", CHANNEL_FORMULA][i % 3] for i in range(N)],
    }
    mall_like_csv(path, ids, seed=7, extra=personal)
    # two rows that cannot be repaired (no customer id), personal data included
    with path.open("a", encoding="utf-8") as fh:
        for i in range(2):
            fh.write(f",Male,30,50,50,Bad QXZNAME{i},bad.qxzmail{i}@x.com,QXZPHONE,QXZSTREET,web\n")
    return path


def _text_of(key: str, body: bytes) -> str:
    """What an object says, whatever its format (decompressed, decoded)."""
    if key.endswith(".parquet"):
        frame = pd.read_parquet(io.BytesIO(body))
        return " ".join(map(str, frame.columns)) + "\n" + frame.to_csv(index=False)
    if key.endswith(".joblib"):  # our own artifact: safe to load in a test
        return pickle.dumps(joblib.load(io.BytesIO(body))).decode("latin-1")
    return body.decode("utf-8", errors="replace")


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [m for m in MARKERS if m in low]


@dataclass
class Flow:
    stack: Any
    handler_logs: str  # what the functions logged, their EMF metrics included
    python_logs: str  # every Python log record of the process, at DEBUG
    stderr: str


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, champions: dict[str, bytes]) -> Iterator[Flow]:
    """The whole flow (ingest -> no champion -> train -> score) on a file with personal
    data, logs captured; models of other datasets seeded for the tampering tests."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    buf, py_buf, err = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(py_buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    source = _customers(tmp_path_factory.mktemp("people") / "customers.csv")
    try:
        with mock_aws():
            stack = LocalStack(log_stream=buf).create()
            seed_models(stack, champions, "mall", "north", "south")
            stack.upload(source, "incoming/people/customers.csv")
            with contextlib.redirect_stderr(err):
                invocations = stack.drain()
            assert [i.error for i in invocations if i.error] == []
            assert [i.function for i in invocations] == [
                "IngestFunction",
                "ScoreFunction",
                "TrainFunction",
                "ScoreFunction",
            ]
            yield Flow(stack, buf.getvalue(), py_buf.getvalue(), err.getvalue())
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_personal_data_reaches_no_log_metric_or_output(
    flow: Flow, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = flow.stack
    assert len(manifests(stack, stack.results_bucket, "segments/people/")) == 1

    # logs and metrics (handlers' stream, Python logging, anything printed)
    assert '"RowsScored"' in flow.handler_logs  # the stream holds the EMF metrics
    assert "accepted" in flow.handler_logs and "trained" in flow.python_logs
    captured = capsys.readouterr()
    for where, text in {
        "handler logs and metrics": flow.handler_logs,
        "python logging": flow.python_logs,
        "stderr": flow.stderr + captured.out + captured.err,
    }.items():
        assert _leaks(text) == [], where

    # every object, except the upload and what keeps rejected input as it came
    allowed: list[str] = []
    checked = 0
    for bucket in stack.spec.buckets.values():
        for key in keys(stack, bucket):
            if bucket == stack.data_bucket and (
                key.startswith("incoming/")
                or "/original/" in key
                or key.endswith("rejected_rows.csv")
            ):
                allowed.append(key)
                continue
            checked += 1
            assert _leaks(_text_of(key, get(stack, bucket, key))) == [], f"{bucket}/{key}"
    assert checked > 20
    rejected_rows = [k for k in allowed if k.endswith("rejected_rows.csv")]
    assert len(rejected_rows) == 1  # the check above saw real personal data somewhere
    assert _leaks(get(stack, stack.data_bucket, rejected_rows[0]).decode()) != []

    # clean data has no personal column at all
    (clean_key,) = [
        k for k in keys(stack, stack.data_bucket, "clean/people/") if k.endswith(".parquet")
    ]
    clean = pd.read_parquet(io.BytesIO(get(stack, stack.data_bucket, clean_key)))
    assert not {c.lower() for c in clean.columns} & {h.lower() for h in PERSONAL_HEADERS}
    assert len(clean) == N

    # the idempotency table keeps handler results: no personal data there either
    items = stack.client("dynamodb").scan(TableName=stack.spec.idempotency_table)["Items"]
    assert items and _leaks(json.dumps(items)) == []


def test_formulas_come_out_neutralised(flow: Flow) -> None:
    stack = flow.stack
    latest = get_json(stack, stack.results_bucket, "segments/people/latest.json")
    assert latest is not None
    csv_text = get(stack, stack.results_bucket, latest["prefix"] + "assignments.csv").decode()
    frame = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    ids = set(frame["customer_id"])
    for raw in FORMULA_IDS:
        assert raw not in ids and "'" + raw in ids
    text_columns = [c for c in frame.columns if frame[c].str.contains("[A-Za-z]", regex=True).any()]
    for column in text_columns:
        assert not frame[column].str.startswith(FORMULA_PREFIXES).any(), column
    parquet = pd.read_parquet(
        io.BytesIO(
            get(stack, stack.results_bucket, latest["prefix"] + RESULT_FILES["assignments_parquet"])
        )
    )
    assert set(FORMULA_IDS) <= set(parquet["customer_id"])  # Parquet keeps the data as is
    report = get(stack, stack.results_bucket, latest["prefix"] + "report.html").decode().lower()
    assert "<script>x()" not in report  # text from the data is escaped where it is shown
    if "hyperlink" in report:
        assert "&lt;script&gt;x()" in report
    profiles = get(stack, stack.results_bucket, latest["prefix"] + "profiles.json").decode()
    assert "hyperlink" in profiles.lower()  # the value did reach the outputs


def _tamper(stack: Any, prefix: str, tamper: str) -> str:
    """Change the artifact under ``prefix`` as ``tamper`` says; returns the words the
    refusal must contain."""
    s3, bucket = stack.client("s3"), stack.artifact_bucket
    body = bytearray(get(stack, bucket, prefix + "model.joblib"))
    metadata = get_json(stack, bucket, prefix + "metadata.json")
    assert metadata is not None
    if tamper == "versions":  # validly signed, for libraries this runtime cannot load
        metadata["libraries"]["sklearn"] = "0.20.0"
        s3.put_object(
            Bucket=bucket,
            Key=prefix + "metadata.json",
            Body=resign(stack, json.dumps(metadata).encode()),
        )
        return "incompatible"
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=prefix + "model.joblib", Body=bytes(body))
    if tamper == "model bytes":  # the metadata left as it was
        return "sha-256"
    metadata["sha256"] = hashlib.sha256(bytes(body)).hexdigest()  # the hash made to match
    if tamper == "hash recomputed, unsigned":
        metadata.pop(SIGNATURE_FIELD)
        expected = "is not signed"
    else:  # signed by a KMS key of the forger's
        kms = stack.client("kms")
        forger = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        metadata.pop(SIGNATURE_FIELD)
        signature = KmsSigner(forger["Arn"], kms).sign(signed_digest(metadata))
        metadata[SIGNATURE_FIELD] = signature.to_dict()
        expected = f"(by key {forger['Arn']}) is not valid for the model-signing key"
    s3.put_object(Bucket=bucket, Key=prefix + "metadata.json", Body=json.dumps(metadata).encode())
    return expected


@pytest.mark.parametrize(
    ("tamper", "dataset"),
    [
        ("model bytes", "mall"),
        ("versions", "north"),
        ("hash recomputed, unsigned", "south"),
        ("signed by another key", "mall"),
    ],
)
def test_tampered_model_is_refused(
    flow: Flow, tamper: str, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = flow.stack
    registry._CACHE.clear()  # a cold start: the model is loaded (and checked) again
    champion = get_json(stack, stack.artifact_bucket, f"{MODELS}{dataset}/champion.json")
    assert champion is not None
    prefix = f"{MODELS}{dataset}/{champion['version']}/"
    originals = {n: get(stack, stack.artifact_bucket, prefix + n) for n in ARTIFACT_FILES}
    expected = _tamper(stack, prefix, tamper)
    unpickled: list[int] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(1))
    try:
        stack.upload(MALL, f"incoming/{dataset}/mall.csv")
        invocations = stack.drain()
    finally:  # the next case tampers with the genuine artifact again
        for name, body in originals.items():
            stack.client("s3").put_object(
                Bucket=stack.artifact_bucket, Key=prefix + name, Body=body
            )
    (score,) = [i for i in invocations if i.function == "ScoreFunction"]
    assert score.error is None and score.attempts == 1  # an outcome, not a crash loop
    (outcome,) = score.result["results"]
    assert outcome["status"] == "model_refused"
    assert expected.lower() in outcome["message"].lower()
    assert unpickled == []
    assert dead_letters(stack) == []
    assert keys(stack, stack.results_bucket, f"segments/{dataset}/") == []
    assert get_json(stack, stack.artifact_bucket, f"{MODELS}{dataset}/champion.json") == champion
    logs = stack.log_stream.getvalue()
    assert '"ModelsRefused"' in logs and f"champion {dataset} {champion['version']} refused" in logs

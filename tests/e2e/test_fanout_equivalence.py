"""The fanned-out path (forced threshold) on the local ASL interpreter gives the same
assignments, metrics and personas as the single-function path on the same order log."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from custseg.layout import clean_latest_key, contract_key, results_latest_key

REPO = Path(__file__).resolve().parents[2]
ORDERS = REPO / "tests" / "fixtures" / "online_retail_invoices.csv"
CLV_COLUMNS = ["p_alive", "expected_purchases_90d", "expected_value_12m"]
PREDICTION_RTOL = 1e-6
"""How close the two paths' predictions are: each path fits the customer-value model on
the same histories, whose sums of amounts may differ in their last digits (the other
floats are checked within 1e-9), and the fit's optimiser may carry that further."""


def _orders(tmp: Path, records: int = 6000, first: int = 1) -> Path:
    """``records`` order lines of the fixture from line ``first`` (the first 6,000: about
    1,500 customers)."""
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp / "orders.csv"
    path.write_text("".join([lines[0], *lines[first : first + records]]), encoding="utf-8")
    return path


def _run(stack, orders: Path, dataset: str, upload: int = 0) -> None:
    """Upload ``orders`` to ``dataset`` (a later ``upload`` replaces the order log)."""
    name = "orders.csv" if upload == 0 else f"orders-{upload}.csv"
    metadata = {"mode": "replace"} if upload else None
    stack.upload(orders, f"incoming/{dataset}/{name}", metadata=metadata)
    stack.drain()


QUALITY_COUNTS = (
    "rows_read",
    "rows_kept",
    "rows_rejected",
    "rows_invalid",
    "rows_duplicate",
    "rows_excluded",
    "rejected_by_reason",
    "duplicates",
)
"""The counts of the clean run's quality.json that both paths give."""


def _clean(stack, dataset: str) -> tuple[dict, pa.Table, dict]:
    """The contract, the clean rows and the quality counts of the dataset's newest clean
    run."""
    s3 = stack.client("s3")
    bucket = stack.data_bucket
    latest = json.loads(s3.get_object(Bucket=bucket, Key=clean_latest_key(dataset))["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=latest["manifest_key"])["Body"].read())
    prefix = latest["manifest_key"].rsplit("/", 1)[0] + "/"
    contract = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "contract.json")["Body"].read())
    parts = [
        pq.read_table(pa.BufferReader(s3.get_object(Bucket=bucket, Key=e["key"])["Body"].read()))
        for e in manifest["files"]
        if e["name"].startswith("data/")
    ]
    quality = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "quality.json")["Body"].read())
    counts = {name: quality.get(name) for name in QUALITY_COUNTS}
    return contract, pa.concat_tables(parts).sort_by("_row"), counts


def _results(stack, dataset: str) -> tuple[pa.Table, dict, dict, pa.Table | None, list[str]]:
    s3 = stack.client("s3")
    bucket = stack.results_bucket
    latest = json.loads(
        s3.get_object(Bucket=bucket, Key=results_latest_key(dataset))["Body"].read()
    )
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=latest["manifest_key"])["Body"].read())
    tables = []
    for entry in manifest["files"]:
        if entry["name"].startswith("assignments/"):
            body = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            tables.append(pq.read_table(pa.BufferReader(body)))

    def doc(name: str) -> dict:
        key = next(e["key"] for e in manifest["files"] if e["name"] == name)
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    table = pa.concat_tables(tables).sort_by("customer_id")
    key = next(e["key"] for e in manifest["files"] if e["name"] == "assignments.csv")
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    csv_rows = pacsv.read_csv(pa.BufferReader(text.encode())).sort_by("customer_id")
    assert csv_rows.column("customer_id").cast(pa.string()).to_pylist() == (
        table.column("customer_id").to_pylist()
    )
    at_risk = next((e["key"] for e in manifest["files"] if e["name"] == "value_at_risk.csv"), None)
    top = None
    if at_risk is not None:
        body = s3.get_object(Bucket=bucket, Key=at_risk)["Body"].read()
        top = pacsv.read_csv(
            pa.BufferReader(body), convert_options=pacsv.ConvertOptions(strings_can_be_null=False)
        )
    return table, doc("metrics.json"), doc("profiles.json"), top, csv_rows.column_names


def _assert_close(a: object, b: object, rtol: float, where: str = "") -> None:
    """``a`` equals ``b`` (JSON documents), floats within ``rtol`` (relative, or absolute
    near 0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            _assert_close(a[key], b[key], rtol, f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, rtol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), where
        assert np.isclose(a, b, rtol=rtol, atol=rtol), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _synthetic_orders(tmp: Path, lines: int) -> Path:
    """``lines`` order lines of the benchmark's seeded generator (about 20 per customer)."""
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench
    spec.loader.exec_module(bench)
    path = tmp / "orders.csv"
    bench.make_orders_csv(path, lines, 7)
    return path


@pytest.mark.slow
def test_fanned_out_run_equals_the_single_function_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The customer-value predictions and value at risk included; the holdout check is
    not evaluated on either path (the lines span four months, fewer than 180 days)."""
    one, metrics = _compare(monkeypatch, _orders(tmp_path))
    assert set(CLV_COLUMNS) <= set(one.column_names)
    assert "fewer than the 180" in metrics["predictions"]["clv"]["holdout"]["reason"]
    assert metrics["value_at_risk"]["top_rows"] == 1000


@pytest.mark.slow
def test_a_second_run_fanned_out_has_the_single_runs_stability_and_ranking(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two runs of one dataset on each path (the second upload replaces the order log
    with lines 3,001-9,000): the second run's stability against the first (customers
    changed, new and gone, the transitions) and its ranking, whose growth component
    needs the first run's segment sizes, are the single path's."""
    first = _orders(tmp_path, 6000)
    (tmp_path / "second").mkdir()
    _, metrics = _compare(monkeypatch, first, then=_orders(tmp_path / "second", 6000, 3001))
    stability = metrics["stability"]
    assert stability["available"] is True and stability["same_model"] is True
    assert stability["new_customers"] > 0 and stability["gone_customers"] > 0
    assert stability["common_customers"] > 0
    assert sum(map(sum, stability["transitions"]["counts"])) == stability["common_customers"]


@pytest.mark.slow
def test_a_single_run_after_a_fanned_out_run_compares_with_all_its_parts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The single path's second run of a dataset whose first run was fanned out (four
    assignment parts) has the stability and ranking of two single-path runs."""
    from custseg.local.fanout import run_fanout_executions
    from custseg.local.stack import LocalStack

    first = _orders(tmp_path, 6000)
    (tmp_path / "second").mkdir()
    second = _orders(tmp_path / "second", 6000, 3001)
    with mock_aws():
        stack = LocalStack().create()
        _run(stack, first, "single")
        _run(stack, second, "single", 1)
        monkeypatch.setenv("FANOUT_THRESHOLD_MIB", "0")
        monkeypatch.setenv("FANOUT_RANGE_MIB", str(first.stat().st_size / 3 / 1024**2))
        monkeypatch.setenv("FANOUT_BUCKETS", "4")
        sm = run_fanout_executions(stack, create=True)
        _run(stack, first, "mixed")
        runs = run_fanout_executions(stack, state_machine=sm)
        assert [r["status"] for r in runs] == ["SUCCEEDED"], runs
        monkeypatch.setenv("FANOUT_THRESHOLD_MIB", "1048576")
        _run(stack, second, "mixed", 1)
        assert run_fanout_executions(stack, state_machine=sm) == []
        _, m1, p1, _, _ = _results(stack, "single")
        _, m2, p2, _, _ = _results(stack, "mixed")
    assert m2["source"].get("trigger") != "fanout"
    assert m1["stability"]["available"] is True
    _compare_stability(m1, m2)
    _compare_ranking(m1, p1, p2)


@pytest.mark.slow
def test_a_million_line_order_log_fanned_out_equals_the_single_function_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The holdout check included: the log spans two years (its last third is the
    holdout), its data grouped per bucket on the fanned-out path."""
    one, metrics = _compare(monkeypatch, _synthetic_orders(tmp_path, 1_000_000))
    assert set(CLV_COLUMNS) <= set(one.column_names)
    holdout = metrics["predictions"]["clv"]["holdout"]
    assert holdout["evaluated"] is True, holdout
    assert holdout["actual_total"] > 0
    assert metrics["value_at_risk"]["top_rows"] == 1000


@pytest.mark.slow
@pytest.mark.parametrize(("first", "records", "ranges"), [(1, 1000, 3), (2001, 2000, 5)])
def test_a_small_first_upload_fanned_out_has_the_single_runs_contract_and_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, first: int, records: int, ranges: int
) -> None:
    """Ranges of a few hundred lines each: one contract for the upload (decided by
    ``Split`` as the single path decides it), not one inferred per range."""
    _compare(monkeypatch, _orders(tmp_path, records, first), ranges)


@pytest.mark.slow
def test_copies_of_rows_in_other_ranges_are_removed_as_the_single_path_removes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An export that repeats some of its lines further down (in other ranges): the same
    rows kept and rejected as duplicates, the same cleaning statistics (the ranges holding
    copies are profiled again without them) and the same results."""
    orders = _orders(tmp_path, 2000)
    lines = orders.read_text(encoding="utf-8").splitlines(keepends=True)
    body = lines[1:]
    # the first ranges' largest quantities, again in the last range: counted twice,
    # they would move the clipping bounds (the 99.9th percentile)
    largest = sorted(body[:800], key=lambda line: -abs(float(line.split(",")[4] or 0)))[:20]
    copies = body[10:400:3]  # and 130 lines of the first range
    orders.write_text(
        "".join([lines[0], *body, *copies, *body[1500:1520], *largest]), encoding="utf-8"
    )
    _, metrics = _compare(monkeypatch, orders, 5)
    assert metrics["segments"]


@pytest.mark.slow
def test_a_fanned_out_upload_is_read_with_the_datasets_own_contract(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The dataset's own contract (here: the inferred one, renamed and with a lower
    price bound) reads the whole upload on both paths."""
    from custseg.ingest.contracts.inference import contract_yaml, infer_file

    orders = _orders(tmp_path, 1500)
    inferred = infer_file(orders).contract
    price = next(c for c in inferred.columns if c.role == "unit_price")
    price.min = 1.0
    contract = inferred.model_copy(update={"description": "the shop's order log", "version": "7"})
    _compare(monkeypatch, orders, 3, contract_yaml(contract).encode())


def _compare(
    monkeypatch: pytest.MonkeyPatch,
    orders: Path,
    ranges: int = 5,
    contract: bytes | None = None,
    then: Path | None = None,
) -> tuple[pa.Table, dict]:
    """Run ``orders`` through both paths (``ranges`` ranges, 4 buckets; ``contract``: the
    datasets' own), and ``then`` after it when given (a second run, replacing the order
    log), and compare the contracts, clean rows and results of the last run (the
    predictions, the ranking and the stability included); the single path's assignments
    and metrics."""
    uploads = [orders] if then is None else [orders, then]
    from custseg.local.fanout import run_fanout_executions
    from custseg.local.stack import LocalStack

    with mock_aws():
        stack = LocalStack().create()
        for dataset in ("single", "fanned") if contract else ():
            stack.client("s3").put_object(
                Bucket=stack.artifact_bucket, Key=contract_key(dataset), Body=contract
            )
        for i, upload in enumerate(uploads):
            _run(stack, upload, "single", i)
        monkeypatch.setenv("FANOUT_THRESHOLD_MIB", "0")
        monkeypatch.setenv("FANOUT_BUCKETS", "4")
        sm = run_fanout_executions(stack, create=True)
        for i, upload in enumerate(uploads):
            monkeypatch.setenv("FANOUT_RANGE_MIB", str(upload.stat().st_size / ranges / 1024**2))
            _run(stack, upload, "fanned", i)
            runs = run_fanout_executions(stack, state_machine=sm)
            assert [r["status"] for r in runs] == ["SUCCEEDED"], runs
        contract1, clean1, counts1 = _clean(stack, "single")
        contract2, clean2, counts2 = _clean(stack, "fanned")
        one, m1, p1, top1, header1 = _results(stack, "single")
        fan, m2, p2, top2, header2 = _results(stack, "fanned")
    assert contract2 == contract1
    assert counts2 == counts1
    if contract is not None:
        assert contract1["version"] == "7"
    assert clean2.drop_columns(["_run_id"] if "_run_id" in clean2.column_names else []).equals(
        clean1.drop_columns(["_run_id"] if "_run_id" in clean1.column_names else [])
    )
    # numbers are sums over order lines: equal up to the order of the additions
    assert fan.column_names == one.column_names
    assert header2 == header1
    floats = [f.name for f in one.schema if pa.types.is_floating(f.type)]
    assert {"distance", "confidence", "value"} <= set(floats)
    keep = [c for c in one.column_names if c not in ["run_id", "model_version", *floats]]
    assert fan.num_rows == one.num_rows > 0
    assert fan.select(keep).to_pylist() == one.select(keep).to_pylist()
    for column in floats:
        a, b = fan[column].to_numpy(), one[column].to_numpy()
        rtol = PREDICTION_RTOL if column in CLV_COLUMNS else 1e-9
        assert np.allclose(a, b, rtol=rtol, atol=rtol, equal_nan=True), column
        assert np.array_equal(np.isnan(a), np.isnan(b)), column
    assert m2["segments"] == m1["segments"]
    # the same verdict and reasons: the data-loss reason's main rejection cause and the
    # holdout check's included
    assert m2["reasons"] == m1["reasons"]
    assert m2["verdict"] == m1["verdict"]
    _compare_predictions(m1, m2, p1, p2, top1, top2)
    _compare_stability(m1, m2)
    _compare_ranking(m1, p1, p2)
    assert [s.get("persona") for s in p2["segments"]] == [s.get("persona") for s in p1["segments"]]
    return one, m1


def _compare_stability(m1: dict, m2: dict) -> None:
    """The same stability section; the previous run's model version is each dataset's
    own (each path trains its own model, named by its time)."""
    own = "previous_model_version"
    assert {k: v for k, v in m2["stability"].items() if k != own} == {
        k: v for k, v in m1["stability"].items() if k != own
    }
    for m in (m1, m2):
        if m["stability"].get("same_model"):
            assert m["stability"][own] == m["model"]["version"]


RANKED = ("attractiveness", "rank", "attractiveness_parts")
"""What ``rank_segments`` adds to each segment of profiles.json."""


def _compare_ranking(m1: dict, p1: dict, p2: dict) -> None:
    """The same ranking section and, per segment, the same attractiveness, rank and
    components (growth among them when the previous run used the same model)."""
    assert p2["ranking"] == p1["ranking"]
    ranks = sorted(s["rank"] for s in p1["segments"])
    assert ranks == list(range(1, len(p1["segments"]) + 1))
    growth = m1["stability"].get("same_model", False)
    assert ("growth" in p1["ranking"]["components_missing"]) is not growth
    for seg1, seg2 in zip(p1["segments"], p2["segments"], strict=True):
        assert {n: seg2[n] for n in RANKED} == {n: seg1[n] for n in RANKED}, seg1["id"]


def _compare_predictions(
    m1: dict, m2: dict, p1: dict, p2: dict, top1: pa.Table | None, top2: pa.Table | None
) -> None:
    """The same prediction metrics (the model's fitted parameters, the holdout check),
    value at risk, segment priority, expected value per segment and top customers at
    risk."""
    _assert_close(m2.get("predictions"), m1.get("predictions"), PREDICTION_RTOL, "predictions")
    _assert_close(m2.get("value_at_risk"), m1.get("value_at_risk"), PREDICTION_RTOL, "at_risk")
    for name in ("predictions", "priority"):
        _assert_close(p2.get(name), p1.get(name), PREDICTION_RTOL, name)
    assert (top1 is None) == (top2 is None)
    if top1 is not None and top2 is not None:
        assert top2.column_names == top1.column_names
        assert top2.num_rows == top1.num_rows
        exact = ["rank", "customer_id", "segment_id", "segment_name"]
        assert top2.select(exact).to_pylist() == top1.select(exact).to_pylist()
        for column in ("value", "risk", "value_at_risk"):
            a, b = top2[column].to_numpy(), top1[column].to_numpy()
            # rounded to cents / 6 decimals when written: a last-digit tie may round apart
            assert np.allclose(a, b, rtol=PREDICTION_RTOL, atol=0.011), column

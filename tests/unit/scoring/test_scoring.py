"""Scoring end to end on real files: outputs, verdicts, lift, stability, chunk invariance."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from custseg.dataset.clean_data import read_clean
from custseg.features.build import build_features
from custseg.ingest.contracts.model import Contract, builtin_contract
from custseg.model.artifact import SegmentModel
from custseg.model.training import train_model
from custseg.scoring.outputs import ASSIGNMENTS_SCHEMA, CSV_SCHEMA, RUN_COLUMNS
from custseg.scoring.score import RunInfo, ScoreResult, customer_hashes, score_dataset
from custseg.stats import stable_hash

DATA = Path(__file__).resolve().parents[2] / "fixtures"  # copies of the shared real files
AS_OF = dt.date(2024, 1, 1)
MALL_NAMES = {
    "CustomerID": "customer_id",
    "Genre": "gender",
    "Age": "age",
    "Annual_Income": "annual_income",
    "Spending_Score": "spending_score",
}


def mall_clean() -> pd.DataFrame:
    """The mall file as ingest would clean it (canonical names and types)."""
    df = pd.read_csv(DATA / "mall_customers.csv", dtype={"CustomerID": "string"})
    df = df.rename(columns=MALL_NAMES)
    df["gender"] = df["gender"].astype("string").str.lower()
    for col in ("age", "annual_income", "spending_score"):
        df[col] = df[col].astype("float64")
    df["_row"] = range(2, len(df) + 2)
    return df


def write_clean(df: pd.DataFrame, path: Path, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )
    return path


def run_info(run_id: str = "run-1") -> RunInfo:
    return RunInfo(
        dataset="mall",
        run_id=run_id,
        run_date=dt.date(2024, 1, 2),
        as_of=AS_OF,
        source={"bucket": "b", "key": "clean/mall/r1/data.parquet"},
    )


@pytest.fixture(scope="module")
def contract() -> Contract:
    return builtin_contract("customers")


@pytest.fixture(scope="module")
def mall_model(contract: Contract) -> SegmentModel:
    features = build_features(mall_clean(), contract, as_of=AS_OF)
    return train_model(features, contract=contract, k=5, seed=42)


@pytest.fixture(scope="module")
def mall_run(
    tmp_path_factory: pytest.TempPathFactory, contract: Contract, mall_model: SegmentModel
) -> ScoreResult:
    base = tmp_path_factory.mktemp("mall")
    clean = write_clean(mall_clean(), base / "clean.parquet", row_group_size=64)
    quality = {
        "rows_read": 203,
        "rows_kept": 200,
        "rows_rejected": 3,
        "rejected_by_reason": {"age: out of range": 2, "customer_id: required value missing": 1},
    }
    return score_dataset(
        clean, contract, mall_model, base / "out", run=run_info(), quality=quality, chunk_rows=13
    )


def test_every_output_file_is_written(mall_run: ScoreResult) -> None:
    assert set(mall_run.files) == {
        "assignments_parquet",
        "assignments_csv",
        "profiles",
        "metrics",
        "report",
    }
    for path in mall_run.files.values():
        assert path.exists() and path.stat().st_size > 0
    assert mall_run.files["assignments_parquet"].name == "part-00000.parquet"
    assert mall_run.files["assignments_parquet"].parent.name == "assignments"
    metrics = json.loads(mall_run.files["metrics"].read_text(encoding="utf-8"))
    profiles = json.loads(mall_run.files["profiles"].read_text(encoding="utf-8"))
    assert metrics["verdict"] == mall_run.verdict
    assert profiles["customers"] == 200
    assert metrics["data_quality"]["rows_rejected"] == 3
    assert metrics["data_quality"]["top_reasons"][0] == {"reason": "age: out of range", "rows": 2}
    assert metrics["as_of"] == str(AS_OF) and metrics["as_of_reason"] == "given by the caller"


def test_metrics_say_why_the_default_as_of_is_that_date(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel
) -> None:
    clean = write_clean(mall_clean(), tmp_path / "clean.parquet")
    run = replace(run_info(), as_of=None)
    result = score_dataset(clean, contract, mall_model, tmp_path / "out", run=run)
    metrics = json.loads(result.files["metrics"].read_text(encoding="utf-8"))
    assert metrics["as_of"] == str(dt.datetime.now(dt.UTC).date())
    assert metrics["as_of_reason"] == "today (UTC): a customer table has no event dates"


def test_each_customer_once_typed_and_streamed(mall_run: ScoreResult) -> None:
    pf = pq.ParquetFile(mall_run.files["assignments_parquet"])
    assert pf.schema_arrow.equals(ASSIGNMENTS_SCHEMA)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    assert len(sizes) >= math.ceil(200 / 13) and max(sizes) <= 13  # one row group per chunk
    table = pf.read()
    ids = table.column("customer_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200 == mall_run.rows
    assert set(ids) == set(mall_clean()["customer_id"])
    csv = pacsv.read_csv(
        mall_run.files["assignments_csv"],
        convert_options=pacsv.ConvertOptions(column_types={"customer_id": pa.string()}),
    )
    assert csv.column_names == CSV_SCHEMA.names  # the Parquet columns but the run constants
    assert CSV_SCHEMA.names == [n for n in ASSIGNMENTS_SCHEMA.names if n not in RUN_COLUMNS]
    assert sorted(csv.column("customer_id").to_pylist()) == sorted(ids)
    assert set(table.column("as_of").to_pylist()) == {AS_OF}
    assert table.column("value").null_count == 0  # mall value = spending score


def test_mall_scored_by_its_own_model_is_ok(mall_run: ScoreResult) -> None:
    assert mall_run.verdict == "ok", mall_run.reasons
    m = mall_run.metrics
    for entry in m["drift"]["numeric"].values():
        assert entry["psi"] == pytest.approx(0.0, abs=1e-9)
    assert m["drift"]["segment_shares"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-9)
    assert m["cluster_quality"]["distance_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert m["cluster_quality"]["silhouette"] > 0.3
    assert m["stability"]["available"] is False


def test_mall_with_income_times_1_4_needs_retraining(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel
) -> None:
    shifted = mall_clean()
    shifted["annual_income"] = shifted["annual_income"] * 1.4
    clean = write_clean(shifted, tmp_path / "clean.parquet")
    result = score_dataset(clean, contract, mall_model, tmp_path / "out", run=run_info("run-2"))
    assert result.verdict == "retrain"
    assert result.reasons[0].startswith("annual_income drifted: PSI")
    income = result.metrics["drift"]["numeric"]["annual_income"]["psi"]
    assert income > 0.25
    assert any("annual_income" in r and "> 0.25" in r for r in result.reasons)
    assert not any(r.startswith(("age ", "spending_score ")) for r in result.reasons)


def _assert_close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6), path
    else:
        assert a == b, path


def test_small_and_large_chunks_give_the_same_metrics(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel, mall_run: ScoreResult
) -> None:
    # mall_run streamed 13 customers at a time; this run takes all 200 in one chunk
    clean = write_clean(mall_clean(), tmp_path / "clean.parquet")
    quality = {
        "rows_read": 203,
        "rows_kept": 200,
        "rows_rejected": 3,
        "rejected_by_reason": {"age: out of range": 2, "customer_id: required value missing": 1},
    }
    large = score_dataset(
        clean,
        contract,
        mall_model,
        tmp_path / "large",
        run=run_info(),
        quality=quality,
        chunk_rows=100_000,
    )
    small = mall_run
    _assert_close(small.metrics, large.metrics)
    _assert_close(small.profiles, large.profiles)
    a = pq.read_table(small.files["assignments_parquet"]).sort_by("customer_id")
    b = pq.read_table(large.files["assignments_parquet"]).sort_by("customer_id")
    assert a.equals(b)


def test_on_file_announces_the_finished_assignments_during_evaluation(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel
) -> None:
    clean = write_clean(mall_clean(), tmp_path / "clean.parquet")
    announced: list[tuple[str, int, int, bool, bool]] = []

    def on_file(name: str, path: Path, rows: int, sha256: str | None) -> None:
        lines = path.read_text().count("\n") - 1 if path.suffix == ".csv" else None
        stored = pq.read_table(path).num_rows if lines is None else lines
        metrics_done = (tmp_path / "out" / "metrics.json").exists()
        # the CSV's SHA-256 comes from the writer: it must be the finished file's
        hashed = sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        announced.append((name, rows, stored, metrics_done, hashed))

    result = score_dataset(
        clean, contract, mall_model, tmp_path / "out", run=run_info(), chunk_rows=50,
        on_file=on_file,
    )  # fmt: skip
    assert announced == [
        ("assignments_csv", 200, 200, False, True),  # complete, before the run's metrics
        ("assignments_parquet", 200, 200, False, False),  # no SHA-256 given for it
    ]
    assert result.rows == 200


def test_identical_previous_run_is_fully_stable(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel, mall_run: ScoreResult
) -> None:
    extra = mall_clean().head(5).copy()
    extra["customer_id"] = pd.array([f"new-{i}" for i in range(5)], dtype="string")
    df = pd.concat([mall_clean().iloc[10:], extra], ignore_index=True)  # 10 gone, 5 new
    clean = write_clean(df, tmp_path / "clean.parquet")
    result = score_dataset(
        clean,
        contract,
        mall_model,
        tmp_path / "out",
        run=run_info("run-3"),
        previous_assignments=mall_run.files["assignments_parquet"],
        chunk_rows=40,
    )
    st = result.metrics["stability"]
    assert st["available"] and st["same_model"]
    assert st["common_customers"] == 190
    assert st["changed"] == 0 and st["changed_share"] == 0.0
    assert st["new_customers"] == 5 and st["gone_customers"] == 10
    counts = st["transitions"]["counts"]
    assert sum(map(sum, counts)) == 190
    assert all(
        counts[i][j] == 0 for i in range(len(counts)) for j in range(len(counts[i])) if i != j
    )
    assert [r["name"] for r in st["transitions"]["to"]] == list(mall_model.segment_names().values())
    assert "segment in the previous run" in result.files["report"].read_text(encoding="utf-8")


def test_csv_neutralises_formulas_in_text_but_keeps_negative_numbers(
    tmp_path: Path, mall_model: SegmentModel
) -> None:
    """Also: a customer repeated in the clean data is scored once."""
    contract = builtin_contract("customers")
    df = mall_clean()
    df["customer_id"] = df["customer_id"].astype("object")
    df.loc[0, "customer_id"] = "=cmd()"
    df.loc[1, "customer_id"] = "@SUM(A1)"
    df["customer_id"] = df["customer_id"].astype("string")
    df["total_spend"] = -3.5  # the first value column: may be negative (net returns)
    df = pd.concat([df, df.iloc[[3, 150]]], ignore_index=True)  # two repeated customers
    clean = write_clean(df, tmp_path / "clean.parquet")
    result = score_dataset(
        clean, contract, mall_model, tmp_path / "out", run=run_info(), chunk_rows=60
    )
    assert result.rows == 200 and result.metrics["duplicates_dropped"] == 2
    text = result.files["assignments_csv"].read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].startswith('"customer_id","segment_id"')
    assert sum(1 for line in lines if line.startswith('"customer_id"')) == 1
    assert "\n'=cmd()," in text and "\n'@SUM(A1)," in text
    assert "\n=cmd()" not in text and '"=cmd()"' not in text
    csv = pd.read_csv(result.files["assignments_csv"], dtype={"customer_id": "string"})
    assert (csv["value"] == -3.5).all()  # numbers stay numbers
    # Parquet keeps the original text
    ids = pq.read_table(result.files["assignments_parquet"]).column("customer_id").to_pylist()
    assert "=cmd()" in ids
    assert len(ids) == len(set(ids)) == 200


@pytest.fixture(scope="module")
def telco(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Contract, SegmentModel]:
    from custseg.ingest.pipeline import ingest_file

    base = tmp_path_factory.mktemp("telco")
    result = ingest_file(
        DATA / "telco_customer_churn.csv",
        base / "clean",
        source_name="telco_customer_churn.csv",
        dataset="telco",
        run_id="r1",
    )
    assert result.clean_path is not None
    features = build_features(read_clean(result.clean_path).to_pandas(), result.contract, AS_OF)
    train = replace(  # a quarter of the customers is plenty to fit 3 segments (and fast)
        features,
        frame=features.frame.iloc[::4],
        value=None if features.value is None else features.value.iloc[::4],
        extras=features.extras.iloc[::4],
    )
    model = train_model(train, contract=result.contract, k=3, seed=42)
    return result.clean_path, result.contract, model


def test_telco_churn_lift_has_a_real_spread(
    tmp_path: Path, telco: tuple[Path, Contract, SegmentModel]
) -> None:
    clean, contract, model = telco
    run = replace(run_info(), dataset="telco")
    result = score_dataset(clean, contract, model, tmp_path / "out", run=run, chunk_rows=2_000)
    churn = result.metrics["outcomes"]["churn"]
    assert churn["customers"] == 7043
    assert churn["overall_rate"] == pytest.approx(1869 / 7043, abs=1e-4)  # 26.5 %
    lifts = [row["lift"] for row in churn["by_segment"]]
    assert max(lifts) > 1.4 and min(lifts) < 0.6
    weighted = sum(r["rate"] * r["customers"] for r in churn["by_segment"]) / churn["customers"]
    assert weighted == pytest.approx(churn["overall_rate"], abs=1e-3)
    html = result.files["report"].read_text(encoding="utf-8")
    assert 'aria-label="Churn rate per segment"' in html
    assert "7590-VHVEG" not in html  # no customer ids in the report
    assert "7590-VHVEG" not in result.files["metrics"].read_text(encoding="utf-8")
    assert "7590-VHVEG" not in result.files["profiles"].read_text(encoding="utf-8")


def test_customer_hashes_equal_stable_hash() -> None:
    ids = pd.Series(["007", "7", "=x", "ü-1", "C00000001"], dtype="string")
    assert (customer_hashes(ids) == stable_hash(ids)).all()
    assert (customer_hashes(pd.Index(ids)) == stable_hash(ids)).all()


def test_vectorised_siphash_equals_pandas() -> None:
    from custseg.scoring.score import _siphash_text

    rng = np.random.default_rng(11)
    alphabet = list("abcXYZ0189-_=é€😀 \t")
    words = ["".join(rng.choice(alphabet, int(rng.integers(0, 45)))) for _ in range(3_000)]
    words += ["", "C1", "x" * 7, "x" * 8, "x" * 9, "y" * 16, "z" * 23, "é" * 12, "u" * 39]
    expected = stable_hash(pd.Series(words, dtype="string"))
    short = [w for w in words if len(w.encode()) < 40]  # the vectorised path's length
    arrow = pa.array(short)
    got = _siphash_text(arrow)
    assert got is not None and (got == stable_hash(pd.Series(short, dtype="string"))).all()
    sliced = _siphash_text(arrow[7:500])
    assert sliced is not None and (sliced == stable_hash(pd.Series(short[7:500]))).all()
    large = _siphash_text(arrow.cast(pa.large_string()))
    assert large is not None and (large == got).all()
    assert _siphash_text(pa.array(["a", None])) is None  # nulls: pandas' way
    assert _siphash_text(pa.array(["x" * 40])) is None  # long ids: pandas' way
    index = pd.Index(pd.arrays.ArrowStringArray(pa.array(words)), name="customer_id")
    assert (customer_hashes(index) == expected).all()  # either way, the same hashes


def transactions_clean(n_customers: int = 60, seed: int = 0) -> pd.DataFrame:
    """A clean transactions table as ingest writes it (one row per invoice)."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2023-01-01")
    for c in range(n_customers):
        n = int(rng.integers(1, 12))
        for j in range(n):
            qty = float(rng.integers(1, 20))
            price = float(rng.uniform(1, 30))
            rows.append(
                {
                    "invoice_id": f"{c:04d}-{j}",
                    "event_time": start + pd.Timedelta(days=int(rng.integers(0, 360))),
                    "customer_id": f"{c:05d}",
                    "quantity": qty,
                    "unit_price": price,
                    "amount": qty * price,
                    "is_return": False,
                    "country": "united kingdom" if c % 3 else "france",
                }
            )
    df = pd.DataFrame(rows)
    for col in ("invoice_id", "customer_id", "country"):
        df[col] = df[col].astype("string")
    df["_row"] = np.arange(2, len(df) + 2)
    return df


def test_transactions_are_scored_once_per_customer_with_rfm(tmp_path: Path) -> None:
    contract = builtin_contract("transactions")
    df = transactions_clean()
    as_of = dt.date(2024, 1, 1)
    model = train_model(build_features(df, contract, as_of), contract=contract, k=3, seed=1)
    clean = write_clean(df, tmp_path / "clean.parquet", row_group_size=50)
    run = replace(run_info(), dataset="shop", as_of=None)  # default: day after the last event
    result = score_dataset(clean, contract, model, tmp_path / "out", run=run, chunk_rows=16)
    ids = pq.read_table(result.files["assignments_parquet"]).column("customer_id").to_pylist()
    assert len(ids) == len(set(ids)) == 60 == result.rows
    assert result.as_of == (df["event_time"].max() + pd.Timedelta(days=1)).date()
    labels = result.metrics["labels"]
    assert labels["rfm_available"] and sum(map(sum, labels["rfm_grid"]["counts"])) == 60
    assert result.metrics["value"]["measure"] == "monetary"
    assert result.profiles["value_measure"] == "monetary"
    assert sum(s["value_share"] for s in result.profiles["segments"]) == pytest.approx(1.0)


def test_an_empty_clean_file_still_gives_every_output(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel
) -> None:
    clean = write_clean(mall_clean().head(0), tmp_path / "clean.parquet")
    result = score_dataset(clean, contract, mall_model, tmp_path / "out", run=run_info())
    assert result.rows == 0 and result.verdict == "watch"
    assert "only 0 customers" in result.reasons[0]
    assert all(path.exists() for path in result.files.values())
    assert pq.read_table(result.files["assignments_parquet"]).num_rows == 0


def test_a_rerun_writes_the_same_bytes(
    tmp_path: Path, contract: Contract, mall_model: SegmentModel, mall_run: ScoreResult
) -> None:
    clean = write_clean(mall_clean(), tmp_path / "clean.parquet", row_group_size=64)
    quality = {
        "rows_read": 203,
        "rows_kept": 200,
        "rows_rejected": 3,
        "rejected_by_reason": {"age: out of range": 2, "customer_id: required value missing": 1},
    }
    again = score_dataset(
        clean,
        contract,
        mall_model,
        tmp_path / "out",
        run=run_info(),
        quality=quality,
        chunk_rows=13,
    )
    for name in ("assignments_csv", "profiles", "metrics", "report"):
        assert again.files[name].read_bytes() == mall_run.files[name].read_bytes(), name


def _slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score the way it was done before the fast paths: pandas features from each batch
    (no codes, no dictionary-encoded reads) and scikit-learn's own transform."""
    import custseg.scoring.score as scoring

    def pandas_features(batch: Any, contract: Contract, as_of: Any, schema: Any = None) -> Any:
        return build_features(batch.to_pandas(), contract, as_of, schema=schema)

    monkeypatch.setattr(scoring, "_dictionary_columns", lambda *args: [])
    monkeypatch.setattr(scoring, "build_features_arrow", pandas_features)
    monkeypatch.setattr(SegmentModel, "_fast_plan", lambda self: None)


def _same_files(a: ScoreResult, b: ScoreResult) -> None:
    ta = pq.read_table(a.files["assignments_parquet"])
    tb = pq.read_table(b.files["assignments_parquet"])
    assert ta.equals(tb)
    for name in ("assignments_csv", "metrics", "profiles", "report"):
        assert a.files[name].read_bytes() == b.files[name].read_bytes(), name


def test_fast_paths_write_the_same_files_as_the_slow_ones(
    tmp_path: Path, telco: tuple[Path, Contract, SegmentModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, contract, model = telco
    # repeated customers in later chunks (dropped, counted) on top of the telco file
    table = pq.read_table(clean)
    again = pa.concat_tables([table, table.slice(100, 700)])
    doubled = tmp_path / "doubled.parquet"
    pq.write_table(again, doubled, row_group_size=1_500)
    run = replace(run_info(), dataset="telco")
    fast = score_dataset(doubled, contract, model, tmp_path / "fast", run=run, chunk_rows=1_000)
    assert fast.metrics["duplicates_dropped"] == 700 and fast.rows == 7043
    _slow_paths(monkeypatch)
    slow = score_dataset(doubled, contract, model, tmp_path / "slow", run=run, chunk_rows=1_000)
    _same_files(fast, slow)


def test_fast_paths_on_transactions_and_mall(
    tmp_path: Path,
    contract: Contract,
    mall_model: SegmentModel,
    mall_run: ScoreResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tx_contract = builtin_contract("transactions")
    df = transactions_clean()
    model = train_model(build_features(df, tx_contract, AS_OF), contract=tx_contract, k=3, seed=1)
    clean = write_clean(df, tmp_path / "clean.parquet", row_group_size=50)
    fast = score_dataset(
        clean, tx_contract, model, tmp_path / "fast", run=run_info(), chunk_rows=16
    )
    mall = write_clean(mall_clean(), tmp_path / "mall.parquet", row_group_size=64)
    quality = {"rows_read": 203, "rows_kept": 200, "rows_rejected": 3}
    _slow_paths(monkeypatch)
    slow = score_dataset(
        clean, tx_contract, model, tmp_path / "slow", run=run_info(), chunk_rows=16
    )
    _same_files(fast, slow)
    slow_mall = score_dataset(
        mall,
        contract,
        mall_model,
        tmp_path / "mall",
        run=run_info(),
        quality=quality,
        chunk_rows=13,
    )
    for name in ("assignments_csv", "assignments_parquet"):
        assert slow_mall.files[name].read_bytes() == mall_run.files[name].read_bytes(), name


def test_seen_ids_admit_the_first_row_of_each_new_customer() -> None:
    from custseg.scoring.score import _SeenIds

    rng = np.random.default_rng(5)
    fast, slow = _SeenIds(), _SeenIds()
    for size in (50, 80, 10, 200, 0, 30):
        hashes = rng.integers(0, 400, size).astype("uint64")  # repeats within and across
        expected = ~slow.contains(hashes) & ~pd.Series(hashes).duplicated(keep="first").to_numpy()
        slow.add(hashes[expected])
        got = fast.admit(hashes)
        assert got.tolist() == expected.tolist()
        assert [r.tolist() for r in fast.runs] == [r.tolist() for r in slow.runs]
    fresh = np.arange(10_000, 12_000, dtype="uint64")  # the usual case: all new
    assert fast.admit(fresh).all()
    assert not fast.admit(fresh[::-1]).any()  # and all seen

"""How close any two-function order-log flow can come to the DuckDB floor of `make bench`.

The order-log ratio of ``scripts/bench.py`` compares custseg's full flow (the ingest and
score functions, S3 on a moto server in another process) with a floor that reads the CSV
from local disk and writes features' segments, validating and storing nothing. This
script measures, in one run and taking turns, that floor and a **least flow** that does
only what a flow of two functions with S3 between them cannot skip, each step on DuckDB
(the fastest engine at hand), with none of custseg's reports, row-level reasons, outputs,
metrics or predictions:

1. GET the upload from S3 (the ingest function's input; custseg's own S3 adapter, as for
   every S3 call here);
2. read it as text once, cast every column (``TRY_CAST``), count the rows each check
   rejects, keep the valid rows once (exact duplicates dropped), write them as Parquet;
3. PUT the clean Parquet to S3; GET it back (the score function's input);
4. the floor's features (``bench.FLOOR_SQL`` on the Parquet), the champion's predict,
   id,segment CSV; PUT it to S3.

It prints the medians and, as its last line, ``least_flow_over_floor X``: no flow of two
functions with S3 between them does better than X times the floor on this machine.

    .venv/bin/python scripts/bench_order_bound.py [--lines 5000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

TYPED_SQL = """
CREATE TEMP TABLE typed AS
SELECT
    InvoiceNo, CustomerID, Country,
    TRY_CAST(InvoiceDate AS TIMESTAMP) AS InvoiceDate,
    TRY_CAST(Quantity AS DOUBLE) AS Quantity,
    TRY_CAST(UnitPrice AS DOUBLE) AS UnitPrice
FROM read_csv($csv, header = true, all_varchar = true)
"""
REASONS_SQL = """
SELECT
    count(*) FILTER (WHERE CustomerID IS NULL) AS no_customer,
    count(*) FILTER (WHERE InvoiceDate IS NULL) AS bad_date,
    count(*) FILTER (WHERE Quantity IS NULL) AS bad_quantity,
    count(*) FILTER (WHERE NOT coalesce(UnitPrice > 0, false)) AS bad_price
FROM typed
"""
CLEAN_SQL = """
COPY (
    SELECT DISTINCT * FROM typed
    WHERE CustomerID IS NOT NULL AND InvoiceDate IS NOT NULL AND Quantity IS NOT NULL
      AND UnitPrice > 0
) TO '{out}' (FORMAT parquet)
"""


def child_least(endpoint: str, model_file: str, work: str) -> None:
    """The least flow, in one process (both functions' steps in turn)."""
    import duckdb
    import joblib
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from custseg.aws.s3 import ObjectStore

    s3 = ObjectStore(bench.s3_client(endpoint))  # custseg's own S3 reads and writes
    pipeline = joblib.load(model_file)
    schema = json.loads(Path(model_file).with_name("metadata.json").read_text())["feature_schema"]
    columns = [*schema["numeric"], *schema["categorical"]]
    tmp = Path(work)
    con = duckdb.connect()
    cpu0, _ = bench.usage()
    t0 = time.perf_counter()
    csv, clean, back = tmp / "upload.csv", tmp / "clean.parquet", tmp / "back.parquet"
    steps: dict[str, float] = {}

    def lap(name: str) -> None:
        steps[name] = time.perf_counter() - t0 - sum(steps.values())

    s3.download("bound", "incoming/orders.csv", csv)
    lap("get upload")
    con.execute(TYPED_SQL, {"csv": str(csv)})  # the CSV parsed once, in memory
    con.execute(REASONS_SQL).fetchall()
    lap("read, cast, count rejections")
    con.execute(CLEAN_SQL.format(out=clean))
    lap("keep valid rows once, write parquet")
    s3.upload("bound", "clean/part-0.parquet", clean)
    lap("put clean")
    s3.download("bound", "clean/part-0.parquet", back)
    lap("get clean")
    floor_sql = bench.FLOOR_SQL.replace(
        "read_csv($csv, header = true, columns = {\n"
        "        'InvoiceNo': 'VARCHAR', 'InvoiceDate': 'TIMESTAMP', 'CustomerID': 'VARCHAR',\n"
        "        'Quantity': 'DOUBLE', 'UnitPrice': 'DOUBLE', 'Country': 'VARCHAR'})",
        "read_parquet($csv)",
    )
    if floor_sql == bench.FLOOR_SQL:
        raise SystemExit("bench.FLOOR_SQL no longer reads the CSV as this script expects")
    features = con.execute(floor_sql, {"csv": str(back)}).df()
    lap("features")
    segment = pipeline.predict(features[columns])
    out = tmp / "segments.csv"
    pacsv.write_csv(pa.table({"customer_id": features["customer_id"], "segment": segment}), out)
    lap("predict, csv")
    s3.upload("bound", "results/segments.csv", out)
    lap("put segments")
    wall = time.perf_counter() - t0
    cpu1, peak = bench.usage()
    print(json.dumps({"wall": wall, "cpu": cpu1 - cpu0, "peak_rss": peak, "steps": steps}))


def run_least(endpoint: str, artifact: Path, work: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "_least", endpoint, str(artifact / "model.joblib"), str(work)],
        check=True,
        capture_output=True,
        text=True,
        cwd=bench.REPO,
        env={**os.environ, "PYTHONPATH": bench.PYTHONPATH},
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="custseg-bound-") as tmp_name:
        tmp = Path(tmp_name)
        csv = tmp / "orders.csv"
        bench.make_orders_csv(csv, args.lines, 7)
        artifact = bench.train_champion(csv, args.train_rows, tmp / "champion")
        floor: list[dict[str, Any]] = []
        least: list[dict[str, Any]] = []
        with bench.moto_server() as (endpoint, _):
            s3 = bench.s3_client(endpoint)
            s3.create_bucket(Bucket="bound")
            s3.upload_file(str(csv), "bound", "incoming/orders.csv")
            for i in range(args.repeat):
                order = ("floor", "least") if i % 2 == 0 else ("least", "floor")
                for who in order:
                    if who == "floor":
                        floor.append(bench.run_light("_floor", csv, artifact, tmp))
                    else:
                        least.append(run_least(endpoint, artifact, tmp))
                steps = ", ".join(f"{k} {v:.2f}" for k, v in least[-1]["steps"].items())
                print(
                    f"  run {i + 1}: floor {floor[-1]['wall']:.2f}s, least flow "
                    f"{least[-1]['wall']:.2f}s ({steps})",
                    flush=True,
                )
    f = statistics.median(r["wall"] for r in floor)
    g = statistics.median(r["wall"] for r in least)
    print(
        f"{args.lines:,} order lines, medians of {args.repeat}: floor {f:.2f}s, least flow "
        f"{g:.2f}s (cpu {statistics.median(r['cpu'] for r in least):.2f}s)"
    )
    print(f"least_flow_over_floor {g / f:.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_least":
        child_least(*sys.argv[2:5])
    else:
        sys.exit(main())

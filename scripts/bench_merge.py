"""Time and peak memory of merging a dataset state's parts (custseg.dataset.merge).

Builds ``--parts`` clean order-log parts of ``--rows`` lines in all (a tenth of each part's
lines repeat lines of the part before, as an overlapping export would), then merges them
with DuckDB under ``--memory-mb``, in a child process so that its peak RSS is its own.

    .venv/bin/python scripts/bench_merge.py --rows 5000000 --parts 5 --memory-mb 1800
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_parts(root: Path, rows: int, parts: int, seed: int = 7) -> list[Path]:
    rng = np.random.default_rng(seed)
    per = rows // parts
    start = np.datetime64("2025-01-01T00:00:00")
    out, previous = [], None
    for i in range(parts):
        n = per
        cust = rng.integers(0, rows // 20, n)
        table = pa.table(
            {
                "_row": pa.array(np.arange(n), pa.int64()),
                "invoice_id": pa.array((rng.integers(0, 10**9, n)).astype(str)),
                "event_time": pa.array(
                    start + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]"),
                    pa.timestamp("ns"),
                ),
                "customer_id": pa.array(np.char.add("C", cust.astype(str))),
                "amount": pa.array(rng.gamma(2.0, 20.0, n).round(2)),
            }
        )
        if previous is not None:  # an overlapping export: a tenth repeats the part before
            overlap = previous.slice(0, n // 10).drop_columns(["_row"])
            rest = table.slice(n // 10).drop_columns(["_row"])
            table = pa.concat_tables([overlap, rest])
            table = table.add_column(0, "_row", pa.array(np.arange(n), pa.int64()))
        path = root / f"p{i}"
        path.mkdir()
        pq.write_table(table, path / "part-00000.parquet")
        out.append(path)
        previous = table
    return out


def child(parts: list[str], out: str, memory_mb: int) -> None:
    from custseg.dataset.merge import merge_parts
    from custseg.features.engine import EngineLimits

    t = time.perf_counter()
    merged = merge_parts(
        [Path(p) for p in parts],
        "transactions",
        Path(out),
        limits=EngineLimits(memory_mb, Path(out).parent / "spill", threads=2),
    )
    seconds = time.perf_counter() - t
    rows = sum(pq.read_metadata(str(f)).num_rows for f in merged.iterdir())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "rows": rows, "peak_mib": round(peak)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--parts", type=int, default=5)
    ap.add_argument("--memory-mb", type=int, default=1800)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        parts, out, memory = args.child
        child(json.loads(parts), out, int(memory))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        parts = make_parts(Path(tmp), args.rows, args.parts)
        built = time.perf_counter() - t
        cmd = [sys.executable, __file__, "--child", json.dumps([str(p) for p in parts]),
               str(Path(tmp) / "merged"), str(args.memory_mb)]  # fmt: skip
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
    print(
        f"merge {args.rows:,} order lines in {args.parts} parts "
        f"(built in {built:.1f}s, {dt.date.today()}): {result['seconds']} s, "
        f"{result['rows']:,} rows kept, peak RSS {result['peak_mib']} MiB "
        f"(DuckDB memory limit {args.memory_mb} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

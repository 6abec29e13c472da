"""Micro-benchmark: order-log features on DuckDB (bounded memory) against build.py's pandas.

Writes one seeded synthetic clean order log of ``--rows`` lines (default 5M; ~4 lines per
invoice, 5 % returns, ``--customers`` customers, default rows / 20; a category column
``channel`` and an attribute ``country``) as Parquet parts of 1M rows in a temporary
directory, then runs each contender in a fresh process of its own:

- **duckdb**: :func:`custseg.features.engine.compute_features` with ``--memory-mb``
  (default 1024) and a spill directory, the Arrow batches gathered into one table;
- **build.py**: the clean parts read whole (``read_clean(...).to_pandas()``), then
  :func:`custseg.features.build.build_features`.

Each worker reports the wall time of its feature step (from reading the parts to the
features in memory) and its peak RSS (``VmHWM``), with the RSS after its imports. The
parent checks that both give the same customers and transaction features (1e-9 relative)
and prints, as its last line, a one-line summary.

    .venv/bin/python scripts/bench_features.py --rows 1000000
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

from custseg.features.engine import default_threads

AS_OF = dt.date(2023, 10, 1)
PART_ROWS = 1_000_000
CHANNELS = ["web", "shop", "phone", "app"]
COUNTRIES = ["united kingdom", "germany", "france", "eire", "spain", "netherlands"]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def order_log(rows: int, customers: int, seed: int = 7) -> pa.Table:
    """A clean order log of ``rows`` lines in the ingest's column conventions."""
    rng = np.random.default_rng(seed)
    invoices = rows // 4 + 1
    invoice = np.arange(rows, dtype=np.int64) // 4
    customer = rng.integers(0, customers, size=invoices)[invoice]
    start = np.datetime64("2023-01-01T00:00:00", "s").astype(np.int64)
    seconds = start + rng.integers(0, 365 * 86400, size=invoices)[invoice]
    amount = np.round(rng.gamma(2.0, 15.0, size=rows), 2)
    returned = rng.random(rows) < 0.05
    amount[returned] = -amount[returned]
    channel = pa.array(CHANNELS).take(pa.array(rng.integers(0, len(CHANNELS), size=rows)))
    country = pa.array(COUNTRIES).take(pa.array(rng.integers(0, len(COUNTRIES), size=rows)))
    return pa.table(
        {
            "invoice_id": pa.array(invoice).cast(pa.string()),
            "event_time": pa.array(seconds.astype("datetime64[s]")).cast(pa.timestamp("ns")),
            "customer_id": pa.array(customer).cast(pa.string()),
            "amount": pa.array(amount),
            "is_return": pa.array(returned),
            "channel": channel,
            "country": country,
            "_row": pa.array(np.arange(rows, dtype=np.int64) + 2),
        }
    )


def write_parts(table: pa.Table, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, table.num_rows, PART_ROWS)):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(table.slice(start, PART_ROWS), path, row_group_size=128 * 1024)
        parts.append(path)
    return parts


def run_duckdb(parts: list[Path], out: Path, memory_mb: int, spill: Path) -> pa.Table:
    from custseg.features.engine import compute_features
    from custseg.ingest.contracts.model import builtin_contract

    batches = compute_features(
        parts, builtin_contract("transactions"), AS_OF, memory_limit_mb=memory_mb, temp_dir=spill
    )  # threads: engine.default_threads()
    return pa.Table.from_batches(list(batches))


def run_pandas(parts: list[Path], out: Path, memory_mb: int, spill: Path) -> pa.Table:
    from custseg.dataset.clean_data import read_clean
    from custseg.features.build import build_features
    from custseg.ingest.contracts.model import builtin_contract

    clean = read_clean(parts[0].parent).to_pandas()
    features = build_features(clean, builtin_contract("transactions"), AS_OF)
    del clean
    return pa.Table.from_pandas(features.frame.reset_index(), preserve_index=False)


WORKERS = {"duckdb": run_duckdb, "build.py": run_pandas}


def worker(name: str, folder: Path, out: Path, memory_mb: int, spill: Path) -> None:
    """One contender in this process: prints a JSON line of its figures."""
    import custseg.features.build
    import custseg.features.engine  # noqa: F401  (imports are not the feature step)

    parts = sorted(folder.glob("part-*.parquet"))
    base = peak_rss_mb()
    start = time.perf_counter()
    table = WORKERS[name](parts, out, memory_mb, spill)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    pq.write_table(table, out)
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "base_mb": base}))


def measure(name: str, folder: Path, out: Path, memory_mb: int, spill: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(folder), "--out", str(out)]
    cmd += ["--memory-mb", str(memory_mb), "--spill", str(spill)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {name} worker failed:\n{done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def same_features(duck: Path, ref: Path) -> bool:
    a = pq.read_table(duck).to_pandas().set_index("customer_id")
    b = pq.read_table(ref).to_pandas().set_index("customer_id")
    if list(a.index) != list(b.index):
        return False
    numeric = [c for c in b.columns if b[c].dtype == np.float64]
    categorical = [c for c in b.columns if c not in numeric]
    close = all(np.allclose(a[c], b[c], rtol=1e-9, atol=1e-9) for c in numeric)
    return close and all((a[c].astype(str) == b[c].astype(str)).all() for c in categorical)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="order lines")
    parser.add_argument("--customers", type=int, default=None, help="default: rows / 20")
    parser.add_argument("--memory-mb", type=int, default=1024, help="DuckDB's memory limit")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spill", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.out, args.memory_mb, args.spill)
        return 0
    customers = args.customers or max(1, args.rows // 20)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        root = Path(tmp)
        write_parts(order_log(args.rows, customers), root / "data")
        figures = {
            name: measure(
                name, root / "data", root / f"{i}.parquet", args.memory_mb, root / "spill"
            )
            for i, name in enumerate(WORKERS)
        }
        same = same_features(root / "0.parquet", root / "1.parquet")
    for name, f in figures.items():
        print(
            f"{name:9s} {f['seconds']:7.2f} s  peak RSS {f['peak_mb']:7.0f} MB "
            f"(after imports {f['base_mb']:.0f} MB)"
        )
    d, p = figures["duckdb"], figures["build.py"]
    print(
        f"features of {args.rows:,} lines, {customers:,} customers: "
        f"duckdb {d['seconds']:.2f} s, peak {d['peak_mb']:.0f} MB "
        f"(limit {args.memory_mb} MB, {default_threads()} threads) | "
        f"build.py {p['seconds']:.2f} s, peak {p['peak_mb']:.0f} MB | "
        f"{p['seconds'] / d['seconds']:.1f}x faster, same values: {'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

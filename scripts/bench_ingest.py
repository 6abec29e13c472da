"""Benchmark ``ingest_file`` on a synthetic customers table.

Generates a seeded CSV of ``--rows`` customers (customer_id, six numeric and three
categorical columns, headers of the default customers contract, a few blanks, bad
values and repeated ids) in a temporary directory, then runs ``ingest_file`` in a fresh
child process ``--repeat`` times and prints, per run, rows/s, CPU seconds (user + sys of
the child, from ``resource.getrusage``) and peak RSS of the child.

    python scripts/bench_ingest.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HEADERS = [
    "customer_id",
    "age",
    "annual_income",
    "spending_score",
    "tenure",
    "monthly_charges",
    "total_charges",
    "gender",
    "contract",
    "payment_method",
]


def make_csv(path: Path, rows: int, seed: int) -> None:
    """Write the synthetic customers CSV (in 1M-row pieces to bound memory)."""
    rng = np.random.default_rng(seed)
    piece = 1_000_000
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(HEADERS) + "\n")
        for start in range(0, rows, piece):
            n = min(piece, rows - start)
            ids = np.arange(start, start + n)
            # ~0.1% repeated ids (a later update of an earlier customer)
            rep = rng.random(n) < 0.001
            ids[rep] = rng.integers(0, max(start + 1, 1), rep.sum())
            tenure = rng.integers(0, 72, n)
            monthly = np.round(rng.uniform(18, 120, n), 2)
            frame = pd.DataFrame(
                {
                    "customer_id": "C" + pd.Series(ids).astype(str),
                    "age": rng.integers(18, 90, n).astype(str),
                    "annual_income": np.round(rng.lognormal(3.8, 0.5, n), 1).astype(str),
                    "spending_score": rng.integers(1, 101, n).astype(str),
                    "tenure": tenure.astype(str),
                    "monthly_charges": monthly.astype(str),
                    "total_charges": np.round(monthly * np.maximum(tenure, 1), 2).astype(str),
                    "gender": rng.choice(
                        ["Male", "Female", "F", "M"], n, p=[0.45, 0.45, 0.05, 0.05]
                    ),
                    "contract": rng.choice(["Month-to-month", "One year", "Two year"], n),
                    "payment_method": rng.choice(
                        [
                            "Electronic check",
                            "Mailed check",
                            "Bank transfer (automatic)",
                            "Credit card (automatic)",
                        ],
                        n,
                    ),
                }
            )
            blank = rng.random(n) < 0.01
            frame.loc[blank, "total_charges"] = " "
            bad = rng.random(n) < 0.0005
            frame.loc[bad, "age"] = "abc"
            frame.to_csv(fh, header=False, index=False)


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from custseg.ingest.pipeline import ingest_file
src, out, chunk = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def usage():
    # VmHWM is this process's own peak (ru_maxrss can carry the parent's across exec)
    r = resource.getrusage(resource.RUSAGE_SELF)
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")]
    peak = int(hwm[0].split()[1]) * 1024 if hwm else r.ru_maxrss * 1024
    return r.ru_utime + r.ru_stime, peak
cpu0, rss0 = usage()
t0 = time.perf_counter()
res = ingest_file(src, out, source_name=src.name, dataset="bench", run_id="bench",
                  chunk_rows=chunk)
wall = time.perf_counter() - t0
cpu1, rss1 = usage()
rep = res.report
print(json.dumps({"status": res.status, "rows_read": rep.rows_read, "rows_kept": rep.rows_kept,
                  "cpu": cpu1 - cpu0, "wall": wall, "rss_peak": rss1, "rss_base": rss0,
                  "timings_ms": rep.timings_ms}))
"""


def run_once(src: Path, out: Path, chunk_rows: int) -> dict:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(out), str(chunk_rows)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--csv", type=Path, help="reuse (or create) the CSV at this path")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        src = args.csv or Path(tmp) / f"customers_{args.rows}_{args.seed}.csv"
        if not src.exists():
            make_csv(src, args.rows, args.seed)
        mb = src.stat().st_size / 1e6
        print(f"input: {src} ({args.rows:,} rows x {len(HEADERS)} columns, {mb:.0f} MB)")
        results = []
        for i in range(args.repeat):
            r = run_once(src, Path(tmp) / "out", args.chunk_rows)
            results.append(r)
            phases = ", ".join(f"{k} {v / 1000:.2f}s" for k, v in r["timings_ms"].items())
            print(
                f"run {i + 1}: {r['status']}, {r['rows_kept']:,}/{r['rows_read']:,} kept, "
                f"cpu {r['cpu']:.2f} s, wall {r['wall']:.2f} s, "
                f"{r['rows_read'] / r['cpu']:,.0f} rows/s (cpu), "
                f"peak RSS {r['rss_peak'] / 2**20:.0f} MiB "
                f"(+{(r['rss_peak'] - r['rss_base']) / 2**20:.0f} MiB over imports) [{phases}]"
            )
        best = min(results, key=lambda r: r["cpu"])
        print(
            f"best: cpu {best['cpu']:.2f} s, {best['rows_read'] / best['cpu']:,.0f} rows/s, "
            f"peak RSS {max(r['rss_peak'] for r in results) / 2**20:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of ``ingest_file`` on an order log, phase by phase, without the handlers.

Runs ``custseg.ingest.pipeline.ingest_file`` on an order-log CSV (the benchmark's
generator, :func:`bench.make_orders_csv`, seed 7) in a fresh child process per run and
prints the child's peak RSS (``VmHWM``), its wall time and, per pipeline phase, the
largest RSS and Arrow-pool bytes seen by a sampler thread (every ``--interval`` s):
what grows with the file shows up as the phase whose peak grows.

    python scripts/bench_ingest_memory.py --lines 5000000 20000000
    python scripts/bench_ingest_memory.py --lines 5000000 --repeat 3 --keep /tmp/mem

The CSVs are written to ``--keep`` (reused when already there) or a temporary directory
removed at the end. The last line is ``peak_mib A B ... growth X wall_s W``: the median
peak per size, the last size's peak over the first's and the first size's median wall.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# the pipeline's steps, in order; each sets the phase its samples are tagged with
PHASES = (
    ("_sniff_contract", "sniff"),
    ("_pass1", "pass1"),
    ("_dedupe", "dedupe"),
    ("_kept_stats", "stats"),
    ("_write_clean", "pass2"),
    ("_reject_duplicates", "rejects"),
)


def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(csv: Path, out_dir: Path, interval: float) -> dict[str, Any]:
    """Ingest ``csv`` in this process, sampling RSS per phase."""
    import pyarrow as pa

    from custseg.ingest import pipeline

    phase = ["start"]
    peaks: dict[str, dict[str, int]] = {}

    def sample() -> None:
        rss, arrow = _rss_kib(), pa.total_allocated_bytes() >> 10
        top = peaks.setdefault(phase[0], {"rss_kib": 0, "arrow_kib": 0})
        top["rss_kib"] = max(top["rss_kib"], rss)
        top["arrow_kib"] = max(top["arrow_kib"], arrow)

    def tagged(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sample()
            phase[0] = name
            try:
                return fn(*args, **kwargs)
            finally:
                sample()
                phase[0] = "after " + name

        return wrapper

    for attr, name in PHASES:
        if hasattr(pipeline, attr):
            setattr(pipeline, attr, tagged(name, getattr(pipeline, attr)))
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(interval):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = pipeline.ingest_file(csv, out_dir, source_name="x.csv", dataset="d", run_id="r1")
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {
        "status": result.status,
        "rows_read": result.report.rows_read,
        "rows_kept": result.report.rows_kept,
        "duplicates": result.report.duplicates,
        "wall_s": wall,
        "peak_kib": _rss_kib("VmHWM"),
        "phases": peaks,
        "timings_ms": {k: round(v) for k, v in result.report.timings_ms.items()},
    }


def run_child(csv: Path, interval: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ingest-mem-", dir=csv.parent) as out:
        cmd = [sys.executable, __file__, "--child", str(csv), out, str(interval)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def order_log(folder: Path, lines: int) -> Path:
    path = folder / f"orders-{lines}.csv"
    if not path.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        import bench

        bench.make_orders_csv(path, lines, seed=7)
    return path


def show(lines: int, run: dict[str, Any]) -> None:
    print(
        f"{lines:>11,} lines  peak {run['peak_kib'] / 1024:7.0f} MiB  wall {run['wall_s']:6.2f} s"
        f"  kept {run['rows_kept']:,}  duplicates {run['duplicates']}"
    )
    for name, top in run["phases"].items():
        print(
            f"{'':14}{name:16} rss {top['rss_kib'] / 1024:7.0f} MiB"
            f"  arrow {top['arrow_kib'] / 1024:7.0f} MiB"
        )
    print(f"{'':14}timings_ms {run['timings_ms']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.05, help="sampling period, s")
    parser.add_argument("--keep", type=Path, help="folder for the CSVs (kept, reused)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ingest-mem-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        peaks: list[float] = []
        walls: list[float] = []
        for lines in args.lines:
            csv = order_log(folder, lines)
            runs = [run_child(csv, args.interval) for _ in range(args.repeat)]
            for run in runs:
                show(lines, run)
            peaks.append(statistics.median(r["peak_kib"] for r in runs) / 1024)
            walls.append(statistics.median(r["wall_s"] for r in runs))
    print(
        "peak_mib " + " ".join(f"{p:.0f}" for p in peaks)
        + f" growth {peaks[-1] / peaks[0]:.2f} wall_s {walls[0]:.2f}"
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        out = child(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))
        print(json.dumps(out))
        sys.exit(0)
    sys.exit(main())

"""Peak memory of ``score_dataset`` on an order log, phase by phase, without the handlers.

Prepares, once per size (kept in ``--keep``, reused when there): an order-log CSV of the
benchmark's generator (:func:`bench.make_orders_csv`, seed 7), its clean Parquet
(``custseg.ingest.pipeline.ingest_file``) and a champion trained on the first 100,000
lines of the first size (:func:`bench.train_champion`). Then scores each size's clean
data in a fresh child process, with the score function's engine limits
(:func:`custseg.features.engine.lambda_limits` of ``--memory-mb``, 3008 as deployed), and
prints the child's peak RSS (``VmHWM``), its wall time and, per phase (``features``: the
DuckDB feature query making the next chunk, ``chunks``: a chunk's scoring and writing,
``evaluate``, ``holdout``, ``predictions``, ``report``), the largest RSS a sampler thread
saw (every ``--interval`` s), and the Arrow pool's largest size.

    python scripts/bench_score_memory.py --lines 5000000 20000000 --keep /tmp/smem

The last line is ``peak_mib A B ... growth X wall_s W``: the median peak per size, the
last size's peak over the first's and the first size's median wall.
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

sys.path.insert(0, str(Path(__file__).parent))

from bench_ingest_memory import _rss_kib

MEMORY_MB = 3008
"""The score function's memory as deployed (``infra/template.yaml``)."""

# (module, function, phase): while one runs, the samples are tagged with its phase (a
# generator's: while it makes its next item), then with the phase it was called in
PHASES = (
    ("custseg.scoring.score", "_feature_chunks", "features (DuckDB)"),
    ("custseg.scoring.score", "_score_chunk", "chunks (score, write)"),
    ("custseg.scoring.score", "_evaluate_run", "evaluate"),
    ("custseg.scoring.score", "_predictions", "holdout"),
    ("custseg.scoring.score", "add_predictions", "predictions"),
    ("custseg.scoring.score", "_write_report", "report"),
)


def child(
    clean: Path, artifact: Path, out_dir: Path, interval: float, memory_mb: int, range_rows: int
) -> dict[str, Any]:
    """Score ``clean`` with the champion in ``artifact`` in this process, sampling RSS."""
    import datetime as dt
    import importlib
    import inspect

    import joblib
    import pyarrow as pa

    from custseg.features.engine import lambda_limits
    from custseg.ingest.contracts.model import load_contract
    from custseg.model.artifact import SegmentModel, _unpack
    from custseg.scoring import score

    pipeline, predictors = _unpack(joblib.load(artifact / "model.joblib"))
    metadata = json.loads((artifact / "metadata.json").read_text())
    model = SegmentModel(pipeline=pipeline, metadata=metadata, predictors=predictors)
    contract = load_contract(clean.parent / "contract.json")
    phase = ["start"]
    peaks: dict[str, int] = {}

    def sample() -> None:
        peaks[phase[0]] = max(peaks.get(phase[0], 0), _rss_kib())
        peaks["arrow pool"] = max(peaks.get("arrow pool", 0), pa.total_allocated_bytes() >> 10)

    def enter(name: str) -> str:
        sample()
        outer, phase[0] = phase[0], name
        return outer

    def leave(outer: str) -> None:
        sample()
        phase[0] = outer

    def tagged(name: str, fn: Any) -> Any:
        if inspect.isgeneratorfunction(fn):

            def generator(*args: Any, **kwargs: Any) -> Any:
                items = fn(*args, **kwargs)
                while True:
                    outer = enter(name)
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                    finally:
                        leave(outer)
                    yield item

            return generator

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                leave(outer)

        return wrapper

    if range_rows:
        from custseg.features import engine

        engine.RANGE_ROWS = range_rows
    for module_name, attr, name in PHASES:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            setattr(module, attr, tagged(name, getattr(module, attr)))
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(interval):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = score.score_dataset(
        clean,
        contract,
        model,
        out_dir,
        run=score.RunInfo(dataset="d", run_id="r1", run_date=dt.date(2026, 1, 1)),
        limits=lambda_limits(memory_mb, tmp=out_dir),
    )
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {
        "rows": result.rows,
        "verdict": result.verdict,
        "wall_s": wall,
        "peak_kib": _rss_kib("VmHWM"),
        "phases": peaks,
        "timings": result.timings,
    }


def run_child(
    clean: Path, artifact: Path, interval: float, memory_mb: int, range_rows: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="score-mem-", dir=clean.parent.parent) as out:
        cmd = [sys.executable, __file__, "--child", str(clean), str(artifact), out]
        cmd += [str(interval), str(memory_mb), str(range_rows)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def prepare(folder: Path, lines: int) -> Path:
    """The clean Parquet directory of an order log of ``lines`` lines (made once)."""
    import bench

    csv = folder / f"orders-{lines}.csv"
    clean_dir = folder / f"clean-{lines}"
    if not (clean_dir / "data").exists():
        if not csv.exists():
            bench.make_orders_csv(csv, lines, seed=7)
        code = (
            "import sys; from pathlib import Path; from custseg.ingest.pipeline import ingest_file;"
            "r = ingest_file(Path(sys.argv[1]), Path(sys.argv[2]), source_name='x.csv',"
            " dataset='d', run_id='r1'); assert r.status == 'accepted', r.status"
        )
        subprocess.run([sys.executable, "-c", code, str(csv), str(clean_dir)], check=True)
    return clean_dir / "data"


def champion(folder: Path, lines: int) -> Path:
    import bench

    artifact = folder / "champion" / "artifact"
    if not (artifact / "model.joblib").exists():
        bench.train_champion(folder / f"orders-{lines}.csv", 100_000, folder / "champion")
    return artifact


def show(lines: int, run: dict[str, Any]) -> None:
    print(
        f"{lines:>11,} lines  peak {run['peak_kib'] / 1024:7.0f} MiB  wall {run['wall_s']:6.2f} s"
        f"  customers {run['rows']:,}  verdict {run['verdict']}"
    )
    for name, rss in run["phases"].items():
        print(f"{'':14}{name:20} rss {rss / 1024:7.0f} MiB")
    print(f"{'':14}timings_s {run['timings']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.05, help="sampling period, s")
    parser.add_argument("--memory-mb", type=int, default=MEMORY_MB, help="function memory")
    parser.add_argument(
        "--range-rows", type=int, default=0, help="engine.RANGE_ROWS (0: as released)"
    )
    parser.add_argument("--keep", type=Path, help="folder for the data (kept, reused)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="score-mem-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        cleans = [prepare(folder, lines) for lines in args.lines]
        artifact = champion(folder, args.lines[0])
        peaks: list[float] = []
        walls: list[float] = []
        for lines, clean in zip(args.lines, cleans, strict=True):
            runs = [
                run_child(clean, artifact, args.interval, args.memory_mb, args.range_rows)
                for _ in range(args.repeat)
            ]
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
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        out = child(Path(a[0]), Path(a[1]), Path(a[2]), float(a[3]), int(a[4]), int(a[5]))
        print(json.dumps(out))
        sys.exit(0)
    sys.exit(main())

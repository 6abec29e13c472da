"""Fuzz ``ingest_file`` with malformed CSV files (a longer campaign than ``make test``).

    python scripts/fuzz.py --cases 2000 [--seed 1] [--kind customers] [--out fuzz-failures]
    python scripts/fuzz.py --replay fuzz-failures/fuzz-customers-123.csv

Each case is built from its own seed by ``tests/fuzzcases.py`` (the same builders the
hypothesis tests use) and must end in a committed run or a rejection report with no
unhandled exception, ``rows_read == rows_kept + rows_rejected``, a readable Parquet
file for accepted runs and no personal value in the reports. Prints ``cases N,
failures F``; each failing input is saved to the failures directory with a ``.txt``
holding the traceback and the command that reproduces it. Exit status 1 on failure.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "shared"))

from fuzzcases import KINDS, FuzzCase, build_case, check_case  # noqa: E402


def run_case(case: FuzzCase, work: Path) -> str | None:
    """None when every property holds, else the traceback text."""
    try:
        check_case(case, work)
    except Exception:
        return traceback.format_exc()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return None


def save_failure(case: FuzzCase, error: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / case.name
    path.write_bytes(case.data)
    repro = f"python scripts/fuzz.py --replay {path} --chunk-rows {case.chunk_rows}"
    note = f"{case.describe()}\nreproduce: {repro}\n  or: build_case({case.seed}, {case.kind!r})\n"
    path.with_suffix(".txt").write_text(note + "\n" + error, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200, help="number of cases to run")
    ap.add_argument("--seed", type=int, default=None, help="campaign seed (default: random)")
    ap.add_argument("--kind", choices=KINDS, default=None, help="only this kind of case")
    ap.add_argument("--out", type=Path, default=Path("fuzz-failures"), help="failing inputs")
    ap.add_argument("--replay", type=Path, help="run one saved input file again")
    ap.add_argument(
        "--chunk-rows", type=int, default=250_000, help="the replayed input's chunk size"
    )
    args = ap.parse_args(argv)

    if args.replay is not None:
        case = FuzzCase(
            seed=0, kind="replay", data=args.replay.read_bytes(), chunk_rows=args.chunk_rows
        )
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            error = run_case(case, Path(tmp) / "case")
        print(error or f"{args.replay}: every property holds")
        return 1 if error else 0

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"fuzzing ingest_file: {args.cases} cases, campaign seed {seed}")
    master = random.Random(seed)
    failures = 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for i in range(args.cases):
            case = build_case(master.randrange(2**63), args.kind)
            error = run_case(case, Path(tmp) / f"case-{i}")
            if error is not None:
                failures += 1
                path = save_failure(case, error, args.out)
                last = error.strip().splitlines()[-1]
                print(f"FAIL {case.describe()}\n  {last}\n  saved {path}", flush=True)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} cases, {failures} failures, {time.monotonic() - t0:.0f} s",
                      flush=True)  # fmt: skip
    print(f"cases {args.cases}, failures {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

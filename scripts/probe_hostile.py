"""Probe the ingest with hostile uploads at full size: peak RSS and outcome of each.

Builds, in a temporary directory (removed afterwards), the files the ingest must survive
within its memory:

- ``bomb.csv.gz``: a gzip of 1 GiB of identical customer rows (about 3.5 MB compressed);
- ``twice.csv``: a 700 MB customer file in which every customer appears twice;
- ``long_row.csv``: a header, then one 200 MB line, then a normal row;
- ``long_header.csv``: one 200 MB line with no line end (a header that never ends).

Each file is ingested by ``ingest_file`` in a fresh child process with the stack's
default limits (:class:`custseg.ingest.reading.ReadLimits`); the child's peak RSS
(``resource.getrusage``), wall time, status and file-level error codes are printed, one
line per file. ``--scale 0.1`` builds every file at a tenth of its size.

    python scripts/probe_hostile.py            # full size: a few minutes, ~2 GB of disk
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = (
    "customer_id,age,annual_income,spending_score,tenure,monthly_charges,total_charges,"
    "gender,contract,payment_method\n"
)
LIMIT_MIB = 1536  # the make-or-break line: peak RSS under 1.5 GiB


def _row(i: int, score: int) -> str:
    return (
        f"C{i:09d},{18 + i % 70},{20000 + (i * 37) % 90000}.5,{score},{i % 72},"
        f"{18 + (i * 7) % 100}.25,{(i * 13) % 8000}.75,{('female', 'male')[i % 2]},"
        f"{('month-to-month', 'one year', 'two year')[i % 3]},"
        f"{('credit card', 'bank transfer', 'electronic check')[i % 3]}\n"
    )


def make_bomb(path: Path, total: int) -> None:
    """A gzip of ``total`` bytes of one row repeated (after the header)."""
    row = _row(1, 50).encode()
    block = row * (4 * 1024 * 1024 // len(row))
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(HEADER.encode())
        written = 0
        while written < total:
            fh.write(block)
            written += len(block)


def make_twice(path: Path, total: int) -> None:
    """``total`` bytes of rows where every customer appears twice: the first half of the
    file, then the same customers again (every other one an exact copy, the others with
    a new spending score)."""
    per_half = total // 2
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        customers = 0
        size = 0
        lines: list[str] = []
        while size < per_half:
            line = _row(customers, 40)
            lines.append(line)
            size += len(line)
            customers += 1
            if len(lines) >= 100_000:
                fh.write("".join(lines))
                lines.clear()
        fh.write("".join(lines))
        lines.clear()
        for i in range(customers):
            lines.append(_row(i, 40 if i % 2 == 0 else 41))
            if len(lines) >= 100_000:
                fh.write("".join(lines))
                lines.clear()
        fh.write("".join(lines))


def make_long_row(path: Path, total: int) -> None:
    """A header, one line of ``total`` bytes, then a normal row."""
    piece = b"x" * (16 * 1024 * 1024)
    with open(path, "wb") as fh:
        fh.write(HEADER.encode())
        fh.write(b"C1,")
        written = 3
        while written < total:
            n = min(len(piece), total - written)
            fh.write(piece[:n])
            written += n
        fh.write(b"\n" + _row(2, 50).encode())


def make_long_header(path: Path, total: int) -> None:
    """One line of ``total`` bytes, no line end: header names separated by commas."""
    piece = b"customer_id," + b"abcdefgh," * (2 * 1024 * 1024)
    with open(path, "wb") as fh:
        written = 0
        while written < total:
            n = min(len(piece), total - written)
            fh.write(piece[:n])
            written += n


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from custseg.ingest.pipeline import ingest_file
src, out = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
res = ingest_file(src, out, source_name=src.name, dataset="probe", run_id="probe")
rep = res.report
print(json.dumps({
    "status": res.status,
    "codes": rep.file_errors,
    "message": rep.errors[0]["message"] if rep.errors else "",
    "rows_read": rep.rows_read,
    "rows_kept": rep.rows_kept,
    "rows_duplicate": rep.rows_duplicate,
    "seconds": round(time.perf_counter() - t, 1),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def probe(path: Path, work: Path) -> dict[str, object]:
    """Ingest ``path`` in a child process; its JSON summary."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(work / f"out_{path.stem}")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"status": f"crashed (exit {proc.returncode})", "stderr": proc.stderr[-500:]}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="file sizes times this")
    parser.add_argument("--only", nargs="*", help="names of the files to probe")
    args = parser.parse_args()
    builders = {
        "bomb.csv.gz": (make_bomb, 1024**3),
        "twice.csv": (make_twice, 700 * 1000**2),
        "long_row.csv": (make_long_row, 200 * 1000**2),
        "long_header.csv": (make_long_header, 200 * 1000**2),
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="probe_hostile_") as tmp:
        work = Path(tmp)
        for name, (build, size) in builders.items():
            if args.only and name not in args.only:
                continue
            path = work / name
            t0 = time.perf_counter()
            build(path, int(size * args.scale))
            built = time.perf_counter() - t0
            result = probe(path, work)
            rss = result.get("peak_rss_mib")
            ok = (
                isinstance(rss, float)
                and rss < LIMIT_MIB
                and result["status"]
                in (
                    "accepted",
                    "rejected",
                )
            )
            failed |= not ok
            print(
                f"{name:16} {os.path.getsize(path) / 1024**2:9,.1f} MiB on disk "
                f"(built in {built:.0f} s): {'OK  ' if ok else 'FAIL'} {json.dumps(result)}",
                flush=True,
            )
            path.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

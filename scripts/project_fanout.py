"""Project the fan-out's wall time and cost for large order logs from measured parts.

Runs ``custseg run --fanout`` on the first ``--lines`` order lines of the fixture (the
template's state machine on the local interpreter), times every step of the fan-out
function, and scales the per-part figures (seconds per MiB of CSV for the profile and
ingest steps, seconds per customer for scoring) to 100M and 1B order lines with the
template's defaults (64 MiB ranges, 16 buckets, MaxConcurrency 100). Prices are inputs
(``--help``); the local figures come from this machine, not from Lambda, so the result
is an order of magnitude, not a quote (docs/fanout.md, "Cost model").

    python scripts/project_fanout.py [--lines 8000] [--ranges 4]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ORDERS = REPO / "tests" / "fixtures" / "online_retail_invoices.csv"
MIB = 1024**2
ATHENA_READS = 3
"""Reads of the clean columns Athena is billed for, at most: twice by the ``UNLOAD``
(the features, and the holdout check's history per customer) and once by the small
queries before it (the latest event time, the first purchase day)."""
HASH_BYTES_PER_LINE = 28
"""Bytes per kept line of the ranges' hash files that the duplicates query scans (a
row number, two 64-bit hashes and the range, in Parquet)."""


def measure(lines: int, ranges: int, tmp: Path) -> dict[str, Any]:
    """Run the fan-out on ``lines`` order lines in ``ranges`` ranges; seconds per step."""
    sys.path.insert(0, str(REPO))  # the handlers' package ``functions``
    from functions.fanout import app

    from custseg.local.flow import run_local

    text = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    orders = tmp / "orders.csv"
    orders.write_text("".join(text[: lines + 1]), encoding="utf-8")
    seconds: dict[str, list[float]] = defaultdict(list)
    step = app.run_step

    def timed(event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return step(event)
        finally:
            seconds[event["step"]].append(time.perf_counter() - started)

    app.run_step = timed  # type: ignore[assignment]
    try:
        summaries = run_local(
            orders,
            dataset="project",
            out_dir=tmp / "out",
            fanout_ranges=ranges,
            echo=lambda _: None,
        )
    finally:
        app.run_step = step  # type: ignore[assignment]
    summary = summaries[0]
    if summary.status != "committed":
        raise SystemExit(f"the fan-out run did not commit: {summary.errors}")
    clean = sum(
        p.stat().st_size
        for p in (tmp / "out").glob("custseg-local-data-*/clean/project/*/data/*.parquet")
    )
    return {
        "bytes": orders.stat().st_size,
        "lines": lines,
        "customers": int(summary.manifest["rows"]),
        "clean_bytes": clean,
        "seconds": {k: sum(v) for k, v in seconds.items()},
        "calls": {k: len(v) for k, v in seconds.items()},
    }


def measure_ingest(mib: float, tmp: Path) -> float:
    """Seconds per MiB of CSV for both reads of a range (profile, then clean), on a file of
    about ``mib`` MiB: the fixture's lines repeated with new invoice numbers."""
    from custseg.fanout import profile
    from custseg.ingest.pipeline import RangeIngest, ingest_file

    header, *rows = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    copies = max(1, math.ceil(mib * MIB / sum(len(r) for r in rows)))
    path = tmp / "big.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write(header)
        for copy in range(copies):
            f.writelines(f"{copy}{r}" for r in rows)  # invoice 536365 -> <copy>536365
    started = time.perf_counter()
    ranged = RangeIngest(hash_rows=True)
    result = ingest_file(
        path, tmp / "p", source_name="big.csv", dataset="d", run_id="r", ranged=ranged
    )
    assert ranged.profile is not None
    stats, sample = ranged.profile
    doc = profile.merge([(profile.profile_doc(stats), sample)], result.contract)
    clean = RangeIngest(cleaning=profile.cleaning(doc, result.contract))
    ingest_file(path, tmp / "c", source_name="big.csv", dataset="d", run_id="r", ranged=clean)
    return (time.perf_counter() - started) / (path.stat().st_size / MIB)


def measure_split(tmp: Path) -> float:
    """Seconds per MiB of Split's scan for record ends (``plan_ranges``, 8 MiB blocks) on
    the file :func:`measure_ingest` wrote."""
    from custseg.fanout.ranges import plan_ranges

    path = tmp / "big.csv"
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:

        def read(start: int, end: int) -> bytes:
            return os.pread(fd, end - start, start)  # safe from the read-ahead's threads

        started = time.perf_counter()
        plan_ranges(read, size, 4 * MIB)
        return (time.perf_counter() - started) / (size / MIB)
    finally:
        os.close(fd)


def project(m: dict[str, Any], lines: float, args: argparse.Namespace) -> dict[str, float]:
    """Wall time and cost of one execution on ``lines`` order lines."""
    from custseg.fanout.ranges import READ_AHEAD

    s = m["seconds"]
    calls = max(m["calls"].get("profile_range", 1), 1)
    overhead = (s.get("profile_range", 0) + s.get("ingest_range", 0)) / calls  # both reads
    per_mib = m["ingest_seconds_per_mib"]
    per_customer = s.get("score_bucket", 0) / m["customers"]  # overhead included: an upper bound
    size_mib = lines * m["bytes"] / m["lines"] / MIB
    customers = lines * m["customers"] / m["lines"] * args.customer_scale
    ranges = math.ceil(size_mib / args.range_mib)
    # buckets enough that one scores within 600 s (Lambda stops at 900 s), at most the
    # template's 100 (the partitions one Athena UNLOAD writes)
    buckets = min(max(args.buckets, math.ceil(customers * per_customer / 600)), 100)
    t_range = (overhead + per_mib * args.range_mib) / 2  # one of the two reads
    t_bucket = per_customer * customers / buckets
    # Split decides the contract on the upload's head (paid once: the local run's step)
    # and scans the whole object for record ends, READ_AHEAD ranged GETs in flight: the
    # slower of the scan and the reads
    read_mib_s = args.s3_read_mib_s * READ_AHEAD
    t_split = s.get("split", 0) + size_mib * max(m["split_seconds_per_mib"], 1 / read_mib_s)
    t_merge = (
        s.get("merge_profiles", 0)
        / m["calls"].get("merge_profiles", 1)
        * ranges
        / max(m["calls"].get("profile_range", 1), 1)
    )
    fixed = ("find_duplicates", "commit_ingest", "plan_features", "list_buckets", "reduce")
    t_fixed = sum(s.get(k, 0) for k in fixed)
    waves = math.ceil(ranges / args.concurrency)
    wall = (
        t_split
        + 2 * waves * t_range
        + t_merge
        + t_fixed
        + math.ceil(buckets / args.concurrency) * t_bucket
    )
    gb_seconds = args.memory_gb * (
        t_split + 2 * ranges * t_range + t_merge + t_fixed + buckets * t_bucket
    )
    transitions = 12 + 2 * (2 * ranges + buckets)
    scanned_tb = lines * (ATHENA_READS * m["clean_bytes"] / m["lines"] + HASH_BYTES_PER_LINE)
    scanned_tb /= 1024**4
    cost = (
        gb_seconds * args.lambda_gb_second
        + transitions * args.transition
        + max(scanned_tb, 10 / 1024**2) * args.athena_tb
    )
    return {
        "lines": lines,
        "gib": size_mib / 1024,
        "ranges": ranges,
        "buckets": buckets,
        "customers": customers,
        "wall_min": wall / 60,
        "gb_seconds": gb_seconds,
        "transitions": transitions,
        "scanned_gib": scanned_tb * 1024,
        "cost_usd": cost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=8000, help="order lines measured")
    parser.add_argument("--ranges", type=int, default=4, help="ranges of the measured run")
    parser.add_argument("--ingest-mib", type=float, default=16.0, help="CSV MiB timed for ingest")
    parser.add_argument("--range-mib", type=float, default=64.0, help="FanoutRangeMiB")
    parser.add_argument("--buckets", type=int, default=16, help="FanoutBuckets")
    parser.add_argument("--concurrency", type=int, default=100, help="the maps' MaxConcurrency")
    parser.add_argument("--memory-gb", type=float, default=3008 / 1024, help="function memory")
    parser.add_argument(
        "--customer-scale",
        type=float,
        default=0.1,
        help="customers per line at scale relative to the sample's (repeat buyers: < 1)",
    )
    parser.add_argument(
        "--s3-read-mib-s",
        type=float,
        default=85.0,
        help="one GET stream's MiB/s (S3 performance guidelines: 85-90 MB/s a request)",
    )
    parser.add_argument("--lambda-gb-second", type=float, default=0.0000166667, help="USD")
    parser.add_argument("--transition", type=float, default=0.000025, help="USD per transition")
    parser.add_argument("--athena-tb", type=float, default=5.0, help="USD per TB scanned")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        m = measure(args.lines, args.ranges, Path(tmp_name))
        m["ingest_seconds_per_mib"] = measure_ingest(args.ingest_mib, Path(tmp_name))
        m["split_seconds_per_mib"] = measure_split(Path(tmp_name))
    print(
        f"measured: {m['lines']:,} lines, {m['bytes'] / MIB:.2f} MiB, {m['customers']:,} "
        f"customers; seconds per step: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m["seconds"].items()))
    )
    print(f"ingest (profile + clean): {m['ingest_seconds_per_mib']:.2f} s per MiB of CSV")
    print(f"split (scan for record ends): {m['split_seconds_per_mib'] * 1000:.1f} ms per MiB")
    rate = m["seconds"].get("score_bucket", 0) / m["customers"] * 1000
    print(f"scoring: {rate:.2f} ms per customer (overhead included: an upper bound)")
    header = "lines  GiB  ranges  buckets  customers  wall_min  GB-s  transitions  scanned_GiB  USD"
    print(header)
    for lines in (100e6, 1e9):
        p = project(m, lines, args)
        print(
            f"{p['lines']:.0e}  {p['gib']:.0f}  {p['ranges']}  {p['buckets']}  "
            f"{p['customers']:.2e}  "
            f"{p['wall_min']:.1f}  {p['gb_seconds']:.0f}  {p['transitions']}  "
            f"{p['scanned_gib']:.1f}  {p['cost_usd']:.2f}"
        )


if __name__ == "__main__":
    main()

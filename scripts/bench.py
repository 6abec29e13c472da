"""End-to-end benchmark: custseg's full flow on emulated AWS against light contenders.

Two kinds of upload, each against its own light contender:

- **customers** (``--sizes``, default 1M and 5M customers) against the bare pandas scorer;
- **orders** (``--order-sizes``, default 5M order lines) against the DuckDB floor.

For each size this script

1. generates one seeded synthetic CSV in a temporary directory; both contenders read this
   same file. Customers: customer_id text, six numeric columns, three categorical ones,
   telco-style headers that the default customers contract maps, ~1 % blank cells.
   Orders (:func:`make_orders_csv`): InvoiceNo, InvoiceDate, CustomerID, Quantity,
   UnitPrice, Country (UCI Online Retail headers, which the default transactions contract
   maps), about 20 lines per customer over two years, ~3 % cancellations (a leading "C"
   and a negative quantity), ~1 % blank cells;
2. (once per kind, on its first size) trains the champion with custseg's own training on
   a sample (the first ``--train-rows`` lines, ingested and featurised as the training
   function does: an order log's features on DuckDB, with the purchase histories that
   fit its customer-value predictions) and saves the artifact files (``model.joblib`` +
   ``metadata.json``);
3. runs, each in its own fresh process, ``--repeat`` times (default 5 at the first size of
   each kind, where its ratio is measured, 3 at the others), the two contenders taking
   turns to go first (full then light, light then full, ...), so that a slow or fast
   spell of this shared machine falls on both alike:

   (a) **full**: a moto server runs in ANOTHER process (so S3's stored bytes are not in the
       measured processes, as in AWS where S3 is not in the Lambda's memory). Each Lambda
       function runs in its own warm process, as on AWS, where each function has its own
       memory: the ingest process builds the stack from ``infra/template.yaml`` against
       that endpoint and puts the champion into the artifact bucket; the score process
       attaches to the same resources; each imports its handler (Lambda's init phase) and
       waits. The orchestrator uploads the CSV to ``incoming/bench/`` (so the upload's
       buffers are in neither measured process); the ingest process then delivers the S3
       event to the IngestFunction handler, and the score process the clean-manifest
       event to the ScoreFunction handler (validate, clean, features, score, every output,
       metric and report, commit, ``latest.json``, ``current/``). Wall time is the sum of
       the two processes' spans, each from taking its event off the queue to its
       handler's return (results manifest committed, pointer moved, ``current/``
       refreshed); CPU time is their sum; peak RSS is the larger of the two (each
       process's ``VmHWM``), the figure that sizes a function's memory.
   (b) customers, **bare**: ``pd.read_csv`` -> ``dropna`` -> plain pandas renames ->
       ``pipeline.predict`` (the champion's own sklearn Pipeline, loaded with joblib) ->
       ``to_csv`` of customer id + segment.
       orders, **floor** (:func:`child_floor`): DuckDB's ``read_csv`` -> the seven
       transaction features in SQL (:data:`FLOOR_SQL`, as defined in
       ``custseg.features.build``, as of the day after the last event; lines with a blank
       id, date, quantity or price are left out, not imputed) -> ``pipeline.predict`` on
       the columns of the model's ``feature_schema`` -> id,segment CSV with pyarrow.

   For each it records wall time, CPU time (user + sys of the measured processes) and peak
   RSS (``VmHWM`` of each measured process; ``ru_maxrss`` as a fallback);
4. with ``--big``, runs the full flow once at 20M order lines and once at 10M customers
   and prints each function's peak RSS against the targets (<= 2.5 GiB per function;
   the orders' peak <= 1.3x the one at the first order size);
5. measures cold start: ``import functions.score.app`` plus loading the champion from S3
   (``custseg.aws.registry.load_version``) in a fresh process, 3 times (``--repeat``).

It prints a table per size (medians over the repeats) and, as its last line, exactly
``ratio_orders X ratio_customers Y peak_mib Z``: X the full/floor wall at the first order
size, Y the full/bare wall at the first customer size, Z the largest peak RSS of the full
flow (median over the repeats) among all the sizes run, ``--big``'s included.
``--out DIR`` also writes every raw measurement to ``DIR/bench.json``.

    .venv/bin/python scripts/bench.py           # customers 1M (5 runs), 5M (3); orders 5M (5)
    .venv/bin/python scripts/bench.py --big     # ... then 20M order lines, 10M customers
    .venv/bin/python scripts/bench.py --sizes 100000 --order-sizes 500000 --repeat 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASET = "bench"
# The checkout under test first (also lets a copy of the repository benchmark itself).
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "shared")])

# Header in the file -> the contract's canonical name (what the model's features are called).
# The file uses telco / CRM style spellings; ingest maps them through the contract aliases,
# the bare scorer with a plain pandas rename.
HEADERS: dict[str, str] = {
    "CustomerID": "customer_id",
    "Age": "age",
    "Annual Income": "annual_income",
    "Spending Score": "spending_score",
    "Tenure": "tenure",
    "MonthlyCharges": "monthly_charges",
    "TotalCharges": "total_charges",
    "Gender": "gender",
    "Contract": "contract",
    "PaymentMethod": "payment_method",
}
NUMERIC = ["age", "annual_income", "spending_score", "tenure", "monthly_charges", "total_charges"]
CATEGORICAL = ["gender", "contract", "payment_method"]

# The order log: UCI Online Retail style headers, which the default transactions contract maps.
ORDER_HEADERS = ["InvoiceNo", "InvoiceDate", "CustomerID", "Quantity", "UnitPrice", "Country"]
ORDER_START = "2023-01-02"  # the log covers ORDER_DAYS days from this date
ORDER_DAYS = 730
COUNTRIES = [
    "United Kingdom",
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
]


# ------------------------------------------------------------------------------------------
# measurement helpers (used in the child processes too)
# ------------------------------------------------------------------------------------------


def usage() -> tuple[float, int]:
    """(CPU seconds user + sys, peak RSS bytes) of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    peak = r.ru_maxrss * 1024
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # this process's own high-water mark
                peak = int(line.split()[1]) * 1024
    return r.ru_utime + r.ru_stime, peak


def process_cpu(pid: int) -> float:
    """CPU seconds (user + sys) another process used so far (Linux ``/proc``; 0 elsewhere)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_now() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------


def make_csv(path: Path, rows: int, seed: int, piece: int = 1_000_000) -> None:
    """Write the synthetic customers CSV with pyarrow (in 1M-row pieces: bounded memory).

    About 1 % of the cells of four columns are blank. Categories are lower-case canonical
    values, so the bare scorer needs no cleaning to feed the model meaningful input.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            (h, pa.string() if HEADERS[h] in ("customer_id", *CATEGORICAL) else pa.float64())
            for h in HEADERS
        ]
    )
    opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")

    def blanks(values: np.ndarray, share: float = 0.01) -> pa.Array:
        return pa.array(values, mask=rng.random(values.size) < share)

    with pacsv.CSVWriter(str(path), schema, write_options=opts) as writer:
        for start in range(0, rows, piece):
            n = min(piece, rows - start)
            ids = np.char.add("C", np.arange(start + 1, start + n + 1).astype("U12"))
            # Five latent customer groups (young low spenders ... affluent long-tenure
            # customers) so training finds segments as it would on real data.
            group = rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
            age_mu = np.array([24.0, 35.0, 45.0, 58.0, 70.0])[group]
            income_mu = np.array([3.3, 3.8, 4.2, 4.0, 3.6])[group]
            spend_mu = np.array([70.0, 45.0, 80.0, 25.0, 40.0])[group]
            tenure = np.clip(rng.normal(np.array([6, 20, 40, 55, 65])[group], 8.0), 0, 72)
            tenure = np.round(tenure)
            monthly = np.round(
                np.clip(rng.normal(np.array([30, 70, 100, 60, 45])[group], 12.0), 18.0, 120.0), 2
            )
            cols = {
                "CustomerID": pa.array(ids),
                "Age": blanks(np.clip(np.round(rng.normal(age_mu, 5.0)), 18, 95)),
                "Annual Income": pa.array(np.round(rng.lognormal(income_mu, 0.3), 1)),
                "Spending Score": pa.array(np.clip(np.round(rng.normal(spend_mu, 10.0)), 1, 100)),
                "Tenure": pa.array(tenure),
                "MonthlyCharges": pa.array(monthly),
                "TotalCharges": blanks(np.round(monthly * np.maximum(tenure, 1.0), 2)),
                "Gender": blanks(rng.choice(np.array(["male", "female"]), n)),
                "Contract": pa.array(
                    rng.choice(
                        np.array(["month-to-month", "one year", "two year"]), n, p=[0.55, 0.2, 0.25]
                    )
                ),
                "PaymentMethod": blanks(
                    rng.choice(
                        np.array(
                            [
                                "electronic check",
                                "mailed check",
                                "bank transfer (automatic)",
                                "credit card (automatic)",
                            ]
                        ),
                        n,
                    )
                ),
            }
            writer.write_table(pa.table(cols, schema=schema))


def make_orders_csv(path: Path, lines: int, seed: int, piece: int = 1_000_000) -> None:
    """Write the synthetic order-log CSV with pyarrow (in 1M-line pieces: bounded memory).

    About 20 lines per customer (4 on average per invoice), over ``ORDER_DAYS`` days;
    each piece holds its own block of customers with their whole history, sorted by
    invoice date, so the first lines of the file are whole customers (the training
    sample). About 3 % of the lines are cancellations: invoice number with a leading "C"
    and a negative quantity. About 1 % of the cells of Quantity, UnitPrice and Country
    and 0.5 % of CustomerID are blank.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            ("InvoiceNo", pa.string()),
            ("InvoiceDate", pa.timestamp("s")),
            ("CustomerID", pa.int64()),
            ("Quantity", pa.int64()),
            ("UnitPrice", pa.float64()),
            ("Country", pa.string()),
        ]
    )
    opts = pacsv.WriteOptions(include_header=True, quoting_style="none")
    start = np.datetime64(ORDER_START, "s")
    countries = np.array(COUNTRIES)
    first_customer, first_invoice = 10_000, 500_000

    def blanks(values: np.ndarray, share: float = 0.01) -> pa.Array:
        return pa.array(values, mask=rng.random(values.size) < share)

    def pick(per_group: list[float], group: np.ndarray) -> np.ndarray:
        return np.asarray(per_group)[group]

    with pacsv.CSVWriter(str(path), schema, write_options=opts) as writer:
        for begin in range(0, lines, piece):
            n = min(piece, lines - begin)
            m = max(1, n // 20)
            # Five latent customer groups (occasional, regular, loyal, lapsed, big spenders):
            # activity, first and last purchase, price level and return rate differ.
            group = rng.choice(5, m, p=[0.3, 0.25, 0.2, 0.15, 0.1])
            weight = rng.lognormal(pick([0.0, 0.6, 1.2, 0.3, 1.5], group), 0.4)
            counts = rng.multinomial(n, weight / weight.sum())  # lines per customer
            orders = np.maximum(1, np.round(counts / rng.uniform(2.0, 6.0, m))).astype(np.int64)
            first = rng.uniform(
                pick([300, 0, 0, 0, 100], group), pick([700, 400, 200, 300, 500], group)
            )
            last_gap = rng.uniform(0, pick([120, 60, 20, 500, 30], group))
            last = np.maximum(first, ORDER_DAYS - 1 - last_gap)
            cust = np.repeat(np.arange(m), counts)
            j = np.floor(rng.random(n) * orders[cust]).astype(np.int64)  # the line's order
            day = np.floor(first[cust] + (last - first)[cust] * j / np.maximum(orders[cust] - 1, 1))
            minute = (cust * 7919 + j * 104729) % 600 + 8 * 60  # one time per order
            when = start + (day.astype(np.int64) * 86400 + minute * 60).astype("timedelta64[s]")
            invoice = first_invoice + np.concatenate([[0], np.cumsum(orders)[:-1]])[cust] + j
            cancel = rng.random(n) < pick([0.02, 0.03, 0.02, 0.06, 0.04], group)[cust]
            qty = rng.geometric(pick([0.3, 0.2, 0.15, 0.3, 0.1], group)[cust])
            price = np.round(
                rng.lognormal(pick([1.0, 1.3, 1.6, 1.1, 2.5], group)[cust], 0.6) + 0.01, 2
            )
            country = countries[
                rng.choice(len(countries), m, p=[0.6, 0.1, 0.08, 0.06, 0.05, 0.05, 0.03, 0.03])
            ]
            order = np.argsort(when, kind="stable")
            inv = pc.cast(pa.array(invoice[order]), pa.string())
            inv = pc.if_else(
                pa.array(cancel[order]), pc.binary_join_element_wise("C", inv, ""), inv
            )
            cols = {
                "InvoiceNo": inv,
                "InvoiceDate": pa.array(when[order]),
                "CustomerID": blanks(first_customer + cust[order], 0.005),
                "Quantity": blanks(np.where(cancel, -qty, qty)[order]),
                "UnitPrice": blanks(price[order]),
                "Country": blanks(country[cust[order]]),
            }
            writer.write_table(pa.table(cols, schema=schema))
            first_customer += m
            first_invoice += int(orders.sum())


def train_champion(csv: Path, train_rows: int, work: Path) -> Path:
    """Train the champion with custseg's own training on the first ``train_rows`` rows.

    The sample goes through custseg's ingest (validate, clean) and features like any
    upload. Returns the directory holding ``model.joblib`` and ``metadata.json``.
    """
    work.mkdir(parents=True, exist_ok=True)
    code = r"""
import sys
from pathlib import Path
import pyarrow.parquet as pq
from custseg.model.artifact import dump_artifact
from custseg.dataset.clean_data import clean_files
from custseg.features.build import build_features
from custseg.features.engine import collect_features, default_as_of_parts, lambda_limits
from custseg.ingest.pipeline import ingest_file
from custseg.model.training import train_model
src, rows, work = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
sample = work / "train_sample.csv"
with src.open("rb") as fin, sample.open("wb") as fout:
    for i, line in enumerate(fin):
        if i > rows:
            break
        fout.write(line)
res = ingest_file(sample, work / "train_clean", source_name=sample.name, dataset="bench",
                  run_id="train")
assert res.status == "accepted" and res.clean_path is not None, res.status
if res.contract.is_transactions:  # on DuckDB as the training function: with the history
    files = clean_files(res.clean_path)  # that fits the customer-value predictions
    as_of, _ = default_as_of_parts(files, res.contract)
    features = collect_features(files, res.contract, as_of, lambda_limits(3008, tmp=work))
else:
    features = build_features(pq.read_table(str(res.clean_path)).to_pandas(), res.contract)
model = train_model(features, contract=res.contract, model_name="bench", k=None)
model_bytes, meta_bytes = dump_artifact(model)
out = work / "artifact"
out.mkdir(exist_ok=True)
(out / "model.joblib").write_bytes(model_bytes)
(out / "metadata.json").write_bytes(meta_bytes)
print(model.version, model.k)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(csv.resolve()), str(train_rows), str(work.resolve())],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    version, k = proc.stdout.split()[-2:]
    print(f"champion {version}: k={k}, trained on the first {train_rows:,} rows", flush=True)
    return work / "artifact"


# ------------------------------------------------------------------------------------------
# (a) the full flow, in a child process, against a moto server in another child process
# ------------------------------------------------------------------------------------------


def s3_client(endpoint: str) -> Any:
    """An S3 client of the orchestrator, on the moto server (any credentials do)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The emulator keeps every object in memory: by default moto spills an object above 5 MiB
# to a temporary file and reads it back for every GET, copy and ETag (measured: a third of
# the server's time in the full flow). Stored bytes are in neither measured process.
MOTO_SERVER_ENV = {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(4 * 1024**3)}


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, int]]:
    """A ``python -m moto.server`` process on a free port; yields its endpoint URL and
    process id."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **MOTO_SERVER_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("moto server did not start")
        # CUSTSEG_BENCH_SPY=FILE: sample the emulator with py-spy (if installed) into FILE
        # (raw format), to see what its share of the CPU is spent on
        spy = None
        if os.environ.get("CUSTSEG_BENCH_SPY") and shutil.which("py-spy"):
            out = os.environ["CUSTSEG_BENCH_SPY"]
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(proc.pid), "-f", "raw", "-r", "200", "-o", out],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        yield url, proc.pid
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            spy.wait()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def child_function(role: str, endpoint: str, artifact_dir: str) -> None:
    """A measured process of (a): one Lambda function's process, warm (handler imported).

    ``role`` ``ingest`` creates the stack's resources on the moto server and puts the
    champion in place; ``score`` attaches to them. Talks to the orchestrator over stdin /
    stdout: prints ``{"ready": ...}``, waits for ``go``, handles the events waiting for its
    function, prints its measurements.
    """
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "custseg-bench")
    from custseg.aws.signing import KmsSigner
    from custseg.layout import champion_key, model_prefix
    from custseg.local.stack import LocalStack
    from custseg.model.artifact import sign_metadata

    logical = {"ingest": "IngestFunction", "score": "ScoreFunction"}[role]
    t_init = time.perf_counter()
    stack = LocalStack(endpoint_url=endpoint, log_stream=open(os.devnull, "w"))  # noqa: SIM115
    if role == "ingest":
        stack.create()
        s3 = stack.client("s3")
        meta = json.loads(Path(artifact_dir, "metadata.json").read_text())
        prefix = model_prefix(DATASET, meta["version"])
        key = stack.environment()["MODEL_SIGNING_KEY"]
        for name in ("model.joblib", "metadata.json"):
            body = Path(artifact_dir, name).read_bytes()
            if name == "metadata.json":  # signed as the stack's training function signs
                body = sign_metadata(body, KmsSigner(key, stack.client("kms")))
            s3.put_object(Bucket=stack.artifact_bucket, Key=prefix + name, Body=body)
        s3.put_object(
            Bucket=stack.artifact_bucket,
            Key=champion_key(DATASET),
            Body=json.dumps(
                {"model": DATASET, "version": meta["version"], "reason": "bench", "history": []}
            ).encode(),
        )
    else:
        stack.attach()
    # the single-function path at every size (the stack parameter FanoutThresholdMiB set
    # high): --big measures what one function holds, not the state machine
    os.environ["FANOUT_THRESHOLD_MIB"] = str(2**20)
    s3 = stack.client("s3")
    stack.handler(logical)  # Lambda's init phase: import the handler before the first event
    init_s = time.perf_counter() - t_init

    # The scoring core logs its phase timings (score, evaluate, report); keep them.
    import logging

    score_timings: dict[str, float] = {}

    class _Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            for arg in record.args if isinstance(record.args, tuple) else ():
                if isinstance(arg, dict) and "score" in arg:
                    score_timings.update({str(k): float(v) for k, v in arg.items()})

    scoring_log = logging.getLogger("custseg.scoring.score")
    scoring_log.addHandler(_Grab())
    scoring_log.setLevel(logging.INFO)
    scoring_log.propagate = False
    _, rss_ready = usage()
    print(json.dumps({"ready": True, "bucket": stack.data_bucket}), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("orchestrator did not say go")

    calls = _trace_aws_calls()
    lookups = _time_version_lookups()
    cpu0, _ = usage()
    t0 = time.perf_counter()
    events = stack.receive(logical)
    t_handler = time.perf_counter()
    profile_dir = os.environ.get("CUSTSEG_BENCH_PROFILE")  # --profile DIR
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        invocations = profiler.runcall(lambda: [stack.invoke(logical, e) for e in events])
        runs = len(list(Path(profile_dir).glob(f"{role}-*.prof")))
        profiler.dump_stats(str(Path(profile_dir) / f"{role}-{runs + 1}.prof"))  # in run order
    else:
        invocations = [stack.invoke(logical, e) for e in events]
    handler_s = time.perf_counter() - t_handler
    span = time.perf_counter() - t0 - lookups[0]
    cpu1, peak = usage()
    traced = list(calls)
    calls.clear()

    errors = [i.error for i in invocations if i.error]
    if errors or len(invocations) != 1:
        raise SystemExit(f"{logical}: {len(invocations)} invocation(s); {errors}")
    out = invocations[0].result["results"][0]
    measured: dict[str, Any] = {
        "span": span,
        "emulator_event_s": lookups[0],
        "handler_s": handler_s,
        "cpu": cpu1 - cpu0,
        "peak_rss": peak,
        "rss_ready": rss_ready,
        "init_s": init_s,
        "aws_calls": traced,
    }
    if role == "ingest":
        clean_prefix = out["clean_manifest_key"].rsplit("/", 1)[0] + "/"
        quality = json.loads(
            s3.get_object(Bucket=stack.data_bucket, Key=clean_prefix + "quality.json")[
                "Body"
            ].read()
        )
        timings_ms = quality.get("timings_ms", {})
        measured.update(
            rows_read=out["rows_read"],
            rows_kept=out["rows_kept"],
            timings=timings_ms,
            core_s=float(timings_ms.get("total", sum(timings_ms.values()))) / 1000.0,
        )
    else:
        if out["status"] != "committed":
            raise SystemExit(f"score did not commit: {out}")
        rest = stack.drain()  # anything else (nothing should train: a champion exists)
        if any(i.function == "TrainFunction" for i in rest):
            raise SystemExit("the flow trained a model: the champion was not used")
        results_prefix = out["manifest_key"].rsplit("/", 1)[0] + "/"
        metrics = json.loads(
            s3.get_object(Bucket=stack.results_bucket, Key=results_prefix + "metrics.json")[
                "Body"
            ].read()
        )
        score_t = score_timings or metrics.get("timing_seconds", {})
        measured.update(
            rows_scored=out["rows"],
            verdict=out["verdict"],
            timings=score_t,
            core_s=sum(float(v) for v in score_t.values()),
        )
    print(json.dumps(measured), flush=True)


def _time_version_lookups() -> list[float]:
    """Time the local delivery's lookups of an event's object version (one-element list,
    seconds). moto's S3 notifications carry no ``versionId``; the local stack finds it
    with a ``ListObjectVersions`` on the emulator (~0.1 s per 60 MB object, as moto lists
    versions). AWS's events carry it, so that lookup is the emulator's work: timed apart
    and left out of the span."""
    from custseg.local.delivery import EventDelivery

    total = [0.0]
    lookup = EventDelivery._announced_version

    def timed(self: EventDelivery, bucket: str, key: str, etag: str | None) -> str | None:
        t = time.perf_counter()
        try:
            return lookup(self, bucket, key, etag)
        finally:
            total[0] += time.perf_counter() - t

    EventDelivery._announced_version = timed  # type: ignore[method-assign]
    return total


def _trace_aws_calls() -> list[tuple[str, str, float, float]]:
    """Time every AWS API call of this process (operation, key or table, seconds, start in
    seconds from the trace's start: the timeline kept in ``--out``'s ``bench.json``)."""
    import botocore.client

    calls: list[tuple[str, str, float, float]] = []
    t_trace = time.perf_counter()
    original = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009

    def timed(self: Any, operation: str, params: dict[str, Any]) -> Any:
        t = time.perf_counter()
        try:
            return original(self, operation, params)
        finally:
            where = str(params.get("Key") or params.get("TableName") or "")
            calls.append(
                (operation, where.rsplit("/", 1)[-1], time.perf_counter() - t, t - t_trace)
            )

    setattr(botocore.client.BaseClient, "_make_api_call", timed)  # noqa: B010
    return calls


def run_full(csv: Path, artifact_dir: Path) -> dict[str, Any]:
    """(a): the ingest and score functions, each in its own warm process (as on Lambda,
    where each function has its own memory), against one moto server process."""
    with moto_server() as (endpoint, server_pid):
        env = {**os.environ, "PYTHONPATH": PYTHONPATH}
        procs: dict[str, subprocess.Popen[str]] = {}
        ready: dict[str, Any] = {}
        for role in ("ingest", "score"):  # ingest first: it creates the resources
            procs[role] = subprocess.Popen(
                [sys.executable, __file__, "_function", role, endpoint, str(artifact_dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
            )
            stdout = procs[role].stdout
            assert stdout is not None
            ready[role] = json.loads(stdout.readline())
        from boto3.s3.transfer import TransferConfig

        s3 = s3_client(endpoint)
        s3.upload_file(
            str(csv),
            ready["ingest"]["bucket"],
            f"incoming/{DATASET}/{csv.name}",
            # one PUT (one ObjectCreated event, as AWS sends for a completed upload; moto's
            # server announces a multipart upload twice)
            Config=TransferConfig(multipart_threshold=5 * 2**30),
        )
        measured: dict[str, dict[str, Any]] = {}
        server_cpu = process_cpu(server_pid)
        for role in ("ingest", "score"):  # the score function's event exists once ingest is done
            proc = procs[role]
            out, _ = proc.communicate("go\n", timeout=7200)
            if proc.returncode != 0:
                raise RuntimeError(f"full flow: the {role} process failed ({proc.returncode})")
            measured[role] = json.loads(out.strip().splitlines()[-1])
        server_cpu = process_cpu(server_pid) - server_cpu
    ing, sc = measured["ingest"], measured["score"]
    return {
        "rows_read": ing["rows_read"],
        "rows_kept": ing["rows_kept"],
        "rows_scored": sc["rows_scored"],
        "verdict": sc["verdict"],
        "wall": ing["span"] + sc["span"],
        "cpu": ing["cpu"] + sc["cpu"],
        "emulator_cpu": server_cpu,
        "peak_rss": max(ing["peak_rss"], sc["peak_rss"]),
        "peak_rss_ingest": ing["peak_rss"],
        "peak_rss_score": sc["peak_rss"],
        "rss_ready": max(ing["rss_ready"], sc["rss_ready"]),
        "init_s": max(ing["init_s"], sc["init_s"]),
        "ingest_handler_s": ing["handler_s"],
        "score_handler_s": sc["handler_s"],
        "ingest_core_s": ing["core_s"],
        "ingest_timings_ms": ing["timings"],
        "score_core_s": sc["core_s"],
        "score_timings_s": sc["timings"],
        "s3_and_commit_s": (ing["handler_s"] - ing["core_s"]) + (sc["handler_s"] - sc["core_s"]),
        "events_s": (ing["span"] - ing["handler_s"]) + (sc["span"] - sc["handler_s"]),
        "emulator_event_s": ing["emulator_event_s"] + sc["emulator_event_s"],
        "aws_calls": ing["aws_calls"] + sc["aws_calls"],
        "aws_timeline": {"ingest": ing["aws_calls"], "score": sc["aws_calls"]},
    }


# ------------------------------------------------------------------------------------------
# (b) the light contenders: the bare pandas scorer (customers), the DuckDB floor (orders)
# ------------------------------------------------------------------------------------------


def child_bare(csv: str, model_file: str, out: str) -> None:
    import joblib
    import pandas as pd

    pipeline = joblib.load(model_file)
    cpu0, _ = usage()
    t0 = time.perf_counter()
    df = pd.read_csv(csv, dtype={"CustomerID": str})
    rows_read = len(df)
    df = df.dropna()
    df = df.rename(columns=HEADERS)
    segment = pipeline.predict(df[[*NUMERIC, *CATEGORICAL]])
    pd.DataFrame({"customer_id": df["customer_id"], "segment": segment}).to_csv(out, index=False)
    wall = time.perf_counter() - t0
    cpu1, peak = usage()
    print(
        json.dumps(
            {
                "rows_read": rows_read,
                "rows_scored": len(df),
                "wall": wall,
                "cpu": cpu1 - cpu0,
                "peak_rss": peak,
            }
        )
    )


# The floor's SQL: the transaction features of custseg.features.build's docstring, as of the
# day after the last event, from the order log as DuckDB reads it. Rows custseg's ingest
# would reject or exclude (a blank customer id, date, quantity or price; a price <= 0; a
# quantity <= 0 that is not a return) are left out; blank cells are not imputed.
FLOOR_SQL = """
WITH lines AS (
    SELECT
        CAST(CustomerID AS VARCHAR) AS customer_id,
        CAST(InvoiceDate AS DATE) AS event_day,
        InvoiceNo AS order_key,
        COALESCE(starts_with(upper(InvoiceNo), 'C'), FALSE) OR Quantity < 0 AS is_return,
        abs(Quantity * UnitPrice) AS value
    FROM read_csv($csv, header = true, columns = {
        'InvoiceNo': 'VARCHAR', 'InvoiceDate': 'TIMESTAMP', 'CustomerID': 'VARCHAR',
        'Quantity': 'DOUBLE', 'UnitPrice': 'DOUBLE', 'Country': 'VARCHAR'})
    WHERE CustomerID IS NOT NULL AND InvoiceDate IS NOT NULL AND Quantity IS NOT NULL
      AND UnitPrice > 0
      AND (Quantity > 0 OR Quantity < 0 OR COALESCE(starts_with(upper(InvoiceNo), 'C'), FALSE))
),
as_of AS (SELECT MAX(event_day) + 1 AS day FROM lines),
per_customer AS (
    SELECT
        customer_id,
        SUM(CASE WHEN is_return THEN 0.0 ELSE value END) AS gross,
        SUM(CASE WHEN is_return THEN value ELSE 0.0 END) AS returned,
        CAST(COUNT(DISTINCT CASE WHEN is_return THEN NULL ELSE order_key END) AS DOUBLE)
            AS frequency,
        COALESCE(MAX(CASE WHEN is_return THEN NULL ELSE event_day END), MAX(event_day))
            AS last_buy,
        COALESCE(MIN(CASE WHEN is_return THEN NULL ELSE event_day END), MIN(event_day))
            AS first_buy
    FROM lines
    GROUP BY customer_id
),
spans AS (
    SELECT
        p.*,
        CAST(date_diff('day', p.last_buy, a.day) AS DOUBLE) AS recency_days,
        CAST(date_diff('day', p.first_buy, a.day) AS DOUBLE) AS tenure_days
    FROM per_customer AS p, as_of AS a
)
SELECT
    customer_id,
    recency_days,
    frequency,
    gross - returned AS monetary,
    CASE WHEN frequency > 0 THEN gross / frequency ELSE 0.0 END AS avg_order_value,
    tenure_days,
    CASE WHEN frequency >= 2 THEN (tenure_days - recency_days) / (frequency - 1)
         ELSE tenure_days END AS mean_interval_days,
    CASE WHEN gross > 0 THEN LEAST(GREATEST(returned / gross, 0.0), 1.0)
         WHEN returned > 0 THEN 1.0 ELSE 0.0 END AS return_share
FROM spans
"""


def child_floor(csv: str, model_file: str, out: str) -> None:
    """The orders' floor: DuckDB's ``read_csv`` + SQL features -> the champion's
    ``pipeline.predict`` -> id,segment CSV, in one process."""
    import duckdb
    import joblib
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pipeline = joblib.load(model_file)
    schema = json.loads(Path(model_file).with_name("metadata.json").read_text())["feature_schema"]
    columns = [*schema["numeric"], *schema["categorical"]]
    con = duckdb.connect()
    cpu0, _ = usage()
    t0 = time.perf_counter()
    features = con.execute(FLOOR_SQL, {"csv": csv}).df()
    missing = sorted(set(columns) - set(features.columns))
    if missing:
        raise SystemExit(f"floor: the model wants features the floor does not make: {missing}")
    segment = pipeline.predict(features[columns])
    table = pa.table({"customer_id": features["customer_id"], "segment": segment})
    pacsv.write_csv(table, out)
    wall = time.perf_counter() - t0
    cpu1, peak = usage()
    print(
        json.dumps(
            {
                "rows_scored": len(features),
                "wall": wall,
                "cpu": cpu1 - cpu0,
                "peak_rss": peak,
            }
        )
    )


def run_light(child: str, csv: Path, artifact_dir: Path, work: Path) -> dict[str, Any]:
    """The bare scorer (``child`` ``_bare``) or the orders' floor (``_floor``) in a fresh
    process."""
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            child,
            str(csv),
            str(artifact_dir / "model.joblib"),
            str(work / f"{child.strip('_')}_out.csv"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------
# cold start: import the score handler + load the champion from S3, in a fresh process
# ------------------------------------------------------------------------------------------


def child_cold(endpoint: str, artifact_dir: str) -> None:
    import boto3

    from custseg.aws.signing import KmsSigner
    from custseg.model.artifact import sign_metadata

    s3 = s3_client(endpoint)
    meta = json.loads(Path(artifact_dir, "metadata.json").read_text())
    bucket = "bench-cold"
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket=bucket)
    prefix = f"models/{DATASET}/{meta['version']}/"
    kms = boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    for name in ("model.joblib", "metadata.json"):
        body = Path(artifact_dir, name).read_bytes()
        if name == "metadata.json":
            body = sign_metadata(body, KmsSigner(key, kms))
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
    # The measurement: a fresh interpreter doing what a cold Lambda does before its first event.
    code = (
        "import time, json, sys; t0 = time.perf_counter()\n"
        "import functions.score.app\n"
        "t1 = time.perf_counter()\n"
        "from custseg.aws import runtime, registry\n"
        f"m = registry.load_version(runtime.store(), {bucket!r}, {DATASET!r}, "
        f"{meta['version']!r}, runtime.verifier())\n"
        "t2 = time.perf_counter()\n"
        "heavy = sorted(x for x in ('matplotlib', 'scipy', 'sklearn', 'pandas', 'pyarrow') "
        "if x in sys.modules)\n"
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, 'total_s': t2 - t0, "
        "'loaded': heavy}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DATA_BUCKET": "d",
        "ARTIFACT_BUCKET": bucket,
        "RESULTS_BUCKET": "r",
        "EVENT_BUS_NAME": "b",
        "IDEMPOTENCY_TABLE": "t",
        "MODEL_SIGNING_KEY": key,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }

    def run_python(source: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c", source],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
        )
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))

    t0 = time.perf_counter()
    result = run_python(code)
    result["process_s"] = time.perf_counter() - t0  # interpreter start included
    # The ingest function's cold start: its imports only (it loads no model).
    ingest_code = (
        "import time, json, sys; t0 = time.perf_counter()\n"
        "import functions.ingest.app\n"
        "heavy = sorted(x for x in ('matplotlib', 'scipy', 'sklearn', 'pandas', 'pyarrow') "
        "if x in sys.modules)\n"
        "print(json.dumps({'import_s': time.perf_counter() - t0, 'loaded': heavy}))\n"
    )
    ingest = run_python(ingest_code)
    result["ingest_import_s"] = ingest["import_s"]
    result["ingest_loaded"] = ingest["loaded"]
    print(json.dumps(result))


def run_cold(artifact_dir: Path, repeat: int) -> list[dict[str, Any]]:
    out = []
    with moto_server() as (endpoint, _server_pid):
        for _ in range(repeat):
            proc = subprocess.run(
                [sys.executable, __file__, "_cold", endpoint, str(artifact_dir)],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": PYTHONPATH},
            )
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# ------------------------------------------------------------------------------------------
# orchestration and report
# ------------------------------------------------------------------------------------------


def med(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in runs))


def mib(n: float) -> float:
    return n / 2**20


@dataclass(frozen=True)
class Workload:
    """One benchmarked kind of upload and the light contender the full flow is compared to."""

    kind: str  # "customers" or "orders"; also the directory of its champion
    unit: str  # what a size counts
    light: str  # the light contender's name
    child: str  # its child-process entry point
    make: Callable[[Path, int, int], None]  # (path, size, seed): writes the CSV


CUSTOMERS = Workload("customers", "customers", "bare", "_bare", make_csv)
ORDERS = Workload("orders", "order lines", "floor", "_floor", make_orders_csv)
BIG = ((ORDERS, 20_000_000), (CUSTOMERS, 10_000_000))  # --big: one full run each
BIG_TARGET_MIB = 2.5 * 1024  # the peak target at the --big sizes, per function
GROWTH_TARGET = 1.3  # and the orders' peak growth from the ratio's size to the big one


def print_table(
    w: Workload, size: int, full: list[dict[str, Any]], light: list[dict[str, Any]]
) -> None:
    print(f"\n== {size:,} {w.unit} (median of {len(full)} run(s)) ==")
    print(f"{'':8} {'wall s':>8} {'cpu s':>8} {'rows/s':>11} {'peak RSS MiB':>13}")
    for name, runs in (("full", full), (w.light, light)):
        wall = med(runs, "wall")
        print(
            f"{name:8} {wall:8.2f} {med(runs, 'cpu'):8.2f} {size / wall:11,.0f} "
            f"{mib(med(runs, 'peak_rss')):13.0f}"
        )
    print(f"ratio full/{w.light} wall: {med(full, 'wall') / med(light, 'wall'):.2f}")
    print_breakdown(full)
    print(
        f"  CPU (s): functions {med(full, 'cpu'):.2f} + S3 emulator "
        f"{med(full, 'emulator_cpu'):.2f} = {med(full, 'cpu') + med(full, 'emulator_cpu'):.2f} "
        f"for {med(full, 'wall'):.2f} s of wall; {w.light} {med(light, 'cpu'):.2f}"
    )
    print(
        f"  full: RSS before the first event {mib(med(full, 'rss_ready')):.0f} MiB; "
        f"rows read {full[0]['rows_read']:,}, kept {full[0]['rows_kept']:,}, "
        f"scored {full[0]['rows_scored']:,}; {w.light} scored {light[0]['rows_scored']:,}"
    )


def print_breakdown(full: list[dict[str, Any]]) -> None:
    """Where the full flow's time went (medians; phases and AWS calls of run 1)."""
    print(
        "full breakdown (s): "
        f"ingest handler {med(full, 'ingest_handler_s'):.2f} "
        f"(core {med(full, 'ingest_core_s'):.2f}), "
        f"score handler {med(full, 'score_handler_s'):.2f} "
        f"(core {med(full, 'score_core_s'):.2f}), "
        f"S3 I/O + commit {med(full, 's3_and_commit_s'):.2f}, "
        f"event delivery {med(full, 'events_s'):.2f} (not counted: the emulator's version "
        f"lookups {med(full, 'emulator_event_s'):.2f})"
    )
    ing = full[0]["ingest_timings_ms"]
    sc = full[0]["score_timings_s"]
    print(
        "  ingest phases (s, run 1): "
        + ", ".join(f"{k} {float(v) / 1000:.2f}" for k, v in ing.items())
    )
    print("  score phases (s, run 1): " + ", ".join(f"{k} {float(v):.2f}" for k, v in sc.items()))
    by_op: dict[str, list[float]] = {}
    for op, _where, secs, *_start in full[0].get("aws_calls", []):
        by_op.setdefault(op, []).append(secs)
    print(
        "  AWS calls (run 1; count, s): "
        + ", ".join(
            f"{op} {len(v)} {sum(v):.2f}"
            for op, v in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))
        )
    )


FIRST_SIZE_REPEAT = 5  # runs per contender at the first size of each kind (the ratio's)
REPEAT = 3  # runs per contender at the other sizes, and cold starts


def run_contender_full(i: int, csv: Path, artifact: Path, runs: list[dict[str, Any]]) -> None:
    runs.append(run_full(csv, artifact))
    f = runs[-1]
    print(
        f"  run {i + 1} full: wall {f['wall']:.2f}s cpu {f['cpu']:.2f}s "
        f"peak {mib(f['peak_rss']):.0f} MiB (ingest process "
        f"{mib(f['peak_rss_ingest']):.0f}, score process "
        f"{mib(f['peak_rss_score']):.0f})",
        flush=True,
    )


def run_contender_light(
    w: Workload, i: int, csv: Path, artifact: Path, work: Path, runs: list[dict[str, Any]]
) -> None:
    runs.append(run_light(w.child, csv, artifact, work))
    b = runs[-1]
    print(
        f"  run {i + 1} {w.light}: wall {b['wall']:.2f}s cpu {b['cpu']:.2f}s "
        f"peak {mib(b['peak_rss']):.0f} MiB",
        flush=True,
    )


@dataclass
class Bench:
    """The run's settings, scratch directory and champions (one per workload, trained on
    the first CSV generated for it)."""

    args: argparse.Namespace
    tmp: Path
    champions: dict[str, Path] = field(default_factory=dict)

    def data(self, w: Workload, size: int) -> tuple[Path, Path]:
        """Generate the CSV of ``size`` (and the workload's champion, once); returns the
        CSV and the champion's directory."""
        csv = self.tmp / f"{w.kind}_{size}.csv"
        t = time.perf_counter()
        w.make(csv, size, self.args.seed)
        print(
            f"\ndata: {size:,} {w.unit}, {csv.stat().st_size / 1e6:,.0f} MB "
            f"(generated in {time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        if w.kind not in self.champions:
            self.champions[w.kind] = train_champion(csv, self.args.train_rows, self.tmp / w.kind)
        return csv, self.champions[w.kind]

    def compare(self, w: Workload, size: int, repeat: int) -> dict[str, list[dict[str, Any]]]:
        """``repeat`` runs of each contender at ``size``, taking turns to go first (a spell
        of this shared machine, whose speed drifts by tens of percent over seconds, hits
        both alike); prints the size's table."""
        csv, artifact = self.data(w, size)
        full: list[dict[str, Any]] = []
        light: list[dict[str, Any]] = []
        for i in range(repeat):
            for contender in ("full", "light") if i % 2 == 0 else ("light", "full"):
                if self.args.only is not None and contender != self.args.only:
                    continue
                if contender == "full":
                    run_contender_full(i, csv, artifact, full)
                else:
                    run_contender_light(w, i, csv, artifact, self.tmp, light)
        if full and light:
            print_table(w, size, full, light)
        csv.unlink()
        return {"full": full, w.light: light}

    def big(self, w: Workload, size: int) -> dict[str, Any]:
        """One run of the full flow at ``size`` (for its peak RSS)."""
        csv, artifact = self.data(w, size)
        runs: list[dict[str, Any]] = []
        run_contender_full(0, csv, artifact, runs)
        csv.unlink()
        return runs[0]


def print_big(big: dict[str, dict[str, Any]], orders: dict[str, Any]) -> None:
    """The --big runs against the issue's targets (each function's peak <= 2.5 GiB; each
    function's peak on order logs grows <= 1.3x from the ratio's size)."""
    print("\n== --big: one full run each (peak RSS of each function's process) ==")
    for w, size in BIG:
        run = big[f"{w.kind}_{size}"]
        peaks = {role: mib(run[f"peak_rss_{role}"]) for role in ("ingest", "score")}
        verdict = "ok" if max(peaks.values()) <= BIG_TARGET_MIB else "OVER"
        line = (
            f"{size:,} {w.unit}: wall {run['wall']:.2f}s, peak ingest {peaks['ingest']:,.0f} "
            f"MiB, score {peaks['score']:,.0f} MiB (target <= {BIG_TARGET_MIB:,.0f}: {verdict})"
        )
        if w is ORDERS and orders:
            base_size = next(iter(orders))
            growth = {
                role: run[f"peak_rss_{role}"] / med(orders[base_size]["full"], f"peak_rss_{role}")
                for role in ("ingest", "score")
            }
            line += (
                f"; growth from {int(base_size):,}: ingest {growth['ingest']:.2f}x, score "
                f"{growth['score']:.2f}x (target <= {GROWTH_TARGET} each: "
                f"{'ok' if max(growth.values()) <= GROWTH_TARGET else 'OVER'})"
            )
        print(line, flush=True)


def last_line(report: dict[str, Any]) -> str:
    """``ratio_orders X ratio_customers Y peak_mib Z`` (see the module docstring)."""

    def ratio(sizes: dict[str, dict[str, list[dict[str, Any]]]], light: str) -> float:
        if not sizes:
            return float("nan")
        first = next(iter(sizes.values()))
        if not first["full"] or not first[light]:
            return float("nan")
        return med(first["full"], "wall") / med(first[light], "wall")

    peaks = [
        med(runs["full"], "peak_rss")
        for sizes in (report["sizes"], report["orders"])
        for runs in sizes.values()
        if runs["full"]
    ] + [run["peak_rss"] for run in report.get("big", {}).values()]
    peak = mib(max(peaks)) if peaks else float("nan")
    return (
        f"ratio_orders {ratio(report['orders'], ORDERS.light):.2f} "
        f"ratio_customers {ratio(report['sizes'], CUSTOMERS.light):.2f} peak_mib {peak:.0f}"
    )


def print_cold(cold: list[dict[str, Any]]) -> None:
    print(
        f"\ncold start (median of {len(cold)}): import functions.score.app "
        f"{med(cold, 'import_s'):.2f}s + load champion {med(cold, 'load_s'):.2f}s = "
        f"{med(cold, 'total_s'):.2f}s ({med(cold, 'process_s'):.2f}s with interpreter "
        f"start); modules loaded: {', '.join(cold[0]['loaded'])}"
    )
    print(
        f"cold start ingest function: import functions.ingest.app "
        f"{med(cold, 'ingest_import_s'):.2f}s; modules loaded: "
        f"{', '.join(cold[0]['ingest_loaded'])}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000000,5000000", help="comma-separated customer counts")
    ap.add_argument(
        "--order-sizes", default="5000000", help="comma-separated order-log line counts"
    )
    ap.add_argument(
        "--big",
        action="store_true",
        help="also run the full flow once at 20M order lines and once at 10M customers "
        "(peak RSS of each function against the targets)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per contender and size (default: 5 at the first size of each kind, "
        "3 at the others)",
    )
    ap.add_argument("--train-rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="write raw results to DIR/bench.json")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement")
    ap.add_argument(
        "--only",
        choices=("full", "light"),
        help="run one contender only (light: the bare scorer, the orders' floor)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write cProfile stats of each handler run to DIR (<role>-<n>.prof)",
    )
    return ap.parse_args(argv)


def sizes_of(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    children: dict[str, Callable[..., None]] = {
        "_function": child_function,
        "_bare": child_bare,
        "_floor": child_floor,
        "_cold": child_cold,
    }
    if argv and argv[0] in children:
        children[argv[0]](*argv[1:])
        return 0
    args = parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ["CUSTSEG_BENCH_PROFILE"] = str(args.profile.resolve())

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; {dt.datetime.now().isoformat(timespec='seconds')}",
        flush=True,
    )
    report: dict[str, Any] = {
        "sizes": {},  # customers
        "orders": {},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="custseg-bench-") as tmp_name:
        bench = Bench(args, Path(tmp_name))
        for w, key, sizes in (
            (CUSTOMERS, "sizes", sizes_of(args.sizes)),
            (ORDERS, "orders", sizes_of(args.order_sizes)),
        ):
            for n, size in enumerate(sizes):
                repeat = args.repeat or (FIRST_SIZE_REPEAT if n == 0 else REPEAT)
                report[key][str(size)] = bench.compare(w, size, repeat)
        if args.big:
            report["big"] = {f"{w.kind}_{size}": bench.big(w, size) for w, size in BIG}
            print_big(report["big"], report["orders"])
        artifact = bench.champions.get("customers") or bench.champions.get("orders")
        if not args.no_cold and artifact is not None:
            report["cold_start"] = run_cold(artifact, args.repeat or REPEAT)
            print_cold(report["cold_start"])
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(last_line(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

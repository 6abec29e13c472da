"""The ``custseg`` command.

    custseg demo [--out DIR]                       sample data through the whole flow
    custseg run INPUT [--dataset NAME] [--contract FILE] [--as-of DATE] [--out DIR]
    custseg validate INPUT [--contract FILE] [--dataset NAME] [--json]
    custseg infer INPUT [--contract FILE] [--json]   the contract inferred for a file
    custseg train INPUT [--dataset NAME] [--contract FILE] [--k K] [--out DIR]
    custseg serve [--port P]                       a local S3 endpoint wired like AWS
    custseg models list|promote|rollback --model M --bucket B [--version V] [--signing-key K]

``run`` and ``demo`` use an embedded emulated AWS (moto) built from infra/template.yaml.

Every failure is one line on stderr (``custseg: ...``) and a non-zero exit: 2 for a
problem with the command's input (a missing file, a bad contract, a bad date), 1 for a
rejected file or a failed run, 130 for Ctrl-C. ``CUSTSEG_DEBUG=1`` adds the traceback of
an unexpected error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from custseg.layout import LayoutError, dataset_name

INTERRUPTED = 130  # the shells' code for a process stopped by SIGINT (128 + 2)


class UsageError(Exception):
    """A problem with what the command was given: printed as one line, exit code 2."""


def _input_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def _contract(path: str | None) -> Any:
    """The contract in the file at ``path`` (None when not given), or a one-line
    :class:`UsageError` naming the file and what is wrong with it."""
    if path is None:
        return None
    from custseg.ingest.contracts import load_contract

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"contract {file}: no such file")
    try:
        return load_contract(file)
    except UnicodeDecodeError:
        raise UsageError(f"contract {file}: not a text file (UTF-8 YAML expected)") from None
    except ValueError as exc:
        raise UsageError(f"contract {file}: {contract_problem(exc)}") from None


def contract_problem(exc: ValueError) -> str:
    """What :func:`custseg.ingest.contracts.load_contract`'s error says, on one line:
    ``not YAML: line N, column M: ...`` or ``invalid: line N: field: problem; ...``."""
    from custseg.ingest.contracts import ContractError

    if isinstance(exc, ContractError):
        problems = exc.problems
        if len(problems) == 1 and problems[0].startswith("not YAML"):
            return problems[0]
        return "invalid: " + "; ".join(problems)
    return _one_line(str(exc))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _dataset_from(path: Path, given: str | None) -> str:
    from custseg.local.flow import _stem

    if given is not None:
        try:
            return dataset_name(given)
        except LayoutError:
            raise UsageError(
                f"--dataset {given!r}: not a dataset name (use letters, digits, _ and -)"
            ) from None
    try:
        return dataset_name(_stem(path))
    except LayoutError:
        raise UsageError(
            f"{path}: its name gives no dataset name; name one with --dataset NAME"
        ) from None


def _as_of(raw: str | None) -> dt.date | None:
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"--as-of {raw!r}: not a date; use YYYY-MM-DD") from None


def cmd_validate(args: argparse.Namespace) -> int:
    from custseg.ingest.pipeline import ingest_file

    path = _input_file(args.input)
    dataset, contract = _dataset_from(path, args.dataset), _contract(args.contract)
    with tempfile.TemporaryDirectory() as tmp:
        result = ingest_file(
            path,
            Path(tmp),
            source_name=str(path),
            dataset=dataset,
            run_id="validate",
            contract=contract,
        )
        if args.json:
            print(json.dumps(result.report.to_dict(), indent=2, default=str))
        else:
            print(result.report.to_text())
    return 0 if result.status == "accepted" else 1


def cmd_infer(args: argparse.Namespace) -> int:
    from custseg.ingest.contracts.inference import contract_yaml, infer_file
    from custseg.ingest.reading import ReadError

    path = _input_file(args.input)
    try:
        inference = infer_file(path, _contract(args.contract))
    except ReadError as exc:
        raise UsageError(f"{path}: {exc.message}") from None
    if args.json:
        print(json.dumps(inference.to_dict(), indent=2))
    else:
        print(contract_yaml(inference.contract, inference), end="")
    return 0


def _train_features(clean_path: Path, contract: Any, tmp: Path) -> Any:
    """The features ``train`` fits on: an order log's on DuckDB (as the training job
    computes them, the repeat-purchase history included), a customer table's from its rows."""
    from custseg.dataset.clean_data import clean_files, read_clean
    from custseg.features.build import build_features
    from custseg.features.engine import collect_features, default_as_of_parts, lambda_limits

    if contract.is_transactions:
        files = clean_files(clean_path)
        as_of, _ = default_as_of_parts(files, contract)
        return collect_features(files, contract, as_of, lambda_limits(1024, share=1.0, tmp=tmp))
    return build_features(read_clean(clean_path).to_pandas(), contract)


def cmd_train(args: argparse.Namespace) -> int:
    from custseg.ingest.pipeline import ingest_file
    from custseg.model.artifact import dump_artifact
    from custseg.model.training import train_model

    path = _input_file(args.input)
    dataset, contract = _dataset_from(path, args.dataset), _contract(args.contract)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        result = ingest_file(
            path,
            Path(tmp),
            source_name=str(path),
            dataset=dataset,
            run_id="train",
            contract=contract,
        )
        if result.status != "accepted" or result.clean_path is None:
            print(result.report.to_text())
            return 1
        features = _train_features(result.clean_path, result.contract, Path(tmp))
    model = train_model(features, contract=result.contract, k=args.k, model_name=dataset)
    model_bytes, metadata_bytes = dump_artifact(model)
    target = out / "models" / dataset / model.version
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.joblib").write_bytes(model_bytes)
    (target / "metadata.json").write_bytes(metadata_bytes)
    meta = model.metadata
    why = meta.get("k_choice") or meta.get("k_rule", "")
    print(f"model {dataset} {model.version}: k={model.k} ({why})")
    for row in meta.get("k_evidence", []):
        mark = "*" if row.get("chosen") else " "
        print(
            f"  {mark} k={row['k']:>2}  silhouette={row['silhouette']:.3f}  "
            f"davies_bouldin={row['davies_bouldin']:.3f}  min_share={row['min_share']:.1%}"
        )
    for seg in meta.get("segments", []):
        print(f"  segment {seg['id']}: {seg['name']} ({seg['share']:.0%}) - {seg['action']}")
    print(f"gates: {'passed' if meta.get('gates', {}).get('passed') else meta.get('gates')}")
    clv = (meta.get("predictions") or {}).get("clv")
    if clv:
        fitted = clv.get("fitted_on") or {}
        print(
            f"predictions: {clv['unavailable']}"
            if "unavailable" in clv
            else f"predictions: BG/NBD + Gamma-Gamma fitted on {fitted.get('customers', 0):,} "
            f"customers, {fitted.get('repeat_buyers', 0):,} repeat buyers (docs/predictions.md)"
        )
    print(f"written to {target}/")
    return 0


def _pct(x: Any) -> str:
    return f"{float(x):.0%}" if isinstance(x, int | float) else "n/a"


def print_summary(summary: Any) -> None:
    q = summary.quality
    print()
    print(f"== {summary.dataset}: {summary.status} in {summary.seconds:.1f}s ==")
    if q:
        contract = q.get("contract") or {}
        if contract.get("kind"):
            print(f"contract: {contract['kind']} ({contract.get('reason') or 'given'})")
        print(
            f"rows read {q.get('rows_read', 0):,} / kept {q.get('rows_kept', 0):,} / "
            f"rejected {q.get('rows_rejected', 0):,}"
        )
        reasons = q.get("rejected_by_reason") or {}
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  rejected: {n:,} x {reason}")
        for err in q.get("errors", [])[:5]:
            print(f"  error: {err.get('message', err)}")
    if summary.status == "committed":
        m = summary.metrics
        segments = summary.profiles.get("segments", [])
        print(
            f"{len(segments)} segments (model {summary.manifest.get('model', {}).get('version')}):"
        )
        for seg in segments:
            print(
                f"  {seg.get('name', seg.get('id'))!s:<34} {seg.get('size', 0):>9,} customers  "
                f"{_pct(seg.get('share'))} of base  {_pct(seg.get('value_share'))} of value"
            )
            if seg.get("action"):
                rank = f" (target rank {seg['rank']})" if seg.get("rank") else ""
                print(f"    action: {seg['action']}{rank}")
        print(f"verdict: {m.get('verdict')}")
        for reason in (m.get("reasons") or [])[:5]:
            print(f"  - {reason}")
        print(f"report:      {summary.report_path}")
        print(f"assignments: {summary.assignments_path}")
        for doc in summary.campaigns:
            _print_campaign(doc)
        for err in summary.errors:
            print(f"  failed: {err}")
    else:
        print_failure(summary)


def print_failure(summary: Any) -> None:
    """A run without results: every reason the functions gave, and the report's path."""
    from custseg.local.flow import failure_reasons

    reasons = summary.errors if summary.status == "rejected" else failure_reasons(summary)
    for reason in reasons:
        print(f"  failed: {reason}")
    if summary.report_path:
        print(f"error report: {summary.report_path}")


def _print_campaign(doc: dict[str, Any]) -> None:
    """A measured campaign's uplift per segment (see docs/campaigns.md)."""
    causal = "treatment vs control" if doc.get("causal") else "not causal: no control group"
    print(f"campaign {doc.get('campaign')} ({causal}), conversion uplift per segment:")
    for seg in doc.get("segments", []):
        up = seg.get("conversion_uplift") or seg.get("conversion_vs_baseline") or {}
        if up.get("estimate") is None:
            print(f"  {seg.get('segment_name')!s:<34} {seg.get('verdict')}")
            continue
        print(
            f"  {seg.get('segment_name')!s:<34} {up['estimate'] * 100:+5.1f} pp "
            f"({up['ci_low'] * 100:+5.1f} to {up['ci_high'] * 100:+5.1f})  {seg.get('verdict')}"
        )


def cmd_run(args: argparse.Namespace) -> int:
    from custseg.local.flow import run_local

    path = _input_file(args.input)
    dataset = _dataset_from(path, args.dataset)
    as_of = _as_of(args.as_of)
    _contract(args.contract)  # a bad contract file is refused here, before any upload
    summaries = run_local(
        path,
        dataset=dataset,
        contract_path=Path(args.contract) if args.contract else None,
        as_of=as_of,
        out_dir=Path(args.out),
        fanout_ranges=args.fanout,
    )
    for s in summaries:
        print_summary(s)
    return 0 if all(s.status == "committed" for s in summaries) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from custseg.local.demo_data import write_demo_data
    from custseg.local.flow import run_local

    out = Path(args.out)
    data_dir = out / "sample-data"
    customers, orders = write_demo_data(data_dir, seed=args.seed)
    print(f"sample data: {customers} and {orders}")
    summaries = run_local(
        customers,
        dataset="demo_customers",
        out_dir=out,
        extra_uploads=[(orders, "demo_orders")],
        campaign_dataset="demo_customers",
    )
    for s in summaries:
        print_summary(s)
    return 0 if all(s.status == "committed" for s in summaries) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from custseg.local.server import serve

    if serve(port=args.port):
        raise KeyboardInterrupt  # stopped by Ctrl-C: exit as a Ctrl-C does
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List, promote or roll back model versions in a deployed (or served) artifact bucket.

    Promote and rollback verify the version's signature with the model-signing key
    (``--signing-key``, else ``$MODEL_SIGNING_KEY``) first and refuse a forged one."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from custseg.aws import registry
    from custseg.aws.s3 import S3_CONFIG, ObjectStore
    from custseg.aws.signing import KmsVerifier
    from custseg.model.artifact import ArtifactError

    store = ObjectStore(boto3.client("s3", endpoint_url=args.endpoint_url, config=S3_CONFIG))
    if args.action == "list":
        _list_models(store, args.bucket, args.model)
        return 0
    if args.action == "promote" and not args.version:
        raise UsageError("promote needs --version")
    key = args.signing_key or os.environ.get("MODEL_SIGNING_KEY", "")
    if not key:
        raise UsageError(
            "promote and rollback verify the model's signature: give the "
            "model-signing key with --signing-key (or set MODEL_SIGNING_KEY)"
        )
    verifier = KmsVerifier(key, boto3.client("kms", endpoint_url=args.endpoint_url))
    try:
        if args.action == "promote":
            pointer = registry.set_champion(
                store,
                args.bucket,
                args.model,
                args.version,
                reason=args.reason or "promoted by hand",
                verifier=verifier,
            )
        else:
            pointer = registry.rollback(store, args.bucket, args.model, verifier)
    except ArtifactError as exc:
        print(f"custseg: refused: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"custseg: AWS error: {exc}", file=sys.stderr)
        return 1
    print(f"champion of {args.model} is now {pointer['version']} ({pointer['reason']})")
    return 0


def _list_models(store: Any, bucket: str, model: str) -> None:
    from custseg.aws import registry

    pointer = registry.champion(store, bucket, model) or {}
    for version in registry.list_versions(store, bucket, model):
        meta, _ = store.get_json(bucket, f"models/{model}/{version}/metadata.json")
        meta = meta or {}
        mark = "*" if version == pointer.get("version") else " "
        quality = meta.get("quality", {})
        print(
            f"{mark} {version}  k={meta.get('k')}  silhouette={quality.get('silhouette')}  "
            f"status={meta.get('status')}"
        )


def _version() -> str:
    try:
        return metadata.version("custseg")
    except metadata.PackageNotFoundError:  # imported from a checkout, not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="custseg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"custseg {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="print the data-quality report for a local file")
    p.add_argument("input")
    p.add_argument("--contract")
    p.add_argument("--dataset")
    p.add_argument("--json", action="store_true", help="the full report as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("infer", help="print the contract inferred for a file (editable YAML)")
    p.add_argument("input")
    p.add_argument("--contract", help="a contract pinning some columns; the rest inferred")
    p.add_argument("--json", action="store_true", help="each column's role and why, as JSON")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("train", help="validate, clean and train a model; write the artifact")
    p.add_argument("input")
    p.add_argument("--dataset")
    p.add_argument("--contract")
    p.add_argument("--k", type=int, default=None, help="fix the number of segments")
    p.add_argument("--out", default="custseg-out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the whole flow on your CSV, on emulated AWS")
    p.add_argument("input")
    p.add_argument("--dataset")
    p.add_argument("--contract")
    p.add_argument("--as-of", dest="as_of", help="YYYY-MM-DD; default: day after the last event")
    p.add_argument("--out", default="custseg-out")
    p.add_argument(
        "--fanout",
        type=int,
        nargs="?",
        const=4,
        default=None,
        metavar="RANGES",
        help="take the fan-out path (the state machine, docs/fanout.md) in RANGES ranges (4)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the whole flow on generated sample data")
    p.add_argument("--out", default="custseg-out")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models", help="list, promote or roll back model versions")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("--model", required=True, help="the model name (= the dataset name)")
    p.add_argument("--bucket", required=True, help="the artifact bucket")
    p.add_argument("--version", help="with promote: the version to make champion")
    p.add_argument("--reason", help="with promote: why (kept in the pointer's history)")
    p.add_argument(
        "--signing-key",
        dest="signing_key",
        help="ARN or alias of the stack's model-signing KMS key (default $MODEL_SIGNING_KEY)",
    )
    p.add_argument("--endpoint-url", dest="endpoint_url", help="e.g. http://127.0.0.1:5000")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="a local S3 endpoint wired like the deployed stack")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends here as one line on stderr and an exit code."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)
    except BrokenPipeError:  # e.g. `custseg validate x --json | head`: the reader left
        _silence_stdout()
        return 1
    except Exception as exc:  # no traceback reaches a user (CUSTSEG_DEBUG=1 shows it)
        if os.environ.get("CUSTSEG_DEBUG"):
            traceback.print_exc()
        detail = _one_line(str(exc))
        return _fail(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, 1)


def _fail(message: str, code: int) -> int:
    print(f"custseg: {message}", file=sys.stderr, flush=True)
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python's flush at exit would fail on the closed pipe
    again and print its own message."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    raise SystemExit(main())

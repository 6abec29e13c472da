"""The template describes the code: handlers, environment, triggers and IAM agree.

The IAM check replays the whole flow on the emulated stack, records every S3 call each
handler makes, and checks that the function's own policy in the template allows it;
then it checks that no policy grants object access broader than a prefix.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custseg import layout
from custseg.aws.settings import ENV_VARS
from custseg.local.template import stack_spec

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SPEC = stack_spec()

# Where each function writes (bucket logical id, key prefix): the layout's contract.
OUTPUTS = {
    "IngestFunction": [("DataBucket", layout.CLEAN), ("DataBucket", layout.REJECTED)],
    "ScoreFunction": [("ResultsBucket", layout.SEGMENTS)],
    "RescoreFunction": [("ResultsBucket", layout.SEGMENTS)],
    "TrainFunction": [("ArtifactBucket", layout.MODELS)],
}
# Output keys that are meant to trigger the next step (a chain, never a loop).
CHAINS = {("IngestFunction", "ScoreFunction")}


def test_every_handler_exists_and_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    for fn in SPEC.functions.values():
        for name, value in fn.environment.items():
            monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(REPO))
    for fn in SPEC.functions.values():
        module_name, attr = fn.handler.rsplit(".", 1)
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attr)), fn.handler
        assert (REPO / (module_name.replace(".", "/") + ".py")).exists()


def _env_names_read_by_code() -> set[str]:
    pattern = re.compile(
        r"""(?:_env|environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']|environ\[["']([A-Z][A-Z0-9_]+)["']\]"""
    )
    names: set[str] = set()
    for path in [*(REPO / "shared/custseg/aws").glob("*.py"), *(REPO / "functions").rglob("*.py")]:
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            names.add(m.group(1) or m.group(2))
    return names


def test_every_environment_variable_the_code_reads_is_set() -> None:
    read = _env_names_read_by_code() | set(ENV_VARS)
    assert {"DATA_BUCKET", "RESULTS_BUCKET", "IDEMPOTENCY_TABLE"} <= read  # the scan works
    for fn in SPEC.functions.values():
        missing = read - set(fn.environment)
        assert not missing, f"{fn.logical_id} lacks {sorted(missing)}"


def _triggered_by(bucket: str, key: str) -> list[str]:
    hits = []
    for fn in SPEC.functions.values():
        for t in fn.s3_triggers:
            if t.bucket == bucket and key.startswith(t.prefix) and key.endswith(t.suffix):
                hits.append(fn.logical_id)
    return hits


def test_no_output_can_trigger_a_loop() -> None:
    sample_keys = {
        layout.CLEAN: [
            "clean/shop/r1/data.parquet",
            "clean/shop/r1/_manifest.json",
            "clean/shop/latest.json",
        ],
        layout.REJECTED: ["rejected/shop/r1/original/a.csv", "rejected/shop/r1/_manifest.json"],
        layout.SEGMENTS: ["segments/shop/run_date=2026-01-01/run_id=r/_manifest.json"],
        layout.MODELS: ["models/shop/v1/model.joblib", "models/shop/champion.json"],
    }
    for function, outputs in OUTPUTS.items():
        for bucket_id, prefix in outputs:
            bucket = SPEC.buckets[bucket_id]
            for key in sample_keys[prefix]:
                for target in _triggered_by(bucket, key):
                    assert target != function, f"{function} would trigger itself via {key}"
                    assert (function, target) in CHAINS, f"{key} from {function} triggers {target}"
    # and no trigger listens where any function writes, except the chain's manifest
    for fn in SPEC.functions.values():
        for t in fn.s3_triggers:
            for _, outputs in OUTPUTS.items():
                for bucket_id, prefix in outputs:
                    if SPEC.buckets[bucket_id] == t.bucket and (
                        t.prefix.startswith(prefix) or prefix.startswith(t.prefix)
                    ):
                        assert t.suffix == layout.MANIFEST


# ---------------------------------------------------------------- IAM


def _arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def required_permissions(operation: str, params: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The IAM (action, resource) pairs one recorded S3 call needs."""
    bucket = params.get("Bucket", "")
    key = params.get("Key")
    if operation in {"GetObject", "HeadObject"}:
        yield (
            "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject",
            _arn(bucket, key),
        )
    elif operation in {
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    }:
        yield "s3:PutObject", _arn(bucket, key)
    elif operation in {"CopyObject", "UploadPartCopy"}:
        src = params["CopySource"]
        if isinstance(src, str):
            src_bucket, src_key = src.lstrip("/").split("/", 1)
            src = {"Bucket": src_bucket, "Key": src_key.split("?")[0]}
        action = "s3:GetObjectVersion" if src.get("VersionId") else "s3:GetObject"
        yield action, _arn(src["Bucket"], src["Key"])
        yield "s3:PutObject", _arn(bucket, key)
    elif operation in {"ListObjectsV2", "ListObjects"}:
        yield "s3:ListBucket", _arn(bucket)
    else:
        raise AssertionError(f"unmapped S3 operation {operation}: add it to this test")


def allowed(policies: list[dict[str, Any]], action: str, resource: str) -> bool:
    for policy in policies:
        for st in policy.get("Statement", []):
            if st.get("Effect") != "Allow":
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
                fnmatch.fnmatchcase(resource, r) for r in resources
            ):
                return True
    return False


@pytest.fixture(scope="module")
def recorded_calls() -> list[tuple[str, str, dict[str, Any]]]:
    """Every S3 call of every handler over a flow that exercises every trigger."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    with mock_aws():
        stack = LocalStack().create()
        stack.put_contract("mall", REPO / "shared/custseg/contracts/customers.yaml")
        stack.upload(FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
        stack.upload(FIXTURES / "header_only.csv", "incoming/mall/empty.csv")
        stack.upload(FIXTURES / "duplicates.csv", "incoming/dupes/dupes.csv")
        stack.drain()
        stack.upload(FIXTURES / "mall_customers.csv", "training/mall/mall.csv")
        stack.drain()
        stack.tick(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        failures = [i.error for i in stack.invocations if i.error]
        assert failures == []
        return list(stack.calls)


def test_every_trigger_was_exercised(recorded_calls: list[tuple[str, str, dict[str, Any]]]) -> None:
    assert {fn for fn, _, _ in recorded_calls} == set(SPEC.functions)


def test_every_s3_call_is_allowed_by_the_functions_own_policy(
    recorded_calls: list[tuple[str, str, dict[str, Any]]],
) -> None:
    denied = set()
    for function, operation, params in recorded_calls:
        policies = SPEC.functions[function].policies
        for action, resource in required_permissions(operation, params):
            if not allowed(policies, action, resource):
                denied.add((function, action, resource))
    assert not denied, "\n".join(sorted(map(str, denied)))


def test_functions_may_list_every_bucket_they_read(
    recorded_calls: list[tuple[str, str, dict[str, Any]]],
) -> None:
    """Reads probe keys that may not exist (manifests, pointers, contracts): S3 answers
    404 for those only to a caller allowed to list the bucket, 403 otherwise."""
    for function, operation, params in recorded_calls:
        if operation in {"GetObject", "HeadObject"}:
            bucket_arn = _arn(params["Bucket"])
            assert allowed(SPEC.functions[function].policies, "s3:ListBucket", bucket_arn), (
                function,
                params["Bucket"],
            )


def test_no_policy_is_broader_than_the_prefixes_it_needs(
    recorded_calls: list[tuple[str, str, dict[str, Any]]],
) -> None:
    used: dict[str, set[tuple[str, str]]] = {}
    for function, operation, params in recorded_calls:
        used.setdefault(function, set()).update(required_permissions(operation, params))
    for fn in SPEC.functions.values():
        for policy in fn.policies:
            for st in policy["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                assert "*" not in actions and "s3:*" not in actions, (fn.logical_id, st["Sid"])
                for resource in resources:
                    assert resource != "*", (fn.logical_id, st["Sid"])
                    if not resource.startswith("arn:aws:s3:::"):
                        continue
                    path = resource.removeprefix("arn:aws:s3:::")
                    if "/" in path:  # object resources name a prefix, never the whole bucket
                        assert path.split("/", 1)[1] not in {"*", ""}, (fn.logical_id, resource)
                    # and each S3 grant is used by the code (ListBucket: by reading the
                    # bucket, as it makes S3 answer 404, not 403, for a missing key)
                    s3_actions = [a for a in actions if a.startswith("s3:")]
                    if s3_actions == ["s3:ListBucket"]:
                        s3_actions = ["s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"]
                    assert any(
                        (fnmatch.fnmatchcase(r, resource) or r.startswith(resource + "/"))
                        and a in s3_actions
                        for a, r in used.get(fn.logical_id, set())
                    ), f"{fn.logical_id} {st['Sid']} grants {resource} but never uses it"

"""The template describes the code: handlers, environment, triggers and IAM agree.

The IAM check replays the whole flow on the emulated stack, records every AWS call each
handler makes (and Lambda's own send to the failure destination), and checks with
:mod:`custseg.local.iam` that the function's own policy in the template allows every
permission the call needs, KMS use on an encrypted bucket, table or queue included; then
that every granted action is needed by some call, and no grant is broader than a prefix.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from custseg import layout
from custseg.aws.settings import ENV_VARS, LAMBDA_MEMORY
from custseg.local import iam
from custseg.local.iam import AwsCall
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
    read = (_env_names_read_by_code() | set(ENV_VARS)) - {LAMBDA_MEMORY}  # set by Lambda
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
            "clean/shop/_state.json",
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
    # and no trigger listens where any function writes, except the chain's state
    for fn in SPEC.functions.values():
        for t in fn.s3_triggers:
            for _, outputs in OUTPUTS.items():
                for bucket_id, prefix in outputs:
                    if SPEC.buckets[bucket_id] == t.bucket and (
                        t.prefix.startswith(prefix) or prefix.startswith(t.prefix)
                    ):
                        assert t.suffix == layout.STATE


# ---------------------------------------------------------------- IAM

# Grants no recorded call needs, kept on purpose (pattern of "function Sid action" -> why).
EXPECTED_UNUSED = {
    "* Idempotency dynamodb:GetItem": "Powertools idempotency reads a conflicting record "
    "when DynamoDB does not return it with the failed conditional put (documented IAM set)",
    "* Idempotency dynamodb:DeleteItem": "Powertools idempotency deletes the in-progress "
    "record when the handler raises, so that Lambda's retry can run",
    "FanoutStateMachine * logs:*": "Step Functions checks its log delivery when the state "
    "machine is created or updated with CloudWatch Logs logging, not during an execution",
    "FanoutStateMachine AthenaFeatures athena:StopQueryExecution": "the Athena .sync "
    "integration stops the query only when the execution is stopped or times out",
    "FanoutStateMachine DistributedMap states:StopExecution": "a Distributed Map stops its "
    "child executions only when the map run is aborted (failure threshold, stop)",
    "FanoutStateMachine AthenaCatalog glue:GetPartitions": "Athena reads a table's "
    "partitions; the clean table the UNLOAD reads has none (documented Athena set)",
}


@pytest.fixture(scope="module")
def recorded_calls() -> list[AwsCall]:
    """Every AWS call of every handler over a flow that exercises every trigger, a
    retried failure and the failure destination."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    with mock_aws():
        stack = LocalStack().create()
        stack.put_contract("mall", REPO / "shared/custseg/ingest/contracts/customers.yaml")
        stack.upload(FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
        stack.upload(FIXTURES / "header_only.csv", "incoming/mall/empty.csv")
        stack.upload(FIXTURES / "duplicates.csv", "incoming/dupes/dupes.csv")
        stack.drain()
        stack.upload(FIXTURES / "mall_customers.csv", "training/mall/mall.csv")
        stack.drain()
        stack.tick(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        _fanout_run(stack)
        failures = [i.error for i in stack.invocations if i.error]
        assert failures == []

        def fail(function: str, event: dict[str, Any]) -> None:
            raise RuntimeError("injected: every attempt fails")

        # Lambda sends each function's failed events to the on-failure destination
        stack.before_invoke = fail
        for function in SPEC.functions:
            stack.invoke(function, stack.scheduled_event(dt.datetime.now(dt.UTC)))
        SPEC.kms_key_arns.update(stack.spec.kms_key_arns)  # keys KMS made: their real ARNs
        return list(stack.calls)


def _fanout_run(stack: Any) -> None:
    """An order log through the fan-out state machine (forced threshold) on the local
    interpreter: the ingest starts it, its tasks run as the fan-out function, its Athena
    statements run as the state machine's role or the function's."""
    from custseg.local.fanout import run_fanout_executions

    lines = (FIXTURES / "online_retail_invoices.csv").read_text(encoding="utf-8")
    orders = "".join(lines.splitlines(keepends=True)[:2001]).encode()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FANOUT_THRESHOLD_MIB", "0")
        env.setenv("FANOUT_RANGE_MIB", repr(len(orders) / 3 / 1024**2))
        env.setenv("FANOUT_BUCKETS", "2")
        machine = run_fanout_executions(stack, create=True)
        stack.client("s3").put_object(
            Bucket=stack.data_bucket, Key="incoming/fan/orders.csv", Body=orders
        )
        stack.drain()
        outcomes = run_fanout_executions(stack, state_machine=machine)
    assert [o["status"] for o in outcomes] == ["SUCCEEDED"], outcomes


def test_every_trigger_was_exercised(recorded_calls: list[AwsCall]) -> None:
    principals = set(SPEC.functions) | set(SPEC.state_machines)
    assert {c.function for c in recorded_calls} == principals


def test_the_fanout_calls_are_recorded(recorded_calls: list[AwsCall]) -> None:
    """The state machine's and Athena's calls are part of the IAM check."""
    ops = {(c.function, c.service, c.operation) for c in recorded_calls}
    assert ("IngestFunction", "stepfunctions", "StartExecution") in ops
    for service, operation in [
        ("lambda", "Invoke"),
        ("stepfunctions", "StartExecution"),
        ("athena", "StartQueryExecution"),
        ("glue", "GetTable"),
        ("s3", "PutObject"),  # UNLOAD's files
    ]:
        assert ("FanoutStateMachine", service, operation) in ops, (service, operation)
    for service, operation in [
        ("glue", "CreateTable"),
        ("athena", "GetQueryResults"),
        ("glue", "DeleteTable"),  # the run's table, once its queries have run
    ]:
        assert ("FanoutFunction", service, operation) in ops, (service, operation)


def test_every_service_the_functions_call_is_recorded(recorded_calls: list[AwsCall]) -> None:
    services = {c.service for c in recorded_calls}
    assert {"s3", "dynamodb", "events", "sqs", "kms"} <= services, services
    signs = {c.function for c in recorded_calls if (c.service, c.operation) == ("kms", "Sign")}
    assert signs == {"TrainFunction", "FanoutFunction"}  # the fan-out trains on its sample
    for function in ("IngestFunction", "ScoreFunction", "TrainFunction"):
        assert any(c.function == function and c.service == "dynamodb" for c in recorded_calls), (
            f"{function}: its idempotency calls were not recorded"
        )


def test_every_call_is_allowed_by_the_functions_own_policy(
    recorded_calls: list[AwsCall],
) -> None:
    problems = iam.denied(recorded_calls, SPEC)
    assert not problems, "not allowed by the template:\n" + "\n".join(problems)


def test_every_granted_action_is_exercised(recorded_calls: list[AwsCall]) -> None:
    """Least privilege kept: an action a policy grants and no call needs is listed."""
    unused = iam.unused_grants(recorded_calls, SPEC, EXPECTED_UNUSED)
    assert not unused, "granted but never needed:\n" + "\n".join(unused)


def test_functions_may_list_every_bucket_they_read(recorded_calls: list[AwsCall]) -> None:
    """Reads probe keys that may not exist (manifests, pointers, contracts): S3 answers
    404 for those only to a caller allowed to list the bucket, 403 otherwise."""
    for call in recorded_calls:
        if call.service == "s3" and call.operation in {"GetObject", "HeadObject"}:
            perm = iam.Permission("s3:ListBucket", iam.s3_arn(call.params["Bucket"]))
            assert iam.allows(iam.principals(SPEC)[call.function], perm), (
                call.function,
                call.params["Bucket"],
            )


def test_no_policy_is_broader_than_the_prefixes_it_needs() -> None:
    for fn in SPEC.functions.values():
        for st in iam.statements(fn.policies):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), (fn.logical_id, st)
            for resource in resources:
                assert resource != "*", (fn.logical_id, st["Sid"])
                path = resource.removeprefix("arn:aws:s3:::")
                if resource.startswith("arn:aws:s3:::") and "/" in path:
                    # object resources name a prefix, never the whole bucket
                    assert path.split("/", 1)[1] not in {"*", ""}, (fn.logical_id, resource)


# ---------------------------------------------------------------- the checker itself


def _spec_without(function: str, sid: str) -> Any:
    import copy

    spec = copy.deepcopy(SPEC)
    for policy in spec.functions[function].policies:
        policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != sid]
    return spec


def test_a_missing_grant_is_named(recorded_calls: list[AwsCall]) -> None:
    problems = iam.denied(recorded_calls, _spec_without("TrainFunction", "Idempotency"))
    assert any(
        p.startswith("TrainFunction: dynamodb:PutItem on arn:aws:dynamodb:") for p in problems
    )


def test_a_kms_grant_is_needed_for_encrypted_buckets(recorded_calls: list[AwsCall]) -> None:
    problems = iam.denied(recorded_calls, _spec_without("ScoreFunction", "UseKey"))
    assert any("ScoreFunction: kms:GenerateDataKey" in p and "SSE-KMS" in p for p in problems)


def test_only_the_train_role_may_sign_models() -> None:
    key = next(arn for arn in SPEC.key_policies if arn.endswith("/ModelSigningKey"))
    sign = iam.Permission("kms:Sign", key)
    anything = [{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]
    assert iam.kms_allows(SPEC, [], sign, iam.role_arn("TrainFunction"))
    assert iam.kms_allows(SPEC, [], sign, iam.role_arn("FanoutFunction"))
    # not even a role whose own policy allows every KMS action
    assert not iam.kms_allows(SPEC, anything, sign, iam.role_arn("ScoreFunction"))
    verify = iam.Permission("kms:Verify", key)
    assert iam.kms_allows(SPEC, [], verify, iam.role_arn("ScoreFunction"))
    assert not iam.kms_allows(SPEC, [], verify, iam.role_arn("IngestFunction"))


def test_an_explicit_deny_wins() -> None:
    perm = iam.Permission("s3:PutObject", "arn:aws:s3:::b/models/x")
    allow = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/models/*"}
    assert iam.allows([{"Statement": [allow]}], perm)
    assert not iam.allows([{"Statement": [allow, deny]}], perm)


def test_conditions_are_evaluated_on_the_request_context() -> None:
    st = {
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    }
    via_s3 = iam.Permission("kms:Decrypt", "k", (("kms:ViaService", "s3.us-east-1.amazonaws.com"),))
    direct = iam.Permission("kms:Decrypt", "k")
    assert iam.allows([{"Statement": [st]}], via_s3)
    assert not iam.allows([{"Statement": [st]}], direct)  # a missing key fails the condition


def test_sam_policy_templates_are_expanded() -> None:
    from custseg.local.template import Resolver, expand_policies, load_template

    r = Resolver(load_template(), {"EnvName": "local"})
    (doc,) = expand_policies([{"DynamoDBCrudPolicy": {"TableName": "t"}}], r)
    perm = iam.Permission("dynamodb:PutItem", iam.table_arn("t"))
    assert iam.allows([doc], perm)
    with pytest.raises(ValueError, match="unknown SAM policy template"):
        expand_policies([{"NoSuchPolicy": {}}], r)


def test_an_unknown_call_is_refused_not_passed() -> None:
    with pytest.raises(KeyError, match="s3:DeleteBucket"):
        iam.required_permissions(AwsCall("F", "DeleteBucket", {"Bucket": "b"}, "s3"), SPEC)


def test_bucket_policies_deny_what_the_template_says() -> None:
    artifacts = SPEC.buckets["ArtifactBucket"]
    model = iam.Permission("s3:PutObject", iam.s3_arn(artifacts, "models/shop/v1/model.joblib"))
    assert not iam.bucket_policy_denies(SPEC, model, iam.role_arn("TrainFunction"))
    assert iam.bucket_policy_denies(SPEC, model, iam.role_arn("ScoreFunction"))
    contract = iam.Permission("s3:PutObject", iam.s3_arn(artifacts, "contracts/shop.yaml"))
    for function in SPEC.functions:  # no function writes contracts
        assert iam.bucket_policy_denies(SPEC, contract, iam.role_arn(function))
    operator = "arn:aws:iam::123456789012:role/ops"
    assert iam.bucket_policy_denies(SPEC, contract, operator)  # no OperatorRoleArn given
    with_operator = stack_spec(overrides={"OperatorRoleArn": operator})
    assert not iam.bucket_policy_denies(with_operator, contract, operator)
    assert iam.bucket_policy_denies(with_operator, model, operator)  # only champion.json
    pointer = iam.Permission("s3:PutObject", iam.s3_arn(artifacts, "models/shop/champion.json"))
    assert not iam.bucket_policy_denies(with_operator, pointer, operator)
    results = SPEC.buckets["ResultsBucket"]
    key = SPEC.bucket_keys[results]
    for headers, denied in [
        ((), False),  # the bucket's default encryption: the stack key
        ((("s3:x-amz-server-side-encryption", "aws:kms"),), False),
        ((("s3:x-amz-server-side-encryption", "AES256"),), True),
        ((("s3:x-amz-server-side-encryption-aws-kms-key-id", key),), False),
        ((("s3:x-amz-server-side-encryption-aws-kms-key-id", key + "-other"),), True),
    ]:
        put = iam.Permission("s3:PutObject", iam.s3_arn(results, "segments/x"), headers)
        assert iam.bucket_policy_denies(SPEC, put, iam.role_arn("ScoreFunction")) is denied


def test_results_readers_decrypt_only_results_through_s3() -> None:
    from custseg.local.template import Resolver, load_template

    r = Resolver(load_template(), {"EnvName": "local"})
    reader = r.resolve(SPEC.resources["ResultsReaderPolicy"]["Properties"]["PolicyDocument"])
    key = SPEC.bucket_keys[SPEC.buckets["ResultsBucket"]]
    via_s3 = ("kms:ViaService", "s3.us-east-1.amazonaws.com")

    def decrypt(bucket: str, *via: tuple[str, str]) -> iam.Permission:
        ctx = ("kms:EncryptionContext:aws:s3:arn", iam.s3_arn(bucket))
        return iam.Permission("kms:Decrypt", key, (*via, ctx))

    assert iam.allows([reader], decrypt(SPEC.buckets["ResultsBucket"], via_s3))
    assert not iam.allows([reader], decrypt(SPEC.buckets["DataBucket"], via_s3))
    assert not iam.allows([reader], decrypt(SPEC.buckets["ResultsBucket"]))  # direct KMS call

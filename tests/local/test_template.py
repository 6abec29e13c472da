"""The template is read correctly, and the emulated stack is wired from it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from custseg.local.template import Resolver, load_template, placeholder_arn, stack_spec


def test_stack_spec_reads_functions_triggers_and_names() -> None:
    spec = stack_spec()
    assert set(spec.functions) == {
        "IngestFunction",
        "ScoreFunction",
        "TrainFunction",
        "RescoreFunction",
        "FanoutFunction",
    }
    assert spec.buckets["DataBucket"] == "custseg-local-data-123456789012-us-east-1"
    assert spec.functions["IngestFunction"].handler == "functions.ingest.app.lambda_handler"
    score = spec.functions["ScoreFunction"]
    assert [(t.prefix, t.suffix) for t in score.s3_triggers] == [("clean/", "_state.json")]
    assert [r.pattern["detail-type"] for r in score.rules] == [["Model Promoted"]]
    train = {r.name: r.enabled for r in spec.functions["TrainFunction"].rules}
    assert train == {
        "TrainFunction-TrainingRequested": True,
        "TrainFunction-RetrainRecommended": False,  # disabled by default (parameter)
    }
    assert spec.functions["RescoreFunction"].schedules == ["cron(0 5 * * ? *)"]
    env = spec.functions["IngestFunction"].environment
    assert env["EVENT_BUS_NAME"] == "custseg-local"
    assert env["IDEMPOTENCY_TABLE"] == "custseg-local-idempotency"


def test_parameters_can_enable_drift_retraining() -> None:
    spec = stack_spec(overrides={"EnableDriftRetraining": "true"})
    assert all(r.enabled for r in spec.functions["TrainFunction"].rules)


def test_uploads_reach_the_ingest_queue_url_encoded(stack) -> None:  # type: ignore[no-untyped-def]
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.data_bucket, Key="incoming/shop/My File été.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/r1/data.parquet", Body=b"x")
    events = stack.receive("IngestFunction")
    assert len(events) == 1
    record = events[0]["Records"][0]
    assert record["s3"]["object"]["key"] == "incoming/shop/My+File+%C3%A9t%C3%A9.csv"
    assert unquote_plus(record["s3"]["object"]["key"]) == "incoming/shop/My File été.csv"
    assert record["s3"]["object"]["versionId"]  # the data bucket is versioned
    assert record["eventName"].startswith("ObjectCreated:")
    # only the dataset state triggers scoring, not a clean run's files or manifest
    assert stack.receive("ScoreFunction") == []
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/r1/_manifest.json", Body=b"{}")
    assert stack.receive("ScoreFunction") == []
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/_state.json", Body=b"{}")
    assert len(stack.receive("ScoreFunction")) == 1


def test_custom_events_follow_the_rules(stack) -> None:  # type: ignore[no-untyped-def]
    events = stack.client("events")
    for detail_type in ("Model Promoted", "Training Requested", "Retrain Recommended"):
        events.put_events(
            Entries=[
                {
                    "Source": "custseg",
                    "DetailType": detail_type,
                    "Detail": json.dumps({"dataset": "shop"}),
                    "EventBusName": stack.spec.event_bus,
                }
            ]
        )
    assert [e["detail-type"] for e in stack.receive("ScoreFunction")] == ["Model Promoted"]
    # the drift rule is disabled by default: only the training request arrives
    assert [e["detail-type"] for e in stack.receive("TrainFunction")] == ["Training Requested"]


def _statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {st["Sid"]: st for st in document["Statement"] if isinstance(st, dict)}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_only_the_train_role_may_sign_models() -> None:
    template = load_template()
    key = template["Resources"]["ModelSigningKey"]["Properties"]
    assert (key["KeyUsage"], key["KeySpec"]) == ("SIGN_VERIFY", "ECC_NIST_P256")
    statements = _statements(key["KeyPolicy"])
    allowing_sign = {
        sid
        for sid, st in statements.items()
        if st["Effect"] == "Allow"
        and any(a in ("kms:*", "kms:Sign") for a in _as_list(st["Action"]))
    }
    assert allowing_sign == {"TrainingRolesSign"}
    training_roles = [
        {"Fn::GetAtt": ["TrainFunctionRole", "Arn"]},
        {"Fn::GetAtt": ["FanoutFunctionRole", "Arn"]},  # the fan-out trains on its sample
    ]
    assert statements["TrainingRolesSign"]["Principal"] == {"AWS": training_roles}
    deny = statements["OnlyTheTrainingRolesSign"]
    assert (deny["Effect"], deny["Action"], deny["Principal"]) == ("Deny", "kms:Sign", "*")
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": training_roles}}
    verifiers = _as_list(statements["FunctionsVerify"]["Principal"]["AWS"])
    assert {v["Fn::GetAtt"][0] for v in verifiers} == {"ScoreFunctionRole", "RescoreFunctionRole"}
    # every function reads the key from its environment: the real ARN in the local stack
    for fn in stack_spec().functions.values():
        assert fn.environment["MODEL_SIGNING_KEY"] == placeholder_arn("ModelSigningKey")


def test_operator_policy_is_least_privilege() -> None:
    template = load_template()
    resolver = Resolver(template, {"EnvName": "local"})
    policy = resolver.resolve(template["Resources"]["OperatorPolicy"]["Properties"])
    bucket = "arn:aws:s3:::custseg-local-artifacts-123456789012-us-east-1"
    grants = {
        (action, resource)
        for st in policy["PolicyDocument"]["Statement"]
        for action in _as_list(st["Action"])
        for resource in _as_list(st["Resource"])
    }
    assert grants == {
        ("s3:ListBucket", bucket),
        ("s3:GetObject", bucket + "/models/*"),
        ("s3:PutObject", bucket + "/models/*/champion.json"),
        ("s3:GetObject", bucket + "/contracts/*"),
        ("s3:PutObject", bucket + "/contracts/*"),
        ("kms:Decrypt", placeholder_arn("DataKey")),
        ("kms:GenerateDataKey", placeholder_arn("DataKey")),
        ("kms:Verify", placeholder_arn("ModelSigningKey")),
    }


def _artifact_bucket_policy(operator_role: str) -> dict[str, dict[str, Any]]:
    template = load_template()
    resolver = Resolver(template, {"EnvName": "local", "OperatorRoleArn": operator_role})
    document = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    kept = []
    for st in document["Statement"]:  # what CloudFormation keeps of each Fn::If
        if "Fn::If" in st:
            cond, yes, no = st["Fn::If"]
            st = yes if resolver.condition(cond) else no
        if st != {"Ref": "AWS::NoValue"}:
            kept.append(st)
    return _statements({"Statement": kept})


def test_the_operator_role_may_move_champions_and_nothing_else_under_models() -> None:
    role = "arn:aws:iam::123456789012:role/custseg-operator"
    statements = _artifact_bucket_policy(role)
    exempt = statements["OnlyTrainingWritesModels"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert {"Fn::If": ["HasOperatorRole", {"Ref": "OperatorRoleArn"}, {"Ref": "AWS::NoValue"}]} in (
        exempt
    )
    limit = statements["OperatorWritesOnlyChampionPointersAndContracts"]
    assert limit["Effect"] == "Deny" and limit["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": {"Ref": "OperatorRoleArn"}}
    }
    assert [r["Fn::Sub"].split("${ArtifactBucket}")[1] for r in limit["NotResource"]] == [
        "/models/*/champion.json",
        "/contracts/*",
    ]
    # without a role, no operator statement (and the exemption resolves to nothing)
    assert "OperatorWritesOnlyChampionPointersAndContracts" not in _artifact_bucket_policy("")

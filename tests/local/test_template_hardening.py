"""The deployed stack's hardening, read from the template: logs, lifecycle, parameters,
gradual deployment and alarms on the metrics the code emits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from custseg.local.template import Resolver, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"]
R = Resolver(TEMPLATE, {"EnvName": "local"})


def _of_type(rtype: str) -> dict[str, Any]:
    return {k: v for k, v in RESOURCES.items() if v["Type"] == rtype}


def test_every_function_logs_to_its_own_encrypted_group_with_retention() -> None:
    groups = _of_type("AWS::Logs::LogGroup")
    for fn in FUNCTIONS:
        ref = RESOURCES[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        props = groups[ref]["Properties"]
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}, fn
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, fn
        name = R.resolve(RESOURCES[fn]["Properties"]["FunctionName"])
        assert R.resolve(props["LogGroupName"]) == f"/aws/lambda/{name}"
    # and the key lets CloudWatch Logs use it for these groups only
    key = RESOURCES["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    (logs,) = [st for st in key if st["Sid"] == "CloudWatchLogsEncryptsFunctionLogs"]
    arn = R.resolve(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert arn.endswith(":log-group:/aws/lambda/custseg-local-*")


def test_key_policy_service_principals_are_bound_to_this_account() -> None:
    for st in RESOURCES["DataKey"]["Properties"]["KeyPolicy"]["Statement"]:
        if "Service" in st["Principal"]:
            condition = st.get("Condition", {})
            bound = {k for op in condition.values() for k in op}
            assert bound & {
                "aws:SourceAccount",
                "aws:SourceArn",
                "kms:EncryptionContext:aws:logs:arn",
            }, st["Sid"]


def _rules(bucket: str) -> dict[str, dict[str, Any]]:
    rules = RESOURCES[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    return {r.get("Prefix", ""): r for r in rules}


def test_lifecycle_expires_clean_data_old_runs_and_replaced_artifacts() -> None:
    assert _rules("DataBucket")["clean/"]["ExpirationInDays"] == {"Ref": "CleanRetentionDays"}
    assert _rules("ResultsBucket")["segments/"]["ExpirationInDays"] == {
        "Ref": "SegmentsRetentionDays"
    }
    artifacts = _rules("ArtifactBucket")[""]
    assert "ExpirationInDays" not in artifacts  # model versions stay, for rollback
    assert artifacts["NoncurrentVersionExpiration"]["NoncurrentDays"] == {
        "Ref": "ModelVersionRetentionDays"
    }


def test_memory_and_reserved_concurrency_are_parameters() -> None:
    globals_fn = TEMPLATE["Globals"]["Function"]
    assert globals_fn["MemorySize"] == {"Ref": "FunctionMemoryMiB"}
    reserved = globals_fn["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved[0] == "HasReservedConcurrency"
    for fn in FUNCTIONS:
        assert "MemorySize" not in RESOURCES[fn]["Properties"], fn  # one setting for all


def test_a_bad_image_rolls_back() -> None:
    assert TEMPLATE["Globals"]["Function"]["AutoPublishAlias"] == "live"
    for fn in FUNCTIONS:
        pref = RESOURCES[fn]["Properties"]["DeploymentPreference"]
        assert pref["Type"] == {"Ref": "DeploymentType"}
        (alarm,) = pref["Alarms"]
        dims = RESOURCES[alarm["Ref"]]["Properties"]["Dimensions"]
        assert dims == [{"Name": "FunctionName", "Value": {"Ref": fn}}]
        assert RESOURCES[alarm["Ref"]]["Properties"]["MetricName"] == "Errors"


def _metric_names_in_code() -> set[str]:
    names: set[str] = set()
    for path in [*(REPO / "shared/custseg/aws").glob("*.py"), *(REPO / "functions").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'add_metric\(\s*name="([A-Za-z]+)"', text))
        names |= set(re.findall(r'^[A-Z_]+ = "([A-Za-z]+)"', text, re.M))
    return names


def test_custom_metric_alarms_watch_metrics_the_code_emits() -> None:
    emitted = _metric_names_in_code()
    assert {"DriftMaxPSI", "ModelsRefused"} <= emitted  # the scan works
    namespace = R.resolve(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])[
        "POWERTOOLS_METRICS_NAMESPACE"
    ]
    custom = {
        k: v["Properties"]
        for k, v in _of_type("AWS::CloudWatch::Alarm").items()
        if not str(v["Properties"]["Namespace"]).startswith("AWS/")
    }
    assert {"DriftAlarm", "ModelsRefusedAlarm", "DatasetFailuresAlarm"} <= set(custom)
    for name, props in custom.items():
        assert R.resolve(props["Namespace"]) == namespace, name
        assert props["MetricName"] in emitted, f"{name} watches {props['MetricName']}"
        assert props["Dimensions"] == [{"Name": "service", "Value": "custseg"}], name
    assert custom["DriftAlarm"]["Threshold"] == {"Ref": "DriftPsiRetrain"}


def test_the_state_machine_calls_the_fanout_functions_live_alias() -> None:
    # the alias a canary deployment shifts: a bad image rolls back for the fan-out too
    machine = RESOURCES["FanoutStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["FanoutFunctionArn"] == {
        "Ref": "FanoutFunction.Alias"
    }


def test_a_failed_fanout_execution_raises_an_alarm() -> None:
    """Whatever step failed (a Lambda step, or the Athena one, which raises no Lambda
    error), a failed execution notifies the alarm topic (docs/fanout.md, Failures)."""
    props = RESOURCES["FanoutFailedAlarm"]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert props["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": {"Ref": "FanoutStateMachine"}}
    ]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert "docs/fanout.md" in props["AlarmDescription"]

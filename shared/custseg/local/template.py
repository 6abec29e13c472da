"""Read ``infra/template.yaml`` into what the emulated stack needs.

The local runner and the tests build buckets, queues, the event bus, the idempotency
table and every trigger from the template itself, so the template and the code cannot
drift apart. Only the intrinsic functions the template uses are resolved (``Ref``,
``Sub``, ``GetAtt`` of names, ``If`` on parameter conditions). A resource whose ARN only
exists once it is made (the model-signing KMS key: KMS picks its id) resolves to
:func:`placeholder_arn`; the stack puts the real ARN in its place when it makes it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


def placeholder_arn(logical_id: str) -> str:
    """What ``!GetAtt <logical_id>.Arn`` resolves to before the resource exists."""
    return f"arn:aws:local:::{logical_id}"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader turning `!Ref x` into `{"Ref": x}` and `!Sub s` into `{"Fn::Sub": s}`."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def default_template_path() -> Path:
    """``$CUSTSEG_TEMPLATE`` or ``infra/template.yaml`` of the source checkout."""
    env = os.environ.get("CUSTSEG_TEMPLATE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "infra" / "template.yaml"


def load_template(path: Path | None = None) -> dict[str, Any]:
    text = (path or default_template_path()).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_CfnLoader)


@dataclass
class S3Trigger:
    bucket: str
    events: list[str]
    prefix: str = ""
    suffix: str = ""


@dataclass
class RuleTrigger:
    name: str
    pattern: dict[str, Any]
    enabled: bool = True


@dataclass
class FunctionSpec:
    logical_id: str
    handler: str  # dotted path: module.function
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    s3_triggers: list[S3Trigger] = field(default_factory=list)
    rules: list[RuleTrigger] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    max_retries: int = 2


@dataclass
class StackSpec:
    parameters: dict[str, str]
    buckets: dict[str, str]  # logical id -> bucket name
    versioned: set[str]  # bucket names with versioning
    event_bus: str
    idempotency_table: str
    dead_letter_queue: str
    functions: dict[str, FunctionSpec]
    resources: dict[str, Any]
    # KMS signing keys (logical id -> KeySpec), made by the stack (KMS picks their ARNs)
    signing_keys: dict[str, str] = field(default_factory=dict)


class Resolver:
    """Resolves intrinsic functions against parameters and resource names."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str] | None = None) -> None:
        self.template = template
        self.params: dict[str, str] = {
            name: str(spec.get("Default", ""))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.params.update(overrides or {})
        self.pseudo = {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": f"custseg-{self.params.get('EnvName', 'local')}",
        }
        self.resources: dict[str, Any] = template.get("Resources", {})

    def name_of(self, logical_id: str) -> str:
        """What ``!Ref`` returns for a resource: its physical name."""
        res = self.resources[logical_id]
        props = res.get("Properties", {})
        rtype = res["Type"]
        key = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::Events::EventBus": "Name",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Serverless::Function": "FunctionName",
        }.get(rtype)
        if key and key in props:
            return str(self.resolve(props[key]))
        return logical_id

    def condition(self, name: str) -> bool:
        cond = self.template.get("Conditions", {})[name]
        return bool(self._eval_condition(cond))

    def _eval_condition(self, cond: Any) -> Any:
        if isinstance(cond, dict):
            ((fn, arg),) = cond.items()
            if fn == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if fn == "Fn::Not":
                return not self._eval_condition(arg[0])
            if fn == "Condition":
                return self.condition(arg)
        return self.resolve(cond)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg in self.params:
                    return self.params[arg]
                if arg in self.pseudo:
                    return self.pseudo[arg]
                return self.name_of(arg)
            if fn == "Fn::Sub":
                return self._sub(arg if isinstance(arg, str) else arg[0])
            if fn == "Fn::GetAtt":
                logical, attr = arg
                if attr == "Arn":
                    return placeholder_arn(self.name_of(logical))
                return self.name_of(logical)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, text: str) -> str:
        def repl(m: re.Match[str]) -> str:
            token = m.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in self.params:
                return self.params[token]
            if token in self.pseudo:
                return self.pseudo[token]
            return self.name_of(token.split(".")[0])

        return re.sub(r"\$\{([^}]+)\}", repl, text)


def stack_spec(
    template: dict[str, Any] | None = None, overrides: dict[str, str] | None = None
) -> StackSpec:
    """The emulated stack described by the template (``EnvName`` defaults to ``local``)."""
    template = template or load_template()
    r = Resolver(template, {"EnvName": "local", **(overrides or {})})
    buckets: dict[str, str] = {}
    versioned: set[str] = set()
    bus = table = dlq = ""
    signing_keys: dict[str, str] = {}
    for logical, res in r.resources.items():
        rtype = res["Type"]
        props = res.get("Properties", {})
        if rtype == "AWS::KMS::Key" and props.get("KeyUsage") == "SIGN_VERIFY":
            signing_keys[logical] = str(r.resolve(props["KeySpec"]))
        elif rtype == "AWS::S3::Bucket":
            name = r.name_of(logical)
            buckets[logical] = name
            status = res.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
            if status == "Enabled":
                versioned.add(name)
        elif rtype == "AWS::Events::EventBus":
            bus = r.name_of(logical)
        elif rtype == "AWS::DynamoDB::Table":
            table = r.name_of(logical)
        elif rtype == "AWS::SQS::Queue":
            dlq = r.name_of(logical)

    globals_fn = template.get("Globals", {}).get("Function", {})
    global_env = globals_fn.get("Environment", {}).get("Variables", {})
    retries = int(globals_fn.get("EventInvokeConfig", {}).get("MaximumRetryAttempts", 2))
    functions: dict[str, FunctionSpec] = {}
    for logical, res in r.resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        env_raw = {**global_env, **props.get("Environment", {}).get("Variables", {})}
        spec = FunctionSpec(
            logical_id=logical,
            handler=props["ImageConfig"]["Command"][0],
            environment={k: str(r.resolve(v)) for k, v in env_raw.items()},
            memory_mb=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
            timeout_s=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
            policies=r.resolve(props.get("Policies", [])),
            max_retries=retries,
        )
        for event_name, event in props.get("Events", {}).items():
            eprops = event.get("Properties", {})
            if event["Type"] == "S3":
                rules = eprops.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                flt = {rule["Name"]: rule["Value"] for rule in rules}
                events = eprops["Events"]
                spec.s3_triggers.append(
                    S3Trigger(
                        bucket=str(r.resolve(eprops["Bucket"])),
                        events=events if isinstance(events, list) else [events],
                        prefix=flt.get("prefix", ""),
                        suffix=flt.get("suffix", ""),
                    )
                )
            elif event["Type"] == "EventBridgeRule":
                state = str(r.resolve(eprops.get("State", "ENABLED")))
                spec.rules.append(
                    RuleTrigger(
                        name=f"{logical}-{event_name}",
                        pattern=eprops["Pattern"],
                        enabled=state == "ENABLED",
                    )
                )
            elif event["Type"] in {"Schedule", "ScheduleV2"}:
                spec.schedules.append(str(r.resolve(eprops.get("Schedule", ""))))
        functions[logical] = spec
    return StackSpec(
        parameters=r.params,
        buckets=buckets,
        versioned=versioned,
        event_bus=bus,
        idempotency_table=table,
        dead_letter_queue=dlq,
        functions=functions,
        resources=r.resources,
        signing_keys=signing_keys,
    )

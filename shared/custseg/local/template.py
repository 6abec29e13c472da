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
    """What ``!GetAtt <logical_id>.Arn`` of a KMS key resolves to before the key exists
    (KMS picks a key's id when it makes it)."""
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{logical_id}"


_NO_VALUE = object()  # what `!Ref AWS::NoValue` resolves to: the property is left out


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
    """``$CUSTSEG_TEMPLATE``; else ``infra/template.yaml`` of the source checkout; else the
    copy an installed wheel carries (``custseg/local/template.yaml``, a link to the
    checkout's file in the source tree)."""
    env = os.environ.get("CUSTSEG_TEMPLATE")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[3] / "infra" / "template.yaml"
    return checkout if checkout.exists() else Path(__file__).with_name("template.yaml")


def load_template(path: Path | None = None) -> dict[str, Any]:
    text = (path or default_template_path()).read_text(encoding="utf-8")
    template: dict[str, Any] = yaml.load(text, Loader=_CfnLoader)
    return template


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
    # Encryption, for the KMS permissions services ask for on a caller's behalf:
    bucket_keys: dict[str, str] = field(default_factory=dict)  # bucket -> KMS key ARN
    bucket_key_enabled: set[str] = field(default_factory=set)  # buckets with an S3 Bucket Key
    table_keys: dict[str, str] = field(default_factory=dict)  # table -> KMS key ARN
    queue_keys: dict[str, str] = field(default_factory=dict)  # queue name -> KMS key ARN
    # KMS key identifiers (id, ARN or alias of a key the stack made) -> the template's ARN
    kms_key_arns: dict[str, str] = field(default_factory=dict)
    bucket_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # statements
    key_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key ARN ->
    # state machines (logical id -> their role's policies), checked like functions' roles
    state_machines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


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
        if logical_id not in self.resources:
            if logical_id.removesuffix("Role") in self.resources:
                return logical_id  # the execution role SAM makes for a function
            raise KeyError(f"the template has no resource {logical_id}")
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
        """``value`` with its intrinsic functions resolved (``AWS::NoValue`` dropped)."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in self.params:
                    return self.params[arg]
                if arg in self.pseudo:
                    return self.pseudo[arg]
                return self.name_of(arg)
            if fn == "Fn::Sub":
                if isinstance(arg, str):
                    return self._sub(arg)
                return self._sub(arg[0], {k: str(self.resolve(v)) for k, v in arg[1].items()})
            if fn == "Fn::GetAtt":
                logical, attr = arg
                if attr == "Arn":
                    return self.arn_of(logical)
                return self.name_of(logical)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def arn_of(self, logical_id: str) -> str:
        """What ``!GetAtt X.Arn`` returns, in the emulated account and region."""
        name = self.name_of(logical_id)
        where = f"{REGION}:{ACCOUNT_ID}"
        rtype = (
            self.resources[logical_id]["Type"] if logical_id in self.resources else "AWS::IAM::Role"
        )
        return {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{where}:table/{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{where}:event-bus/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{where}:{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{where}:{name}",
            "AWS::KMS::Key": placeholder_arn(name),
            "AWS::Serverless::Function": f"arn:aws:lambda:{where}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{where}:log-group:{name}:*",
            "AWS::Serverless::StateMachine": f"arn:aws:states:{where}:stateMachine:{name}",
        }.get(rtype, f"arn:aws:cloudformation:{where}:resource/{name}")

    def _sub(self, text: str, variables: dict[str, str] | None = None) -> str:
        def repl(m: re.Match[str]) -> str:
            token = m.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if variables and token in variables:
                return variables[token]
            if token in self.params:
                return self.params[token]
            if token in self.pseudo:
                return self.pseudo[token]
            return self.name_of(token.split(".")[0])

        return re.sub(r"\$\{([^}]+)\}", repl, text)


def expand_policies(policies: Any, r: Resolver) -> list[dict[str, Any]]:
    """A function's ``Policies`` as IAM policy documents: inline documents as they are,
    SAM policy templates (``{DynamoDBCrudPolicy: {TableName: ...}}``) expanded as SAM
    expands them. A managed policy named by string cannot be checked here: refused."""
    out: list[dict[str, Any]] = []
    for entry in policies if isinstance(policies, list) else [policies]:
        if isinstance(entry, dict) and "Statement" in entry:
            out.append(r.resolve(entry))
        elif isinstance(entry, dict) and len(entry) == 1:
            ((name, params),) = entry.items()
            from samtranslator.policy_template_processor.processor import (
                PolicyTemplatesProcessor,
            )

            processor = PolicyTemplatesProcessor(
                PolicyTemplatesProcessor.get_default_policy_templates_json()
            )
            if not processor.has(name):
                raise ValueError(f"unknown SAM policy template {name}")
            out.append(r.resolve(processor.convert(name, r.resolve(params or {}))))
        else:
            raise ValueError(f"policy {entry!r}: use an inline document or a SAM policy template")
    return out


def _key_arn(r: Resolver, ref: Any) -> str:
    """A KMS key reference (``!Ref Key``, ``!GetAtt Key.Arn`` or an ARN) -> its ARN."""
    value = str(r.resolve(ref))
    if value.startswith("arn:"):
        return value
    return r.arn_of(value) if value in r.resources else value


def _encryption(r: Resolver) -> dict[str, Any]:
    """Which bucket, table and queue each template key encrypts; the bucket and key
    policies."""
    bucket_keys: dict[str, str] = {}
    bucket_key_enabled: set[str] = set()
    bucket_policies: dict[str, list[dict[str, Any]]] = {}
    key_policies: dict[str, list[dict[str, Any]]] = {}
    table_keys: dict[str, str] = {}
    queue_keys: dict[str, str] = {}
    for logical, res in r.resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::S3::Bucket":
            rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
            for rule in rules:
                default = rule.get("ServerSideEncryptionByDefault", {})
                if default.get("SSEAlgorithm") in {"aws:kms", "aws:kms:dsse"}:
                    bucket_keys[r.name_of(logical)] = _key_arn(r, default["KMSMasterKeyID"])
                    if rule.get("BucketKeyEnabled"):
                        bucket_key_enabled.add(r.name_of(logical))
        elif res["Type"] == "AWS::DynamoDB::Table":
            sse = props.get("SSESpecification", {})
            if sse.get("SSEEnabled") and sse.get("KMSMasterKeyId"):
                table_keys[r.name_of(logical)] = _key_arn(r, sse["KMSMasterKeyId"])
        elif res["Type"] == "AWS::SQS::Queue" and props.get("KmsMasterKeyId"):
            queue_keys[r.name_of(logical)] = _key_arn(r, props["KmsMasterKeyId"])
        elif res["Type"] == "AWS::KMS::Key":
            doc = r.resolve(props["KeyPolicy"])
            key_policies[r.arn_of(logical)] = doc["Statement"]
        elif res["Type"] == "AWS::S3::BucketPolicy":
            doc = r.resolve(props["PolicyDocument"])
            bucket_policies.setdefault(str(r.resolve(props["Bucket"])), []).extend(doc["Statement"])
    return {
        "bucket_policies": bucket_policies,
        "key_policies": key_policies,
        "bucket_keys": bucket_keys,
        "bucket_key_enabled": bucket_key_enabled,
        "table_keys": table_keys,
        "queue_keys": queue_keys,
    }


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
            memory_mb=int(r.resolve(props.get("MemorySize", globals_fn.get("MemorySize", 128)))),
            timeout_s=int(r.resolve(props.get("Timeout", globals_fn.get("Timeout", 3)))),
            policies=expand_policies(props.get("Policies", []), r),
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
    state_machines = {
        logical: expand_policies(res["Properties"].get("Policies", []), r)
        for logical, res in r.resources.items()
        if res["Type"] == "AWS::Serverless::StateMachine"
    }
    encryption = _encryption(r)
    return StackSpec(
        **encryption,
        parameters=r.params,
        buckets=buckets,
        versioned=versioned,
        event_bus=bus,
        idempotency_table=table,
        dead_letter_queue=dlq,
        functions=functions,
        resources=r.resources,
        signing_keys=signing_keys,
        state_machines=state_machines,
    )

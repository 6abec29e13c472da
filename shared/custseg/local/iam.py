"""IAM, proven from the calls the code makes.

The emulator enforces no IAM, so the local stack records every AWS call each function
makes (service, operation, parameters). This module turns each recorded call into the
IAM permissions AWS checks for it (:func:`required_permissions`), including the ones a
service asks for on the caller's behalf (S3, SQS and DynamoDB calling KMS for an
encrypted bucket, queue or table), and evaluates them against the function's policies as
the template declares them, SAM policy templates expanded (:func:`allows`).

The model of AWS's evaluation is deliberately small and strict: an explicit ``Deny``
wins; an ``Allow`` needs its action and resource to match (``*`` and ``?`` wildcards)
and every condition to hold on the request's context; a condition key the request does
not carry fails a positive operator (AWS's rule, unless ``...IfExists``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlparse

from custseg.local.template import ACCOUNT_ID, REGION, StackSpec


class AwsCall(NamedTuple):
    """One API call a function made: ``(function, operation, params, service)``."""

    function: str
    operation: str
    params: dict[str, Any]
    service: str = "s3"


@dataclass(frozen=True)
class Permission:
    """One IAM authorisation AWS checks: an action on a resource, in a request context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    reason: str = field(default="", compare=False)

    @property
    def context_map(self) -> dict[str, str]:
        return dict(self.context)


# ---------------------------------------------------------------- ARNs


def s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"


def bus_arn(name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}"


def queue_arn(queue_url_or_name: str) -> str:
    name = urlparse(queue_url_or_name).path.rstrip("/").rsplit("/", 1)[-1]
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def _via(service: str) -> tuple[str, str]:
    return ("kms:ViaService", f"{service}.{REGION}.amazonaws.com")


# ---------------------------------------------------------------- what a call needs

_S3_READS = {"GetObject", "HeadObject", "GetObjectAttributes"}
_S3_WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
_DDB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
_DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}


def _s3_object_read(spec: StackSpec, bucket: str, key: str, version: bool) -> Iterator[Permission]:
    yield Permission("s3:GetObjectVersion" if version else "s3:GetObject", s3_arn(bucket, key))
    # The code reads keys that may not exist yet (manifests, pointers, contracts): S3
    # answers 404 for those only to a caller that may list the bucket, 403 otherwise.
    yield Permission(
        "s3:ListBucket", s3_arn(bucket), (("s3:prefix", key),), "404 for a missing key"
    )
    key_arn = spec.bucket_keys.get(bucket)
    if key_arn:  # SSE-KMS: S3 decrypts the data key with the caller's permission
        ctx = (_via("s3"), ("kms:EncryptionContext:aws:s3:arn", _s3_context(spec, bucket, key)))
        yield Permission("kms:Decrypt", key_arn, ctx, "S3 reads an SSE-KMS object")


def _s3_object_write(
    spec: StackSpec, bucket: str, key: str, multipart: bool, params: Mapping[str, Any]
) -> Iterator[Permission]:
    headers = {
        "s3:x-amz-server-side-encryption": params.get("ServerSideEncryption"),
        "s3:x-amz-server-side-encryption-aws-kms-key-id": params.get("SSEKMSKeyId"),
    }
    sent = tuple((k, str(v)) for k, v in headers.items() if v)
    yield Permission("s3:PutObject", s3_arn(bucket, key), sent)
    key_arn = spec.bucket_keys.get(bucket)
    if key_arn:
        ctx = (_via("s3"), ("kms:EncryptionContext:aws:s3:arn", _s3_context(spec, bucket, key)))
        yield Permission("kms:GenerateDataKey", key_arn, ctx, "S3 writes an SSE-KMS object")
        if multipart:  # each part is encrypted under the data key S3 decrypts again
            yield Permission("kms:Decrypt", key_arn, ctx, "S3 multipart upload to SSE-KMS")


def _s3_context(spec: StackSpec, bucket: str, key: str) -> str:
    """The encryption context S3 sends to KMS: the bucket's ARN with an S3 Bucket Key."""
    return s3_arn(bucket) if bucket in spec.bucket_key_enabled else s3_arn(bucket, key)


def _s3(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    bucket = params.get("Bucket", "")
    key = params.get("Key")
    if operation in _S3_READS:
        yield from _s3_object_read(spec, bucket, key or "", bool(params.get("VersionId")))
    elif operation in _S3_WRITES:
        yield from _s3_object_write(spec, bucket, key or "", operation != "PutObject", params)
    elif operation in {"CopyObject", "UploadPartCopy"}:
        src = params["CopySource"]
        if isinstance(src, str):
            src_bucket, src_key = src.lstrip("/").split("/", 1)
            src = {"Bucket": src_bucket, "Key": src_key.split("?")[0]}
        yield from _s3_object_read(spec, src["Bucket"], src["Key"], bool(src.get("VersionId")))
        yield from _s3_object_write(spec, bucket, key or "", operation == "UploadPartCopy", params)
    elif operation in {"ListObjectsV2", "ListObjects"}:
        yield Permission(
            "s3:ListBucket", s3_arn(bucket), (("s3:prefix", params.get("Prefix", "")),)
        )
    elif operation == "GetBucketLocation":
        yield Permission("s3:GetBucketLocation", s3_arn(bucket))
    elif operation == "DeleteObject":
        action = "s3:DeleteObjectVersion" if params.get("VersionId") else "s3:DeleteObject"
        yield Permission(action, s3_arn(bucket, key))
    else:
        raise KeyError(f"s3:{operation}")


def _dynamodb(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    if operation not in _DDB_READS | _DDB_WRITES:
        raise KeyError(f"dynamodb:{operation}")
    name = params["TableName"]
    yield Permission(f"dynamodb:{operation}", table_arn(name))
    key_arn = spec.table_keys.get(name)
    if key_arn:  # a customer managed key: DynamoDB uses it on the caller's behalf
        yield Permission("kms:Decrypt", key_arn, (_via("dynamodb"),), "DynamoDB table under a CMK")
        if operation in _DDB_WRITES:
            yield Permission(
                "kms:GenerateDataKey", key_arn, (_via("dynamodb"),), "DynamoDB table under a CMK"
            )


def _events(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    if operation != "PutEvents":
        raise KeyError(f"events:{operation}")
    for entry in params.get("Entries", []):
        yield Permission("events:PutEvents", bus_arn(entry.get("EventBusName") or "default"))


def _sqs(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    if operation not in {"SendMessage", "SendMessageBatch", "GetQueueUrl"}:
        raise KeyError(f"sqs:{operation}")
    arn = queue_arn(params.get("QueueUrl") or params.get("QueueName", ""))
    yield Permission(f"sqs:{operation}", arn)
    key_arn = spec.queue_keys.get(arn.rsplit(":", 1)[-1])
    if key_arn and operation.startswith("SendMessage"):
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            yield Permission(action, key_arn, (_via("sqs"),), "SQS queue under a CMK")


def _kms(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    key = str(params.get("KeyId", ""))
    yield Permission(f"kms:{operation}", spec.kms_key_arns.get(key, key))


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}"


def _states(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    if operation == "StartExecution":
        yield Permission("states:StartExecution", params["stateMachineArn"])
    elif operation in {"DescribeExecution", "StopExecution"}:
        yield Permission(f"states:{operation}", params["executionArn"])
    else:
        raise KeyError(f"stepfunctions:{operation}")


def _lambda(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    if operation != "Invoke":
        raise KeyError(f"lambda:{operation}")
    yield Permission("lambda:InvokeFunction", params["FunctionName"])


_ATHENA = {"StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution"}


def _athena(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    """Athena authorises a query's actions on its workgroup (the Glue and S3 access a query
    makes with the caller's credentials are recorded as calls of their own)."""
    if operation not in _ATHENA:
        raise KeyError(f"athena:{operation}")
    yield Permission(f"athena:{operation}", _arn("athena", f"workgroup/{params['WorkGroup']}"))


_GLUE = {"GetDatabase", "GetTable", "CreateTable", "DeleteTable", "GetPartitions"}


def _glue(spec: StackSpec, operation: str, params: Mapping[str, Any]) -> Iterator[Permission]:
    """Glue checks the catalog, the database and (for table actions) the table."""
    if operation not in _GLUE:
        raise KeyError(f"glue:{operation}")
    database = params["DatabaseName"]
    resources = [_arn("glue", "catalog"), _arn("glue", f"database/{database}")]
    if operation != "GetDatabase":
        resources.append(_arn("glue", f"table/{database}/{params['Name']}"))
    for resource in resources:
        yield Permission(f"glue:{operation}", resource)


_SERVICES = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "events": _events,
    "sqs": _sqs,
    "kms": _kms,
    "stepfunctions": _states,
    "lambda": _lambda,
    "athena": _athena,
    "glue": _glue,
}


def required_permissions(call: AwsCall, spec: StackSpec) -> list[Permission]:
    """Every IAM authorisation AWS makes for ``call``. Raises ``KeyError`` for a call this
    model does not know yet: add it here rather than let it pass unchecked."""
    try:
        mapper = _SERVICES[call.service]
    except KeyError:
        raise KeyError(f"{call.service}:{call.operation}") from None
    return list(mapper(spec, call.operation, call.params))


# ---------------------------------------------------------------- evaluation


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(operator: str, values: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    op = operator.removesuffix("IfExists")
    for key, expected in values.items():
        if op == "Null":  # "true": the request does not carry the key
            if (key not in context) != (str(expected).lower() == "true"):
                return False
            continue
        if key not in context:
            if if_exists or op.startswith(("StringNot", "ArnNot")):
                continue
            return False
        actual = context[key]
        wanted = [str(v) for v in _listify(expected)]
        if op in {"StringEquals", "ArnEquals"}:
            ok = actual in wanted
        elif op in {"StringLike", "ArnLike"}:
            ok = any(_matches(w, actual) for w in wanted)
        elif op in {"StringNotEquals", "ArnNotEquals"}:
            ok = actual not in wanted
        elif op in {"StringNotLike", "ArnNotLike"}:
            ok = not any(_matches(w, actual) for w in wanted)
        elif op == "Bool":
            ok = actual.lower() in [w.lower() for w in wanted]
        else:
            raise KeyError(f"condition operator {operator}: add it to custseg.local.iam")
        if not ok:
            return False
    return True


def statement_matches(statement: Mapping[str, Any], permission: Permission) -> bool:
    """Whether one policy statement's action, resource and conditions cover ``permission``."""
    if "Action" in statement:
        if not any(_matches(a, permission.action) for a in _listify(statement["Action"])):
            return False
    elif any(_matches(a, permission.action) for a in _listify(statement.get("NotAction", []))):
        return False
    if "NotResource" in statement:
        if any(_matches(r, permission.resource) for r in _listify(statement["NotResource"])):
            return False
    elif not any(
        _matches(r, permission.resource) for r in _listify(statement.get("Resource", "*"))
    ):
        return False
    context = permission.context_map
    return all(
        _condition_holds(op, values, context)
        for op, values in statement.get("Condition", {}).items()
    )


def statements(policies: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for policy in policies:
        yield from _listify(policy.get("Statement", []))


def allows(policies: Iterable[Mapping[str, Any]], permission: Permission) -> bool:
    """AWS's decision for one identity: an explicit Deny wins, else any Allow."""
    allowed = False
    for st in statements(policies):
        if statement_matches(st, permission):
            if st.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def _principal_matches(principal: Any, principal_arn: str) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any(_matches(p, principal_arn) for p in _listify(principal.get("AWS", [])))
    return False


def bucket_policy_denies(spec: StackSpec, permission: Permission, principal_arn: str) -> bool:
    """Whether the bucket policy of the resource's bucket denies ``permission`` to the
    principal (same-account access: an explicit Deny there wins over the role's Allow)."""
    if not permission.resource.startswith("arn:aws:s3:::"):
        return False
    bucket = permission.resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
    context = (
        *permission.context,
        ("aws:PrincipalArn", principal_arn),
        ("aws:SecureTransport", "true"),
    )
    in_context = Permission(permission.action, permission.resource, context)
    return any(
        st.get("Effect") == "Deny"
        and _principal_matches(st.get("Principal"), principal_arn)
        and statement_matches(st, in_context)
        for st in spec.bucket_policies.get(bucket, [])
    )


def _key_policy_effect(
    spec: StackSpec, permission: Permission, principal_arn: str
) -> tuple[bool, bool, bool]:
    """``(denied, granted to the principal, delegated to IAM)`` by the key policy."""
    statements = spec.key_policies.get(permission.resource)
    if statements is None:
        return False, False, True  # a key the template does not make: IAM decides
    context = (*permission.context, ("aws:PrincipalArn", principal_arn))
    in_context = Permission(permission.action, permission.resource, context)
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    denied = granted = delegated = False
    for st in statements:
        if not statement_matches({**st, "Resource": "*"}, in_context):
            continue
        principals = _listify(
            st.get("Principal", {}).get("AWS", []) if st.get("Principal") != "*" else "*"
        )
        if st.get("Effect") == "Deny" and ("*" in principals or principal_arn in principals):
            denied = True
        elif st.get("Effect") == "Allow":
            granted = granted or "*" in principals or principal_arn in principals
            delegated = delegated or root in principals
    return denied, granted, delegated


def kms_allows(
    spec: StackSpec, policies: Iterable[Mapping[str, Any]], permission: Permission, principal: str
) -> bool:
    """KMS's rule: the key policy decides; it may grant the principal itself, or grant the
    account (root) and so let the principal's IAM policies decide. A Deny in either wins."""
    denied, granted, delegated = _key_policy_effect(spec, permission, principal)
    if denied:
        return False
    identity = allows(policies, permission)
    if granted:
        return not any(
            st.get("Effect") == "Deny" and statement_matches(st, permission)
            for st in statements(policies)
        )
    return delegated and identity


def principals(spec: StackSpec) -> dict[str, list[dict[str, Any]]]:
    """Every role the template makes, by its resource's logical id: the functions' and the
    state machines' (SAM names both ``<LogicalId>Role``)."""
    roles = {logical: fn.policies for logical, fn in spec.functions.items()}
    return {**roles, **spec.state_machines}


def role_arn(function: str) -> str:
    """The execution role SAM makes for a function (``<LogicalId>Role``)."""
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{function}Role"


def denied(calls: Iterable[AwsCall], spec: StackSpec) -> list[str]:
    """``function: action on resource`` for every permission a call needs that its
    function's policies do not grant, or that a bucket policy denies."""
    out: set[str] = set()
    roles = principals(spec)
    for call in calls:
        policies = roles[call.function]
        for perm in required_permissions(call, spec):
            why = f" ({perm.reason})" if perm.reason else ""
            if perm.action.startswith("kms:"):
                if not kms_allows(spec, policies, perm, role_arn(call.function)):
                    out.add(f"{call.function}: {perm.action} on {perm.resource}{why}")
            elif not allows(policies, perm):
                out.add(f"{call.function}: {perm.action} on {perm.resource}{why}")
            elif bucket_policy_denies(spec, perm, role_arn(call.function)):
                out.add(
                    f"{call.function}: {perm.action} on {perm.resource} denied by bucket policy"
                )
    return sorted(out)


def unused_grants(
    calls: Iterable[AwsCall], spec: StackSpec, expected: Mapping[str, str] | None = None
) -> list[str]:
    """``function Sid action`` for every granted action that no recorded call needed:
    candidates for removal, so that least privilege is kept. ``expected`` maps patterns
    of such lines (``* Idempotency dynamodb:GetItem``) to why the grant stays anyway."""
    needed: dict[str, list[Permission]] = {}
    for call in calls:
        needed.setdefault(call.function, []).extend(required_permissions(call, spec))
    out = []
    for logical, policies in principals(spec).items():
        for st in statements(policies):
            if st.get("Effect") != "Allow":
                continue
            for action in _listify(st.get("Action", [])):
                single = {**st, "Action": action}
                line = f"{logical} {st.get('Sid', '?')} {action}"
                if any(_matches(pattern, line) for pattern in expected or {}):
                    continue
                if not any(statement_matches(single, p) for p in needed.get(logical, [])):
                    out.append(line)
    return out

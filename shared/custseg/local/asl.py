"""A small Amazon States Language interpreter: runs the template's own state machine
definition in process, its Lambda tasks calling the handlers in process and its Athena
task the local Athena (:mod:`custseg.local.athena`).

Why not moto's: moto's Step Functions backend can execute a definition, but it invokes
Lambda through moto's Lambda backend (a Docker container per function) and answers
Athena with canned results, so neither the in-process handlers nor DuckDB would run.
This interpreter covers exactly the states and fields the definition uses: Task (Lambda
``invoke``, Athena ``startQueryExecution.sync``), Map (inline or distributed, with
``ItemReader`` of a JSON array on S3, ``ItemSelector``, ``ToleratedFailurePercentage``),
Choice (``BooleanEquals``), Pass, Fail, Succeed, ``Retry`` (attempts with exponential
backoff: recorded in ``Interpreter.retries``, not slept), ``Catch``, ``ResultSelector``
and ``ResultPath``. Anything else raises :class:`AslError` naming the state, so the
definition cannot outgrow it silently.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ATHENA_SYNC = "arn:aws:states:::athena:startQueryExecution.sync"
S3_GET = "arn:aws:states:::s3:getObject"


class AslError(RuntimeError):
    """The definition uses something this interpreter does not run."""


@dataclass(frozen=True)
class Retry:
    """One retry the interpreter made: the state, the attempt that follows (2 is the first
    retry), the error retried and the wait the rule gives before it (``IntervalSeconds``
    times ``BackoffRate`` to the number of earlier retries, capped by
    ``MaxDelaySeconds``); with ``JitterStrategy`` ``FULL`` Step Functions waits a random
    time up to that. Recorded, not slept."""

    state: str  # inside a Map item: "<map>[<index>]/<state>"
    attempt: int
    error: str
    interval_seconds: float
    jitter: str


def retry_interval(rule: dict[str, Any], retries_before: int) -> float:
    """The wait before retry number ``retries_before + 1`` under ``rule``."""
    interval = float(rule.get("IntervalSeconds", 1)) * float(rule.get("BackoffRate", 2.0)) ** (
        retries_before
    )
    cap = rule.get("MaxDelaySeconds")
    return min(interval, float(cap)) if cap is not None else interval


class TaskFailed(RuntimeError):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


def get_path(data: Any, path: str, context: dict[str, Any]) -> Any:
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    for name in [p for p in rest.split(".") if p]:
        root = root[name]
    return root


def set_path(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    out = copy.deepcopy(data)
    node = out
    names = path[2:].split(".")
    for name in names[:-1]:
        node = node.setdefault(name, {})
    node[names[-1]] = value
    return out


def resolve(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """A Parameters / ItemSelector / ResultSelector template filled from ``data``."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = get_path(data, value, context)
            else:
                out[key] = resolve(value, data, context)
        return out
    if isinstance(template, list):
        return [resolve(v, data, context) for v in template]
    return template


@dataclass
class Interpreter:
    """``functions``: Lambda ARN (as the definition names it) -> callable(payload);
    ``athena``: runs a query string; ``read_object``: (bucket, key) -> bytes."""

    functions: dict[str, Callable[[dict[str, Any]], Any]]
    athena: Callable[[str], str]
    read_object: Callable[[str, str], bytes]
    # (service, operation, params) of each AWS call the state machine's role makes, for
    # the IAM check (:mod:`custseg.local.iam`); params name resources as the definition does
    record: Callable[[str, str, dict[str, Any]], None] | None = None
    state_machine_arn: str = ""
    transitions: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)  # (state, outcome)
    retries: list[Retry] = field(default_factory=list)
    _scope: list[str] = field(default_factory=list)  # the Map items being run

    def run(self, definition: dict[str, Any], data: Any) -> Any:
        states, name = definition["States"], definition["StartAt"]
        context: dict[str, Any] = {}
        while True:
            self.transitions += 1
            state = states[name]
            kind = state["Type"]
            try:
                if kind == "Succeed":
                    return data
                if kind == "Fail":
                    raise TaskFailed(state.get("Error", "States.Fail"), state.get("Cause", ""))
                if kind == "Pass":
                    data = set_path(data, state.get("ResultPath", "$"), state.get("Result", data))
                elif kind == "Choice":
                    name = self._choose(state, data)
                    continue
                elif kind == "Task":
                    data = self._with_result(
                        state, data, self._retrying(name, state, data, context)
                    )
                elif kind == "Map":
                    data = self._with_result(state, data, self._map(name, state, data))
                else:
                    raise AslError(f"state {name}: type {kind} is not supported locally")
            except TaskFailed as exc:
                handler = next(
                    (c for c in state.get("Catch", []) if _matches(c["ErrorEquals"], exc.error)),
                    None,
                )
                self.history.append((name, f"failed: {exc.error}"))
                if handler is None:
                    raise
                data = set_path(
                    data, handler.get("ResultPath", "$"), {"Error": exc.error, "Cause": exc.cause}
                )
                name = handler["Next"]
                continue
            self.history.append((name, "succeeded"))
            if state.get("End"):
                return data
            name = state["Next"]

    def _choose(self, state: dict[str, Any], data: Any) -> str:
        for rule in state["Choices"]:
            if "BooleanEquals" not in rule:
                raise AslError(f"choice rule {sorted(rule)}: only BooleanEquals is supported")
            if get_path(data, rule["Variable"], {}) is rule["BooleanEquals"]:
                return str(rule["Next"])
        return str(state["Default"])

    def _with_result(self, state: dict[str, Any], data: Any, result: Any) -> Any:
        if "ResultSelector" in state:
            result = resolve(state["ResultSelector"], result, {})
        return set_path(data, state.get("ResultPath", "$"), result)

    def _retrying(
        self, name: str, state: dict[str, Any], data: Any, context: dict[str, Any]
    ) -> Any:
        failures: dict[int, int] = {}
        while True:
            try:
                return self._task(name, state, data, context)
            except TaskFailed as exc:
                rules = state.get("Retry", [])
                index = next(
                    (i for i, r in enumerate(rules) if _matches(r["ErrorEquals"], exc.error)), None
                )
                if index is None or failures.get(index, 0) >= int(
                    rules[index].get("MaxAttempts", 3)
                ):
                    raise
                rule = rules[index]
                self.retries.append(
                    Retry(
                        "/".join([*self._scope, name]),
                        failures.get(index, 0) + 2,
                        exc.error,
                        retry_interval(rule, failures.get(index, 0)),
                        str(rule.get("JitterStrategy", "NONE")),
                    )
                )
                failures[index] = failures.get(index, 0) + 1
                self.transitions += 1
                self.history.append((name, f"retry {failures[index]}: {exc.error}"))

    def _task(self, name: str, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        params = resolve(state.get("Parameters", {}), data, context)
        resource = state["Resource"]
        try:
            if resource == LAMBDA_INVOKE:
                self._record("lambda", "Invoke", {"FunctionName": params["FunctionName"]})
                function = self.functions[params["FunctionName"]]
                return {"Payload": function(params["Payload"]), "StatusCode": 200}
            if resource == ATHENA_SYNC:
                workgroup = {"WorkGroup": params.get("WorkGroup", "primary")}
                self._record("athena", "StartQueryExecution", workgroup)
                qid = self.athena(params["QueryString"])
                self._record("athena", "GetQueryExecution", workgroup)  # .sync polls it
                return {"QueryExecution": {"QueryExecutionId": qid}}
        except TaskFailed:
            raise
        except Exception as exc:  # a Lambda error or a failed query
            error = "Lambda.Unknown" if resource == LAMBDA_INVOKE else "States.TaskFailed"
            if resource == LAMBDA_INVOKE:
                error = type(exc).__name__
            raise TaskFailed(error, str(exc)) from exc
        raise AslError(f"state {name}: resource {resource} is not supported locally")

    def _items(self, name: str, state: dict[str, Any], data: Any) -> list[Any]:
        reader = state.get("ItemReader")
        if reader is None:
            return list(get_path(data, state.get("ItemsPath", "$"), {}))
        if (
            reader["Resource"] != S3_GET
            or reader.get("ReaderConfig", {}).get("InputType") != "JSON"
        ):
            raise AslError(f"state {name}: only a JSON ItemReader on s3:getObject is supported")
        params = resolve(reader["Parameters"], data, {})
        self._record("s3", "GetObject", {"Bucket": params["Bucket"], "Key": params["Key"]})
        return list(json.loads(self.read_object(params["Bucket"], params["Key"])))

    def _record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.record is not None:
            self.record(service, operation, params)

    def _record_child(self, name: str, index: int) -> None:
        """A Distributed Map runs each item as a child execution of this state machine."""
        if self.record is None or not self.state_machine_arn:
            return
        self._record("stepfunctions", "StartExecution", {"stateMachineArn": self.state_machine_arn})
        execution = self.state_machine_arn.replace(":stateMachine:", ":execution:")
        arn = f"{execution}/{name}:{index}"
        self._record("stepfunctions", "DescribeExecution", {"executionArn": arn})

    def _map(self, name: str, state: dict[str, Any], data: Any) -> list[Any]:
        items = self._items(name, state, data)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor is None:
            raise AslError(f"state {name}: a Map needs an ItemProcessor")
        tolerated = float(state.get("ToleratedFailurePercentage", 0))
        results: list[Any] = []
        failed: list[TaskFailed] = []
        distributed = processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
        for index, item in enumerate(items):
            if distributed:
                self._record_child(name, index)
            context = {"Map": {"Item": {"Index": index, "Value": item}}}
            selected = (
                resolve(state["ItemSelector"], data, context) if "ItemSelector" in state else item
            )
            self._scope.append(f"{name}[{index}]")
            try:
                results.append(self.run(processor, selected))
            except TaskFailed as exc:
                failed.append(exc)
                results.append(None)
            finally:
                self._scope.pop()
        if failed and 100.0 * len(failed) / max(1, len(items)) > tolerated:
            raise TaskFailed(
                "States.ExceedToleratedFailureThreshold",
                f"{name}: {len(failed)} of {len(items)} items failed ({failed[0].cause[:200]})",
            )
        return results


def _matches(errors: list[str], error: str) -> bool:
    return "States.ALL" in errors or error in errors

"""The fan-out state machine on the local stack: the definition the template deploys
(``infra/fanout.asl.json``), run by :mod:`custseg.local.asl` with the fan-out handler in
process and Athena on DuckDB (:mod:`custseg.local.athena`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custseg.local.asl import Interpreter, TaskFailed
from custseg.local.athena import LocalAthena

FUNCTION_ARN = "${FanoutFunctionArn}"


def definition_path() -> Path:
    """``infra/fanout.asl.json`` of the source checkout; else the copy an installed wheel
    carries (``custseg/local/fanout.asl.json``, a link to the checkout's file in the
    source tree), as for the template (:func:`custseg.local.template.default_template_path`)."""
    checkout = Path(__file__).resolve().parents[3] / "infra" / "fanout.asl.json"
    return checkout if checkout.exists() else Path(__file__).with_name("fanout.asl.json")


def definition() -> dict[str, Any]:
    return dict(json.loads(definition_path().read_text(encoding="utf-8")))


def run_fanout_executions(
    stack: Any,
    *,
    create: bool = False,
    state_machine: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """With ``create``: make the state machine in the emulated Step Functions and return
    its ARN (set as ``FANOUT_STATE_MACHINE_ARN``). Else run every execution started on
    it that no earlier call ran (then deliver what follows) and return their outcomes:
    ``status``, ``output`` or ``error`` and ``cause``, the execution's ``name`` and the
    ``retries`` its tasks made (:class:`custseg.local.asl.Retry`)."""
    sfn = stack.client("stepfunctions")
    if create:
        arn = sfn.create_state_machine(
            name="custseg-local-fanout",
            definition=json.dumps(definition()),
            roleArn="arn:aws:iam::123456789012:role/custseg-local-fanout",
        )["stateMachineArn"]
        os.environ["FANOUT_STATE_MACHINE_ARN"] = arn
        return arn
    stack.handler("FanoutFunction")  # imports the handler module as the stack does
    from functions.fanout import app

    s3 = stack.client("s3")
    record = _recorder(stack)
    env = stack.spec.functions["FanoutFunction"].environment
    athena = LocalAthena(
        s3,
        record=record,
        workgroup=env["ATHENA_WORKGROUP"],
        database=env["GLUE_DATABASE"],
        staging=env["ATHENA_STAGING"],
    )
    app.ENGINE = athena
    functions = {FUNCTION_ARN: _as_function(stack, app.run_step)}
    done: set[str] = stack.__dict__.setdefault("_fanout_executions_run", set())
    outcomes = []
    for execution in sfn.list_executions(stateMachineArn=state_machine)["executions"]:
        arn = execution["executionArn"]
        if arn in done:  # run by an earlier call (moto keeps every execution RUNNING)
            continue
        done.add(arn)
        data = json.loads(sfn.describe_execution(executionArn=arn)["input"])
        if echo is not None:
            echo(f"  fan-out state machine: {data['job']['key']}")
        interpreter = Interpreter(
            functions=functions,
            athena=athena.run,
            read_object=lambda b, k: s3.get_object(Bucket=b, Key=k)["Body"].read(),
            record=record,
            state_machine_arn=str(state_machine or ""),
        )
        try:
            result = interpreter.run(definition(), data)
            outcome = {"status": "SUCCEEDED", "output": result}
        except TaskFailed as exc:
            outcome = {"status": "FAILED", "error": exc.error, "cause": exc.cause}
        outcomes.append({**outcome, "name": execution["name"], "retries": interpreter.retries})
        stack.drain()
    return outcomes


STATE_MACHINE = "FanoutStateMachine"


def _as_function(stack: Any, step: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """``step`` run as the fan-out function: its AWS calls are recorded as that role's."""

    def invoke(payload: dict[str, Any]) -> Any:
        stack._current = "FanoutFunction"
        try:
            return step(payload)
        finally:
            stack._current = None

    return invoke


def _recorder(stack: Any) -> Callable[[str, str, dict[str, Any]], None]:
    """Record a call of the state machine's role (or, inside a task, of the fan-out
    function's) in ``stack.calls``, the definition's placeholders resolved."""
    from custseg.local.iam import AwsCall
    from custseg.local.template import Resolver, load_template

    resolver = Resolver(load_template(), stack.spec.parameters)
    names = {
        FUNCTION_ARN: resolver.arn_of("FanoutFunction"),
        "${AthenaWorkGroup}": stack.spec.functions["FanoutFunction"].environment[
            "ATHENA_WORKGROUP"
        ],
    }

    def record(service: str, operation: str, params: dict[str, Any]) -> None:
        resolved = {k: names.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
        principal = stack._current or STATE_MACHINE
        stack.calls.append(AwsCall(principal, operation, resolved, service))

    return record

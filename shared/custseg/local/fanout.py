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

DEFINITION = Path(__file__).resolve().parents[3] / "infra" / "fanout.asl.json"
FUNCTION_ARN = "${FanoutFunctionArn}"


def definition() -> dict[str, Any]:
    return dict(json.loads(DEFINITION.read_text(encoding="utf-8")))


def run_fanout_executions(
    stack: Any,
    *,
    create: bool = False,
    state_machine: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """With ``create``: make the state machine in the emulated Step Functions and return
    its ARN (set as ``FANOUT_STATE_MACHINE_ARN``). Else run every execution started on
    it (then deliver what follows) and return their outcomes."""
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
    athena = LocalAthena(s3)
    app.ENGINE = athena
    interpreter = Interpreter(
        functions={FUNCTION_ARN: app.run_step},
        athena=athena.run,
        read_object=lambda b, k: s3.get_object(Bucket=b, Key=k)["Body"].read(),
    )
    outcomes = []
    for execution in sfn.list_executions(stateMachineArn=state_machine)["executions"]:
        data = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
        if echo is not None:
            echo(f"  fan-out state machine: {data['job']['key']}")
        try:
            result = interpreter.run(definition(), data)
            outcomes.append({"status": "SUCCEEDED", "output": result})
        except TaskFailed as exc:
            outcomes.append({"status": "FAILED", "error": exc.error, "cause": exc.cause})
        stack.drain()
    return outcomes

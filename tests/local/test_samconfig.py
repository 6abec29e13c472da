"""Every environment of samconfig.toml builds, validates and deploys the stack's template
with parameters the template declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from custseg.local.template import load_template

REPO = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
ENVIRONMENTS = [name for name, value in CONFIG.items() if isinstance(value, dict)]


def test_every_environment_builds_validates_and_deploys_the_template() -> None:
    assert set(ENVIRONMENTS) >= {"default", "prod"}
    declared = set(load_template()["Parameters"])
    for env in ENVIRONMENTS:
        commands = CONFIG[env]
        for command in ("build", "validate"):
            template = commands[command]["parameters"]["template_file"]
            assert (REPO / template).exists(), (env, command)
        deploy = commands["deploy"]["parameters"]
        stack = commands.get("global", {}).get("parameters", {}).get("stack_name")
        assert stack or deploy.get("stack_name"), env
        assert "region" in deploy, env
        overrides = dict(re.findall(r'(\w+)="([^"]*)"', deploy["parameter_overrides"]))
        assert set(overrides) <= declared, (env, set(overrides) - declared)

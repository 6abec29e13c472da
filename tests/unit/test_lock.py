"""The tests run against the library versions the function image installs."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_is_pinned() -> None:
    pins = _pins()
    requires = metadata.requires("custseg") or []
    runtime = [r for r in requires if "extra ==" not in r]
    for requirement in runtime:
        name = _norm(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in pins, f"{name} is a runtime dependency missing from requirements.lock"


def test_the_installed_versions_are_the_pinned_ones() -> None:
    wrong = {}
    for name, version in _pins().items():
        installed = metadata.version(name)
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed != requirements.lock (run make venv): {wrong}"


def test_the_declared_lower_bounds_are_the_tested_versions() -> None:
    """`name>=X` in pyproject.toml: the pinned version is X or a patch release of it, so
    the oldest version a user may install is one the tests ran against."""
    pins = _pins()
    for requirement in metadata.requires("custseg") or []:
        if "extra ==" in requirement:
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)>=([0-9.]+)", requirement.replace(" ", ""))
        assert match, f"{requirement}: no lower bound"
        name, bound = _norm(match.group(1)), match.group(2)
        pinned = pins[name].split(".")
        assert pinned[: len(bound.split("."))] == bound.split("."), (name, bound, pins[name])

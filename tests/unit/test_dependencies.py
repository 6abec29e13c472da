"""The stages depend on each other in one direction only (read from the source, function-
level imports included): the ingest knows nothing of what comes after it, the model nothing
of the scoring or the report, and the functional core nothing of AWS or the local stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "custseg"
ADAPTERS = ("custseg.aws", "custseg.local", "custseg.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module the file at ``path`` imports (see :func:`imports_in`)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: list[str]) -> set[str]:
    """Every module ``source`` imports, anywhere in it (function bodies included;
    ``from a import b`` gives ``a`` and ``a.b``, as ``b`` may be a module); relative
    imports resolved against ``package`` (the importing module's package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = {module_name(p): imported(p) for p in sorted(PACKAGE.rglob("*.py"))}

RULES = [
    (
        ("custseg.ingest",),
        ("custseg.features", "custseg.model", "custseg.scoring", "custseg.report"),
    ),
    (("custseg.model",), ("custseg.scoring", "custseg.report")),
]


def violations(importer: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if under(module, importer)
        for name in names
        if under(name, forbidden)
    )


@pytest.mark.parametrize(("importer", "forbidden"), RULES)
def test_stages_import_only_earlier_stages(
    importer: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    assert violations(importer, forbidden) == []


def test_the_core_imports_no_aws_and_no_adapter() -> None:
    core = [m for m in MODULES if not under(m, ADAPTERS)]
    assert "custseg.ingest.pipeline" in core and "custseg.aws.runtime" not in core
    found = sorted(
        f"{module} imports {name}"
        for module in core
        for name in MODULES[module]
        if under(name, ("boto3", "botocore", "custseg.aws", "custseg.local"))
    )
    assert found == []


def test_the_reader_sees_function_level_and_relative_imports() -> None:
    source = (
        "import numpy\n"
        "def f():\n"
        "    import boto3\n"
        "    from custseg.scoring import score\n"
        "    from ..report import html\n"
        "    from . import labels\n"
    )
    found = imports_in(source, ["custseg", "model"])
    assert {"boto3", "custseg.scoring.score", "custseg.report.html"} <= found
    assert "custseg.model.labels" in found
    assert violations(("custseg.model",), ("custseg.report",)) == []
    assert under("custseg.report.html", ("custseg.report",))
    assert not under("custseg.reporting", ("custseg.report",))

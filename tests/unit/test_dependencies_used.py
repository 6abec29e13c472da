"""Every runtime dependency is imported by the code (nothing ships in the function image
that nothing uses), and the image runs the Python the tests run."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Needed at runtime without an import of ours: Powertools' Tracer imports it.
IMPORTED_BY_A_DEPENDENCY = {"aws-xray-sdk"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for root in ("shared", "functions"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_imported() -> None:
    requires = metadata.requires("custseg") or []
    runtime = {
        _norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r
    }
    modules = _imported_modules()
    providers = metadata.packages_distributions()
    used = {_norm(d) for m in modules for d in providers.get(m, [])}
    unused = runtime - used - IMPORTED_BY_A_DEPENDENCY
    assert not unused, f"declared in pyproject.toml but imported nowhere: {sorted(unused)}"


def test_the_function_image_runs_the_tests_python() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    (image,) = re.findall(r"^FROM public\.ecr\.aws/lambda/python:(\d+\.\d+)", dockerfile, re.M)
    assert image == f"{sys.version_info.major}.{sys.version_info.minor}"

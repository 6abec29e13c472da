"""The package works outside a source checkout: a wheel built from the repository, put on
a path of its own, runs `custseg run` and `custseg demo` from another directory (the
template, the handlers and the demo's data generator come from the wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "shared", "functions", "infra"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of a copy of the sources (the build writes nothing into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
        check=True,
    )
    (built,) = out.glob("custseg-*.whl")
    return built


def test_the_wheel_carries_the_template_and_the_handlers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "custseg/local/template.yaml" in names
    assert {f"functions/{f}/app.py" for f in ("ingest", "score", "train", "rescore")} <= names
    template = zipfile.ZipFile(wheel).read("custseg/local/template.yaml")
    assert template == (REPO / "infra" / "template.yaml").read_bytes()
    assert "functions/fanout/app.py" in names
    definition = zipfile.ZipFile(wheel).read("custseg/local/fanout.asl.json")
    assert definition == (REPO / "infra" / "fanout.asl.json").read_bytes()


def _installed(wheel: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(site, work, env): the wheel installed on a path of its own, an empty working
    directory outside the checkout, and an environment that imports from that path."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True,
    )  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CUSTSEG_TEMPLATE", None)
    return site, work, env


@pytest.mark.slow
def test_an_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site, work, env = _installed(wheel, tmp_path)
    csv = shutil.copy(REPO / "tests" / "fixtures" / "mall_customers.csv", work / "mall.csv")
    where = subprocess.run(
        [sys.executable, "-c", "import custseg, functions; print(custseg.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(site))
    run = subprocess.run(
        [sys.executable, "-m", "custseg.cli", "run", str(csv), "--out", str(work / "out")],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "verdict:" in run.stdout
    assert list((work / "out").rglob("report.html"))
    demo = subprocess.run(
        [sys.executable, "-m", "custseg.cli", "demo", "--out", str(work / "demo")],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert demo.stdout.count("committed") >= 2 and list((work / "demo").rglob("report.html"))


@pytest.mark.slow
def test_an_installed_wheel_runs_the_fanout(wheel: Path, tmp_path: Path) -> None:
    """``custseg run --fanout`` from an installed wheel: the state machine's definition
    and the fan-out handler come from the package."""
    _, work, env = _installed(wheel, tmp_path)
    lines = (REPO / "tests" / "fixtures" / "online_retail_invoices.csv").read_text(encoding="utf-8")
    orders = work / "orders.csv"
    orders.write_text("".join(lines.splitlines(keepends=True)[:3001]), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "custseg.cli", "run", str(orders), "--fanout", "3",
         "--out", str(work / "out")],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "fan-out state machine" in run.stdout
    assert list((work / "out").rglob("assignments.csv"))

"""README.md and docs/ stay usable: every relative link reaches a file (and a heading,
when it names one), every path a command example names exists, and every `custseg`
command line in a code block is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from custseg.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_anchor(m) for m in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def _links() -> list[tuple[Path, str]]:
    out = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        out += [(page, target) for target in LINK.findall(text)]
    return out


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda v: str(v)[-40:])
def test_relative_links_resolve(page: Path, target: str) -> None:
    if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
        return
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: link to {target}: no such file"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{page.name}: link to {target}: no such heading"


def _commands() -> list[tuple[Path, str]]:
    """Every `custseg ...` line of the pages' code blocks (continuations joined)."""
    out = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if re.match(r"(\.venv/bin/)?custseg ", line):
                    out.append((page, line))
    return out


def test_the_pages_show_commands() -> None:
    assert len(_commands()) >= 5


@pytest.mark.parametrize(("page", "line"), _commands(), ids=lambda v: str(v)[-50:])
def test_cli_examples_parse(page: Path, line: str) -> None:
    argv = shlex.split(line)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{page.name}: `{line}` is not a valid custseg command ({exc})")
    for arg in argv:
        if arg.startswith(("tests/", "events/", "scripts/")):
            assert (REPO / arg).exists(), f"{page.name}: `{line}` names {arg}, which is missing"

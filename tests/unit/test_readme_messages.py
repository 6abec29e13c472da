"""Every message the Troubleshooting table (docs/troubleshooting.md) quotes is one the code
prints.

The convention, for each `quoted` message in the table's first column:

- ``<name>`` stands for a value filled in when the message is made (a file, a number, a
  column), written ``'<name>'`` where the message shows it quoted;
- ``...`` stands for text left out;
- everything else is the message's own text. Messages are often composed of several
  strings of the code (a prefix, a reason, a value), so the text between placeholders must
  be made of pieces that the code's strings hold: each piece at least 10 characters long
  and found in a string of ``shared/custseg`` or ``functions``, or the whole of one literal
  run of a string (the text of an f-string between its replacement fields).
"""

from __future__ import annotations

import ast
import re
from functools import cache, lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TROUBLESHOOTING = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
FIELD = "\x00"  # an f-string's replacement field in the code's strings
PLACEHOLDER = re.compile(r"'?<[^<>`]+>'?|\.\.\.")
MIN_PIECE = 10


def troubleshooting_messages() -> list[str]:
    """The `quoted` texts of the first column of the Troubleshooting table."""
    messages = []
    for line in TROUBLESHOOTING.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| ") or set(cells[0]) <= set("|- "):
            continue
        messages += re.findall(r"`([^`]+)`", cells[0])
    return messages


@lru_cache(maxsize=1)
def code_strings() -> tuple[str, frozenset[str]]:
    """Every string of the code (f-string fields as :data:`FIELD`), joined, and the set of
    their literal runs (stripped)."""
    texts: list[str] = []
    for path in [*(REPO / "shared" / "custseg").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                texts.append(
                    "".join(v.value if isinstance(v, ast.Constant) else FIELD for v in node.values)
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    runs = {run.strip() for text in texts for run in text.split(FIELD)} - {""}
    return FIELD.join(texts), frozenset(runs)


def composed_of_code(fragment: str) -> bool:
    """True when ``fragment`` is a sequence of pieces the code's strings hold (see the
    module docstring)."""
    corpus, runs = code_strings()

    @cache
    def from_(i: int) -> bool:
        if not fragment[i:].strip():
            return True
        return any(
            from_(j)
            for j in range(len(fragment), i, -1)
            if (j - i >= MIN_PIECE and fragment[i:j] in corpus) or fragment[i:j].strip() in runs
        )

    return from_(0)


def unmatched(message: str) -> list[str]:
    return [f for f in PLACEHOLDER.split(message) if not composed_of_code(f)]


def test_the_table_quotes_messages() -> None:
    assert len(troubleshooting_messages()) >= 15


@pytest.mark.parametrize("message", troubleshooting_messages())
def test_a_quoted_message_is_printed_by_the_code(message: str) -> None:
    assert unmatched(message) == []


def test_the_check_catches_a_message_the_code_does_not_print() -> None:
    assert unmatched("REJECTED <file>: the file is empty (0 bytes)") == []
    assert unmatched("REJECTED <file>: the file is entirely empty") == [
        ": the file is entirely empty"
    ]
    assert unmatched("model file failed its SHA-256 check") != []

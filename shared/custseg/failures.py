"""What a failure's log line and outcome may say about an error: its type and where it
was raised, never its message (a parser's or a converter's message may quote the row
values it stopped at, and rows never reach a log)."""

from __future__ import annotations

import traceback
from pathlib import PurePath

# The status of an outcome whose work raised (the rescore's per-dataset outcomes).
FAILED = "failed"


def error_site(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of this project's code that the
    error passed through (of the innermost frame when none did)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    own = [f for f in frames if _own_path(f.filename) is not None]
    frame = own[-1] if own else frames[-1]
    path = _own_path(frame.filename) or PurePath(frame.filename).name
    return f"{path}:{frame.lineno} in {frame.name}"


def describe_error(exc: BaseException) -> str:
    """``ArrowInvalid at custseg/dataset/clean_data.py:42 in read_clean``: type and site only."""
    return f"{type(exc).__name__} at {error_site(exc)}"


def _own_path(filename: str) -> str | None:
    """The path from the project's folders on (``custseg/...`` for the package, installed or
    not; ``functions/<name>/app.py`` for a handler), or None for any other file."""
    parts = PurePath(filename).parts
    if "custseg" in parts:
        start = len(parts) - 1 - parts[::-1].index("custseg")
        return "/".join(parts[start:])
    if len(parts) >= 3 and parts[-3] == "functions" and parts[-1] == "app.py":
        return "/".join(parts[-3:])
    return None

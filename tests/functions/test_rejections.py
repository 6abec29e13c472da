"""Rejections name only files that exist, and dataset folders never merge silently."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_FILE_NAME = re.compile(r"[\w./-]+\.(?:csv|json|txt)\b")


def _keys(stack: Any, prefix: str) -> set[str]:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.data_bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in listed}


def _get(stack: Any, key: str) -> bytes:
    body: bytes = stack.client("s3").get_object(Bucket=stack.data_bucket, Key=key)["Body"].read()
    return body


def _named_keys(stack: Any, prefix: str, source: str) -> set[str]:
    """Every key a rejection run names: its manifest's files and original copy, and any
    file name its error report mentions (relative to the run prefix)."""
    manifest = json.loads(_get(stack, prefix + "_manifest.json"))
    named = {f["key"] for f in manifest["files"]}
    if manifest.get("original_copy"):
        named.add(manifest["original_copy"])
    text = _get(stack, prefix + "error.txt").decode() + _get(stack, prefix + "error.json").decode()
    for name in _FILE_NAME.findall(text):
        if name == source or name.endswith(Path(source).name):
            continue  # the upload itself, named as the report's source
        named.add(name if "/" in name else prefix + name)
    return named


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("all_bad.csv", "customer_id,age\n1,abc\n2,xyz\n"),  # every row rejected
        ("header_only.csv", "customer_id,age\n"),
        ("empty.csv", ""),
    ],
)
def test_every_key_a_whole_file_rejection_names_exists(
    stack: Any, tmp_path: Path, name: str, body: str
) -> None:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    source = f"incoming/shop/{name}"
    stack.upload(path, source)
    invocations = stack.drain()
    outcome = invocations[0].result["results"][0]
    assert outcome["status"] == "rejected"
    prefix = outcome["rejected_prefix"]
    named = _named_keys(stack, prefix, source)
    written = _keys(stack, prefix)
    assert named, "a rejection names at least its report"
    assert named <= written, f"named but not written: {sorted(named - written)}"
    if name == "all_bad.csv":  # the report says "see rejected_rows.csv": it is there
        assert prefix + "rejected_rows.csv" in written
        rows = _get(stack, prefix + "rejected_rows.csv").decode().splitlines()
        assert rows[0] == "row,reasons,customer_id,age" and len(rows) == 3

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
        ("all_bad.csv", "customer_id,age\n1,150\n2,-4\n"),  # every row rejected (ages out of range)
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


def _outcome(stack: Any, path: Path, key: str) -> dict[str, Any]:
    stack.upload(path, key)
    invocations = stack.drain()
    result: dict[str, Any] = invocations[0].result["results"][0]
    return result


def test_a_second_folder_spelling_of_a_dataset_is_rejected_naming_the_first(
    stack: Any, tmp_path: Path
) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_text("customer_id,age\n", encoding="utf-8")
    first = _outcome(stack, header_only, "incoming/My Shop/a.csv")
    assert first["dataset"] == "my_shop" and "header" in first["message"]
    record = json.loads(_get(stack, "clean/my_shop/folder.json"))
    assert record["folder"] == "My Shop"

    second = _outcome(stack, header_only, "incoming/my_shop/b.csv")
    assert second["status"] == "rejected"
    assert second["message"] == (
        "incoming/my_shop/b.csv: the folder incoming/my_shop/ folds to dataset 'my_shop', "
        "which already receives uploads from incoming/My Shop/. Upload to incoming/My Shop/ "
        "to add to that dataset, or use a folder name that does not fold to 'my_shop' for a "
        "new one (names are lower-cased and runs of other characters than a-z, 0-9, _ and - "
        "become _)."
    )
    report = json.loads(_get(stack, second["rejected_prefix"] + "error.json"))
    assert report["file_errors"] == ["dataset_folder_conflict"]
    assert second["rejected_prefix"] + "original/b.csv" in _keys(stack, "rejected/my_shop/")

    # the owning spelling is read as usual (rejected here for its own content only)
    third = _outcome(stack, header_only, "incoming/My Shop/c.csv")
    assert "folds to dataset" not in third["message"]


def test_a_dataset_with_clean_runs_before_the_record_is_owned_by_their_folder(
    stack: Any, tmp_path: Path
) -> None:
    s3 = stack.client("s3")
    manifest = {"kind": "clean", "source": {"key": "incoming/Shop/old.csv"}}
    s3.put_object(
        Bucket=stack.data_bucket, Key="clean/shop/r0/_manifest.json", Body=json.dumps(manifest)
    )  # no notification reaches scoring for this hand-made run: drained below
    pointer = {"dataset": "shop", "run_id": "r0", "manifest_key": "clean/shop/r0/_manifest.json"}
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/latest.json", Body=json.dumps(pointer))
    stack.drain()
    path = tmp_path / "h.csv"
    path.write_text("customer_id,age\n", encoding="utf-8")
    outcome = _outcome(stack, path, "incoming/shop/new.csv")
    assert "already receives uploads from incoming/Shop/" in outcome["message"]
    assert json.loads(_get(stack, "clean/shop/folder.json"))["folder"] == "Shop"


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("31/12/2024", "the as-of metadata '31/12/2024' is not a date: use YYYY-MM-DD"),
        ("2999-01-01", "the as-of metadata 2999-01-01 is not between 1900-01-01 and "),
    ],
)
def test_an_as_of_that_cannot_be_right_rejects_the_upload(
    stack: Any, tmp_path: Path, as_of: str, message: str
) -> None:
    path = tmp_path / "c.csv"
    path.write_text("customer_id,age\n1,30\n", encoding="utf-8")
    stack.upload(path, "incoming/shop/c.csv", metadata={"as-of": as_of})
    invocations = stack.drain()
    assert [(i.function, i.error) for i in invocations] == [("IngestFunction", None)]
    outcome = invocations[0].result["results"][0]
    assert outcome["status"] == "rejected"
    assert outcome["message"].startswith(f"incoming/shop/c.csv: {message}")
    report = json.loads(_get(stack, outcome["rejected_prefix"] + "error.json"))
    assert report["file_errors"] == ["bad_as_of"]

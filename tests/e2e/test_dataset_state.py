"""A dataset is all its uploads: parts of an export make one run like the whole file,
``replace`` starts over, and the rescore and pointers cover every customer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from support import (
    MALL,
    assert_consistent,
    assignments,
    get_json,
    manifests,
    seed_models,
    upload_in_a_new_second,
)

DATASET = "mall"


def _split(tmp_path: Path, parts: int) -> list[Path]:
    header, *rows = MALL.read_text(encoding="utf-8").splitlines(keepends=True)
    size = -(-len(rows) // parts)
    out = []
    for i in range(parts):
        path = tmp_path / f"part-{i}.csv"
        path.write_text(header + "".join(rows[i * size : (i + 1) * size]), encoding="utf-8")
        out.append(path)
    return out


def _latest_assignments(stack: Any) -> tuple[dict[str, Any], Any]:
    latest = get_json(stack, stack.results_bucket, f"segments/{DATASET}/latest.json")
    assert latest is not None
    frame = assignments(stack, latest["prefix"])
    return latest, frame.set_index("customer_id").sort_index()


def test_a_split_export_scores_like_the_whole_file(
    stack: Any, champions: dict[str, bytes], tmp_path: Path
) -> None:
    seed_models(stack, champions, DATASET)
    upload_in_a_new_second(stack, MALL, f"incoming/{DATASET}/whole.csv")
    assert [i.error for i in stack.drain() if i.error] == []
    _, whole = _latest_assignments(stack)
    assert len(whole) == 200

    first, *rest = _split(tmp_path, 3)
    # the first part replaces the whole file's upload; the others are added to it
    upload_in_a_new_second(
        stack, first, f"incoming/{DATASET}/part-0.csv", metadata={"mode": "replace"}
    )
    assert [i.error for i in stack.drain() if i.error] == []
    runs_before = set(manifests(stack, stack.results_bucket, f"segments/{DATASET}/run_date="))
    upload_in_a_new_second(stack, rest[0], f"incoming/{DATASET}/part-1.csv")
    stack.upload(rest[1], f"incoming/{DATASET}/part-2.csv")
    done = stack.drain()
    assert [i.error for i in done if i.error] == []
    outcomes = [r for i in done if i.function == "ScoreFunction" for r in i.result["results"]]
    assert sorted(o["status"] for o in outcomes) == ["committed", "superseded"]
    runs = set(manifests(stack, stack.results_bucket, f"segments/{DATASET}/run_date="))
    assert len(runs - runs_before) == 1  # two parts arriving together: one run

    latest, split = _latest_assignments(stack)
    assert split.index.equals(whole.index)
    assert split["segment_id"].equals(whole["segment_id"])
    manifest = get_json(stack, stack.results_bucket, latest["manifest_key"]) or {}
    parts = manifest["input"]["parts"]
    assert [p["source_key"] for p in parts] == [
        f"incoming/{DATASET}/part-{i}.csv" for i in range(3)
    ]
    assert all(f["sha256"] for p in parts for f in p["files"])
    assert_consistent(stack, DATASET)
    current = assignments(stack, f"segments/{DATASET}/current/")
    assert len(current) == 200

    # the schedule rescores the whole state, not the newest part
    stack.tick(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    _, rescored = _latest_assignments(stack)
    assert len(rescored) == 200


def test_a_bad_mode_is_rejected_naming_the_choices(stack: Any, champions: dict[str, bytes]) -> None:
    seed_models(stack, champions, DATASET)
    stack.upload(MALL, f"incoming/{DATASET}/x.csv", metadata={"mode": "merge"})
    (inv,) = [i for i in stack.drain() if i.function == "IngestFunction"]
    (result,) = inv.result["results"]
    assert result["status"] == "rejected"
    assert "mode metadata 'merge' is not one of append, replace" in result["message"]
    assert get_json(stack, stack.data_bucket, f"clean/{DATASET}/_state.json") is None

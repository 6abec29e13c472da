"""50 uploads processed concurrently: several datasets, many files of one dataset, and a
new dataset whose first files all ask for its first model at once.

The local runner delivers each round of events to a pool of threads (Lambda runs
concurrent invocations side by side). The emulated services serve one request at a time
(see ``custseg.local.stack``: moto's conditional writes are not atomic otherwise), so
what runs concurrently is everything the functions do between their requests.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from support import (
    assert_consistent,
    assignments,
    dead_letters,
    get_json,
    mall_like_csv,
    manifests,
    parallel_drain,
    seed_models,
)

from custseg.aws.runs import order_key

# dataset -> number of files; "fresh" has no model yet, the others have a champion.
FILES = {"north": 26, "south": 20, "fresh": 4}


def _inputs(tmp_path: Path) -> dict[str, list[int]]:
    """Write the files; upload key -> the customer ids in it (disjoint across files)."""
    out: dict[str, list[int]] = {}
    for d, (dataset, count) in enumerate(FILES.items()):
        for j in range(count):
            start = (d + 1) * 1_000_000 + j * 1_000
            ids = range(start, start + 60 + (j * 37) % 90)  # 60-149 customers per file
            mall_like_csv(tmp_path / f"{dataset}-{j:02d}.csv", ids, seed=100 * d + j)
            out[f"incoming/{dataset}/part-{j:02d}.csv"] = list(ids)
    assert len(out) == 50
    return out


def test_fifty_concurrent_uploads(stack: Any, champions: dict[str, bytes], tmp_path: Path) -> None:
    seed_models(stack, champions, "north", "south")
    s3 = stack.client("s3")
    seeded = {
        d: get_json(stack, stack.artifact_bucket, f"models/{d}/champion.json")
        for d in ("north", "south")
    }
    inputs = _inputs(tmp_path)
    for key in inputs:
        dataset, name = key.split("/")[1:]
        stack.upload(tmp_path / f"{dataset}-{name.split('-')[1]}", key)

    invocations = parallel_drain(stack, workers=8)

    assert [i.error for i in invocations if i.error] == []
    # nothing needed a retry (what made one, when one was needed)
    assert [i.failures for i in invocations if i.attempts > 1] == []
    assert dead_letters(stack) == []
    calls = Counter(i.function for i in invocations)
    assert calls["IngestFunction"] == 50
    # a train request per first file of "fresh" (they all found no champion)
    assert 1 <= calls["TrainFunction"] <= FILES["fresh"]

    for dataset, count in FILES.items():
        clean = manifests(stack, stack.data_bucket, f"clean/{dataset}/")
        runs = manifests(stack, stack.results_bucket, f"segments/{dataset}/")
        assert len(clean) == count, dataset
        # uploads arriving together coalesce: at most one run per upload, at least one
        assert 1 <= len(runs) <= count, dataset
        state = get_json(stack, stack.data_bucket, f"clean/{dataset}/_state.json") or {}
        assert len(state["parts"]) == count  # every part registered, none lost in a race
        assert_consistent(stack, dataset)
        latest = get_json(stack, stack.results_bucket, f"segments/{dataset}/latest.json")
        assert latest is not None
        bodies = [get_json(stack, stack.results_bucket, k) or {} for k in runs]
        assert latest["run_id"] == max(bodies, key=order_key)["run_id"]
        for manifest in bodies:  # each run holds exactly the customers of its parts
            frame = assignments(stack, manifest["prefix"])
            ids = sorted(frame["customer_id"].astype(int))
            parts = manifest["input"]["parts"]
            assert ids == sorted(i for p in parts for i in inputs[p["source_key"]])
        newest = max(bodies, key=order_key)
        assert len(newest["input"]["parts"]) == count, dataset  # the newest run covers all

    # one champion per dataset, never replaced
    for dataset in ("north", "south"):
        champion = get_json(stack, stack.artifact_bucket, f"models/{dataset}/champion.json")
        assert champion == seeded[dataset]
    fresh = get_json(stack, stack.artifact_bucket, "models/fresh/champion.json")
    assert fresh is not None and fresh["history"] == []
    trained = {
        k.split("/")[2]
        for k in (
            o["Key"]
            for o in s3.list_objects_v2(Bucket=stack.artifact_bucket, Prefix="models/fresh/")[
                "Contents"
            ]
        )
        if k.endswith("/metadata.json")
    }
    assert fresh["version"] in trained
    for dataset in FILES:
        for key in manifests(stack, stack.results_bucket, f"segments/{dataset}/"):
            manifest = get_json(stack, stack.results_bucket, key) or {}
            champion = get_json(stack, stack.artifact_bucket, f"models/{dataset}/champion.json")
            assert champion is not None
            assert manifest["model"]["version"] == champion["version"], key

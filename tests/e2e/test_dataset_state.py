"""A dataset is all its uploads: parts of an export make one run like the whole file,
``replace`` starts over, and the rescore and pointers cover every customer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from support import (
    MALL,
    assert_consistent,
    assignments,
    get_json,
    keys,
    mall_like_csv,
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


def _order_log_csv(path: Path, ids: range) -> Path:
    """An order log in the online-retail layout: a few invoices per customer in 2024."""
    lines = ["InvoiceNo,InvoiceDate,CustomerID,Country,Quantity,UnitPrice"]
    for i in ids:
        for j in range(1 + i % 4):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=(i * 7 + j * 31) % 300)
            country = "France" if i % 3 else "Spain"
            lines.append(f"{i}{j:02d},{day.month}/{day.day}/{day.year} 10:00,{i},{country},")
            lines[-1] += f"{1 + (i + j) % 9},{2.5 + (i % 5)}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_customer_table_and_an_order_log_make_one_portrait(stack: Any, tmp_path: Path) -> None:
    dataset = "shop"
    customers = mall_like_csv(tmp_path / "customers.csv", range(1, 201), seed=3)
    orders = _order_log_csv(tmp_path / "orders.csv", range(101, 261))
    stack.upload(customers, f"incoming/{dataset}/customers.csv")
    stack.upload(orders, f"incoming/{dataset}/orders.csv")
    assert [i.error for i in stack.drain() if i.error] == []

    # no champion: one model is trained, on both sources
    metadata = [k for k in keys(stack, stack.artifact_bucket, f"models/{dataset}/") if
                k.endswith("/metadata.json")]  # fmt: skip
    assert len(metadata) == 1
    model = get_json(stack, stack.artifact_bucket, metadata[0]) or {}
    schema = model["feature_schema"]
    assert schema["kind"] == "combined"
    assert {"age", "annual_income", "recency_days", "frequency", "monetary"} <= set(
        schema["numeric"]
    )
    assert "gender" in schema["categorical"]
    assert model["contract_kind"] == "combined"

    # its scoring run covers the union of the customers, described by both sources
    latest = get_json(stack, stack.results_bucket, f"segments/{dataset}/latest.json")
    assert latest is not None
    scored = assignments(stack, latest["prefix"])
    assert sorted(scored["customer_id"].astype(str)) == sorted(str(i) for i in range(1, 261))
    profiles = get_json(stack, stack.results_bucket, latest["prefix"] + "profiles.json") or {}
    text = json.dumps(profiles)
    assert '"age"' in text and '"recency_days"' in text
    manifest = get_json(stack, stack.results_bucket, latest["manifest_key"]) or {}
    kinds = sorted(p["kind"] for p in manifest["input"]["parts"])
    assert kinds == ["customers", "transactions"]


def test_an_order_log_added_to_a_customer_table_brings_a_combined_model(
    stack: Any, tmp_path: Path
) -> None:
    dataset = "shop"
    customers = mall_like_csv(tmp_path / "customers.csv", range(1, 201), seed=3)
    stack.upload(customers, f"incoming/{dataset}/customers.csv")
    assert [i.error for i in stack.drain() if i.error] == []
    first = get_json(stack, stack.artifact_bucket, f"models/{dataset}/champion.json") or {}

    # the order log arrives later: the run scores with the customers' champion and asks
    # for a combined model, which becomes champion and scores the union
    orders = _order_log_csv(tmp_path / "orders.csv", range(101, 261))
    upload_in_a_new_second(stack, orders, f"incoming/{dataset}/orders.csv")
    done = stack.drain()
    assert [i.error for i in done if i.error] == []
    trained = [r for i in done if i.function == "TrainFunction" for r in i.result["results"]]
    assert [t["status"] for t in trained] == ["promoted"]
    now = get_json(stack, stack.artifact_bucket, f"models/{dataset}/champion.json") or {}
    assert now["version"] != first["version"]
    latest = get_json(stack, stack.results_bucket, f"segments/{dataset}/latest.json")
    assert latest is not None and latest["model_version"] == now["version"]
    scored = assignments(stack, latest["prefix"])
    assert sorted(scored["customer_id"].astype(str)) == sorted(str(i) for i in range(1, 261))

    # with a combined champion, the next rescore asks for nothing
    stack.tick(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert not [i for i in stack.drain() if i.function == "TrainFunction"]


def test_a_small_daily_order_file_is_read_with_the_logs_contract(
    stack: Any, tmp_path: Path
) -> None:
    dataset = "shop"
    history = _order_log_csv(tmp_path / "history.csv", range(101, 161))
    stack.upload(history, f"incoming/{dataset}/history.csv")
    assert [i.error for i in stack.drain() if i.error] == []

    # two lines of two customers: alone, one row per customer reads as a customer table
    day = tmp_path / "day.csv"
    header = history.read_text(encoding="utf-8").splitlines()[0]
    day.write_text(
        f"{header}\n990001,12/30/2024 09:00,101,France,3,4.0\n"
        "990002,12/30/2024 09:30,102,Spain,1,7.5\n",
        encoding="utf-8",
    )
    upload_in_a_new_second(stack, day, f"incoming/{dataset}/day.csv")
    done = stack.drain()
    assert [i.error for i in done if i.error] == []
    state = get_json(stack, stack.data_bucket, f"clean/{dataset}/_state.json") or {}
    assert [p["kind"] for p in state["parts"]] == ["transactions", "transactions"]
    prefix = state["parts"][-1]["manifest_key"].rsplit("/", 1)[0]
    quality = get_json(stack, stack.data_bucket, f"{prefix}/quality.json") or {}
    assert "an earlier upload with these headers" in json.dumps(quality["contract"])

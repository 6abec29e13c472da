import datetime as dt

import pytest

from custseg import layout


def test_upload_key_parts_and_dataset_normalised() -> None:
    up = layout.parse_upload_key("incoming/My Shop/2024/My File.csv")
    assert up.prefix == "incoming/"
    assert up.dataset == "my_shop"
    assert up.filename == "2024/My File.csv"


@pytest.mark.parametrize("key", ["incoming/file.csv", "incoming/shop/", "other/shop/a.csv"])
def test_bad_upload_keys_are_refused_with_the_way_forward(key: str) -> None:
    with pytest.raises(layout.LayoutError):
        layout.parse_upload_key(key)


def test_run_ids_are_deterministic_and_time_sortable() -> None:
    t1 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(seconds=1)
    a = layout.run_id_for(t1, "bucket", "key", "v1")
    assert a == layout.run_id_for(t1, "bucket", "key", "v1")
    assert a != layout.run_id_for(t1, "bucket", "key", "v2")
    assert a.startswith("20260102T030405Z-")
    assert a < layout.run_id_for(t2, "bucket", "key", "v1")


def test_clean_manifest_key_round_trip() -> None:
    key = layout.clean_prefix("shop", "r1") + layout.MANIFEST
    assert layout.parse_clean_manifest_key(key) == ("shop", "r1")
    with pytest.raises(layout.LayoutError):
        layout.parse_clean_manifest_key("clean/shop/r1/data.parquet")


def test_clean_data_names_are_the_parts_in_order_or_the_one_file_of_before() -> None:
    parts = [f"data/{layout.clean_part_name(i)}" for i in (1, 0)]
    names = [*parts, "quality.json", "contract.json", "data/notes.txt"]
    assert layout.clean_data_names(names) == ["data/part-00000.parquet", "data/part-00001.parquet"]
    assert layout.clean_data_names(["data.parquet", "quality.json"]) == ["data.parquet"]
    assert layout.clean_data_names(["quality.json"]) == []
    # one naming rule for the manifest's names and the local files (custseg.dataset.clean_data)
    assert layout.is_clean_part_name(layout.clean_part_name(12))
    assert not layout.is_clean_part_name("part-1.parquet.tmp")


def test_results_prefix_is_hive_partitioned() -> None:
    prefix = layout.results_prefix("shop", dt.date(2026, 11, 23), "r1")
    assert prefix == "segments/shop/run_date=2026-11-23/run_id=r1/"


def test_no_output_prefix_overlaps_an_upload_prefix() -> None:
    outputs = [layout.CLEAN, layout.REJECTED, layout.SEGMENTS, layout.MODELS]
    for trigger in (layout.INCOMING, layout.TRAINING):
        assert not any(o.startswith(trigger) or trigger.startswith(o) for o in outputs)

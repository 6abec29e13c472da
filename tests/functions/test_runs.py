"""custseg.aws.runs on moto: downloading a clean run's data (parts, or the one file of
before); a run file's manifest entry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.aws import runs as runs_module
from custseg.aws.runs import RunFile, download_clean_data, upload_run_file
from custseg.aws.s3 import ObjectStore
from custseg.dataset.clean_data import read_clean

BUCKET = "custseg-test-bucket"  # the bucket of the `store` fixture (conftest.py)

PREFIX = "clean/shop/r1/"


def _put_parquet(store: ObjectStore, key: str, ids: list[str], tmp: Path) -> None:
    path = tmp / key.replace("/", "_")
    pq.write_table(pa.table({"customer_id": ids}), path)
    store.client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())


def test_download_clean_data_fetches_every_part_in_row_order(
    store: ObjectStore, tmp_path: Path
) -> None:
    _put_parquet(store, PREFIX + "data/part-00001.parquet", ["c", "d"], tmp_path)
    _put_parquet(store, PREFIX + "data/part-00000.parquet", ["a", "b"], tmp_path)
    manifest = {
        "files": [
            {"name": "data/part-00001.parquet"},
            {"name": "quality.json"},
            {"name": "data/part-00000.parquet"},
        ]
    }
    path = download_clean_data(store, BUCKET, PREFIX, manifest, tmp_path / "got")
    assert path == tmp_path / "got" / "data" and path.is_dir()
    assert read_clean(path).column("customer_id").to_pylist() == ["a", "b", "c", "d"]


def test_download_clean_data_reads_a_run_written_before_the_parts(
    store: ObjectStore, tmp_path: Path
) -> None:
    _put_parquet(store, PREFIX + "data.parquet", ["x", "y"], tmp_path)
    manifest = {"files": [{"name": "data.parquet"}, {"name": "contract.json"}]}
    path = download_clean_data(store, BUCKET, PREFIX, manifest, tmp_path / "got")
    assert path == tmp_path / "got" / "data.parquet" and path.is_file()
    assert read_clean(path).column("customer_id").to_pylist() == ["x", "y"]


def test_a_large_run_file_with_its_writers_sha256_is_not_read_again_to_hash_it(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_multipart: int
) -> None:
    # above the multipart threshold S3 keeps no whole-file SHA-256: the manifest entry
    # takes the writer's, instead of reading the file once more (0.45 GB at 5M customers)
    path = tmp_path / "assignments.csv"
    path.write_bytes(bytes(range(256)) * (11 * 4096))  # 11 MiB: three parts
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    hashed: list[Path] = []
    monkeypatch.setattr(runs_module, "file_sha256", lambda p: hashed.append(p) or "read")
    entry = upload_run_file(
        store, BUCKET, "segments/r1/", RunFile("assignments.csv", path, 7, digest)
    )
    assert entry == {
        "key": "segments/r1/assignments.csv",
        "name": "assignments.csv",
        "size": path.stat().st_size,
        "sha256": digest,
        "rows": 7,
    }
    assert hashed == []
    # without it, the file is hashed (the fallback is still there)
    entry = upload_run_file(store, BUCKET, "segments/r2/", RunFile("assignments.csv", path, 7))
    assert entry["sha256"] == "read" and hashed == [path]


def _pointer(run_ts: str, generation: int, run_id: str) -> dict[str, object]:
    return {"run_ts": run_ts, "model_generation": generation, "run_id": run_id}


def test_a_newly_promoted_model_moves_the_pointer_past_its_data_scored_by_the_old_one() -> None:
    old = _pointer("2026-12-04T10:00:00+00:00", 1, "zz-old-model")
    new = _pointer("2026-12-04T10:00:00+00:00", 2, "aa-new-model")
    assert runs_module.order_key(new) > runs_module.order_key(old)


def test_newer_data_wins_over_older_data_scored_by_a_later_promoted_model() -> None:
    promoted = _pointer("2026-12-04T10:00:00+00:00", 5, "zz")
    upload = _pointer("2026-12-04T10:00:01+00:00", 1, "aa")
    assert runs_module.order_key(upload) > runs_module.order_key(promoted)


def test_a_pointer_written_without_a_generation_orders_first_among_its_second() -> None:
    legacy = {"run_ts": "2026-12-04T10:00:00+00:00", "run_id": "zz"}
    assert runs_module.order_key(legacy) < runs_module.order_key(
        _pointer("2026-12-04T10:00:00+00:00", 1, "aa")
    )

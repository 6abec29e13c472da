"""custseg.aws.runs on moto: downloading a clean run's data, parts or the one file of before."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custseg.aws.runs import download_clean_data
from custseg.aws.s3 import ObjectStore
from custseg.clean_data import read_clean

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

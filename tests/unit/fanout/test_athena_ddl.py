"""The table the fan-out's Athena queries read: DDL Athena accepts (explicit columns from
the clean parts' Parquet schema, a symlink manifest), not ``LIKE PARQUET``."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.aws.athena import (
    AthenaEngine,
    create_table_ddl,
    hive_type,
    parquet_schema,
    run_table,
)

SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("order_date", pa.date32()),
        ("amount", pa.float64()),
        ("quantity", pa.int64()),
        ("_row", pa.int32()),
        ("paid", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("price", pa.decimal128(12, 2)),
    ]
)


def test_the_ddl_names_every_column_with_its_athena_type() -> None:
    ddl = create_table_ddl("clean_parts", SCHEMA, "s3://b/athena/clean_parts/")
    assert ddl == (
        "CREATE EXTERNAL TABLE `clean_parts` (\n"
        "  `customer_id` string,\n"
        "  `order_date` date,\n"
        "  `amount` double,\n"
        "  `quantity` bigint,\n"
        "  `_row` int,\n"
        "  `paid` boolean,\n"
        "  `at` timestamp,\n"
        "  `price` decimal(12,2)\n"
        ")\n"
        "ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n"
        "STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'\n"
        "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n"
        "LOCATION 's3://b/athena/clean_parts/'"
    )
    assert "LIKE PARQUET" not in ddl


def test_a_backtick_in_a_column_name_is_escaped() -> None:
    ddl = create_table_ddl("t", pa.schema([("a`b", pa.string())]), "s3://b/t/")
    assert "`a``b` string" in ddl


def test_a_type_athena_cannot_hold_is_refused_by_name() -> None:
    assert hive_type(pa.dictionary(pa.int32(), pa.string())) == "string"
    with pytest.raises(ValueError, match=r"Parquet column type .* has no Athena table type"):
        hive_type(pa.list_(pa.int64()))


class _RangedS3:
    """An S3 client that answers ranged GETs of one object (and records them)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.ranges, self.puts = data, [], []

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        self.ranges.append(Range)
        size = int(Range.removeprefix("bytes=-"))
        return {"Body": io.BytesIO(self.data[-size:])}

    def put_object(self, **kwargs: Any) -> None:
        self.puts.append(kwargs)


def _parquet(rows: int = 5000) -> bytes:
    table = pa.table(
        {name: pa.array([None] * rows, type=SCHEMA.field(name).type) for name in SCHEMA.names}
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def test_the_schema_is_read_from_the_footer_alone() -> None:
    data = _parquet()
    s3 = _RangedS3(data)
    assert parquet_schema(s3, "b", "k").equals(SCHEMA)
    assert s3.ranges[0] == "bytes=-8" and len(s3.ranges) == 2
    assert int(s3.ranges[1].removeprefix("bytes=-")) < len(data)


def test_register_sends_the_symlink_manifest_and_the_explicit_ddl() -> None:
    s3 = _RangedS3(_parquet(10))
    sent: list[str] = []
    engine = AthenaEngine(None, None, s3, workgroup="w", database="d", staging="s3://st/athena/")
    engine.run = lambda sql: sent.append(sql) or "q"  # type: ignore[method-assign]
    engine.register([("data", "clean/shop/r1/part-0.parquet"), ("data", "clean/shop/r2/p.parquet")])
    (put,) = s3.puts
    assert put["Bucket"] == "st" and put["Key"] == "athena/clean_parts/symlink.txt"
    assert put["Body"].decode().splitlines() == [
        "s3://data/clean/shop/r1/part-0.parquet",
        "s3://data/clean/shop/r2/p.parquet",
    ]
    assert sent[0] == "DROP TABLE IF EXISTS clean_parts"
    assert sent[1] == create_table_ddl("clean_parts", SCHEMA, "s3://st/athena/clean_parts/")


def test_each_run_queries_a_table_of_its_own() -> None:
    """Executions running at once (uploads to two datasets) never share a table."""
    first, second = run_table("20261205T031352Z-4724131e"), run_table("20261205T031352Z-9f0c")
    assert first == "clean_parts_20261205t031352z_4724131e"
    assert first != second
    assert all(c.islower() or c.isdigit() or c == "_" for c in first + second)

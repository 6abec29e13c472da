"""The query engine of the fanned-out path: Athena over the Glue catalog, behind a small
interface that the local stack implements with DuckDB (:mod:`custseg.local.athena`).

A query names its input as the run's table (:func:`run_table`); :meth:`QueryEngine.unload`
writes a SELECT's result as Parquet files under an S3 prefix, one folder per feature
bucket (Athena's ``UNLOAD ... WITH (format = 'PARQUET', partitioned_by = ARRAY['bucket'])``).
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

CLEAN_TABLE = "clean_parts"
"""The stem of the Glue table of a run's clean parts (:func:`run_table`)."""
BUCKET_COLUMN = "bucket"
SYMLINK_INPUT = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"
IGNORE_KEY_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def hive_type(arrow_type: pa.DataType) -> str:
    """The Athena (Hive DDL) type of a Parquet column read as ``arrow_type``."""
    simple = {
        pa.bool_(): "boolean",
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.string(): "string",
        pa.large_string(): "string",
        pa.binary(): "binary",
        pa.large_binary(): "binary",
        pa.date32(): "date",
    }
    if arrow_type in simple:
        return simple[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_dictionary(arrow_type):
        return hive_type(arrow_type.value_type)
    raise ValueError(f"Parquet column type {arrow_type} has no Athena table type")


def create_table_ddl(table: str, schema: pa.Schema, location: str) -> str:
    """Athena DDL of an external table over a symlink manifest of Parquet files under
    ``location``, its columns those of ``schema`` (Athena takes no ``LIKE PARQUET``)."""
    columns = ",\n  ".join(
        f"`{field.name.replace('`', '``')}` {hive_type(field.type)}" for field in schema
    )
    return (
        f"CREATE EXTERNAL TABLE `{table}` (\n  {columns}\n)\n"
        f"ROW FORMAT SERDE '{PARQUET_SERDE}'\n"
        f"STORED AS INPUTFORMAT '{SYMLINK_INPUT}'\n"
        f"OUTPUTFORMAT '{IGNORE_KEY_OUTPUT}'\n"
        f"LOCATION '{location}'"
    )


def parquet_schema(s3: Any, bucket: str, key: str) -> pa.Schema:
    """The schema of a Parquet object, from its footer alone (two ranged GETs)."""
    tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-8")["Body"].read()
    (length,) = struct.unpack("<I", tail[:4])
    footer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{length + 8}")["Body"].read()
    return pq.read_schema(pa.BufferReader(b"PAR1" + footer))


HASHES_TABLE = "range_hashes"
"""The stem of the Glue table of a fanned-out upload's row hashes (duplicates across ranges)."""


def run_table(run_id: str, stem: str = CLEAN_TABLE) -> str:
    """The Glue table ``<stem>_<run id>`` of one run (lower case, other characters as
    ``_``): one table per run, so that executions of the state machine running at once
    (uploads to other datasets) never read each other's files."""
    return f"{stem}_{re.sub(r'[^a-z0-9]', '_', run_id.lower())}"[:255]


def drop_table_sql(table: str) -> str:
    return f"DROP TABLE IF EXISTS {table}"


def bucket_expression(column: str, buckets: int) -> str:
    """Athena SQL of a customer's feature bucket: a hash of its id modulo ``buckets``."""
    return f"CAST(MOD(ABS(FROM_BIG_ENDIAN_64(XXHASH64(TO_UTF8({column})))), {buckets}) AS INTEGER)"


def unload_sql(select: str, location: str) -> str:
    """Athena's UNLOAD of ``select`` as Parquet under ``location``, partitioned by bucket."""
    return (
        f"UNLOAD ({select}) TO '{location}' "
        f"WITH (format = 'PARQUET', partitioned_by = ARRAY['{BUCKET_COLUMN}'])"
    )


class QueryEngine(Protocol):
    def register(self, files: Sequence[tuple[str, str]], table: str = CLEAN_TABLE) -> None:
        """Make ``table`` the Parquet objects ``files`` ((bucket, key) each)."""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a small Athena SELECT."""

    def run(self, sql: str) -> str:
        """Run one Athena statement (an UNLOAD); its query execution id."""


class AthenaError(RuntimeError):
    """An Athena query failed or was cancelled (the message has Athena's reason)."""


class AthenaEngine:
    """Athena in a workgroup; the table is a Glue table over a symlink manifest (the
    list of the state's clean part files), so it reads exactly the committed parts."""

    def __init__(
        self, athena: Any, glue: Any, s3: Any, *, workgroup: str, database: str, staging: str
    ) -> None:
        self.athena, self.glue, self.s3 = athena, glue, s3
        self.workgroup, self.database, self.staging = workgroup, database, staging

    def register(self, files: Sequence[tuple[str, str]], table: str = CLEAN_TABLE) -> None:
        bucket, prefix = self.staging.removeprefix("s3://").split("/", 1)
        manifest = f"{prefix.rstrip('/')}/{table}/symlink.txt"
        body = "\n".join(f"s3://{b}/{k}" for b, k in files) + "\n"
        self.s3.put_object(Bucket=bucket, Key=manifest, Body=body.encode())
        self.run(drop_table_sql(table))
        schema = parquet_schema(self.s3, *files[0])
        location = f"s3://{bucket}/{prefix.rstrip('/')}/{table}/"
        self.run(create_table_ddl(table, schema, location))

    def run(self, sql: str) -> str:
        qid = self.athena.start_query_execution(
            QueryString=sql,
            WorkGroup=self.workgroup,
            QueryExecutionContext={"Database": self.database},
        )["QueryExecutionId"]
        delay = 0.5
        while True:
            status = self.athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"][
                "Status"
            ]
            if status["State"] == "SUCCEEDED":
                return str(qid)
            if status["State"] in ("FAILED", "CANCELLED"):
                raise AthenaError(f"Athena query {qid}: {status.get('StateChangeReason', '')}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of the result (as text), page after page (1,000 rows a page)."""
        qid = self.run(sql)
        rows: list[Any] = []
        for page in self.athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
            rows.extend(page["ResultSet"]["Rows"])
        return [tuple(c.get("VarCharValue") for c in r["Data"]) for r in rows[1:]]

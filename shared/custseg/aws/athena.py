"""The query engine of the fanned-out path: Athena over the Glue catalog, behind a small
interface that the local stack implements with DuckDB (:mod:`custseg.local.athena`).

A query names its input as the table :data:`CLEAN_TABLE`; :meth:`QueryEngine.unload`
writes a SELECT's result as Parquet files under an S3 prefix, one folder per feature
bucket (Athena's ``UNLOAD ... WITH (format = 'PARQUET', partitioned_by = ARRAY['bucket'])``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

CLEAN_TABLE = "clean_parts"
BUCKET_COLUMN = "bucket"


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
        self.run(f"DROP TABLE IF EXISTS {table}")
        self.run(
            f"CREATE EXTERNAL TABLE {table} LIKE PARQUET 's3://{files[0][0]}/{files[0][1]}' "
            "STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat' "
            "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat' "
            f"LOCATION 's3://{bucket}/{prefix.rstrip('/')}/{table}/'"
        )

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
        qid = self.run(sql)
        rows = self.athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"][1:]
        return [tuple(c.get("VarCharValue") for c in r["Data"]) for r in rows]

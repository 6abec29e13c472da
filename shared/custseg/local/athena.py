"""Athena on a laptop: the statements the fanned-out path sends to Athena, translated back
to DuckDB by sqlglot (:func:`custseg.features.dialect.from_athena`) and run in process.

The table is a DuckDB view of the registered Parquet objects (downloaded from the
emulated S3); ``UNLOAD`` writes one Parquet file per bucket under the target prefix, as
Athena's partitioned UNLOAD does. The two Athena functions of the bucket expression are
DuckDB functions here: ``XXHASH64`` is an 8-byte BLAKE2b of the bytes (a stable hash, not
xxHash's values: local buckets hold other customers than Athena's would, and no result
depends on which bucket a customer is in) and ``FROM_BIG_ENDIAN_64`` reads 8 bytes as a
signed integer.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseg.aws.athena import (
    BUCKET_COLUMN,
    CLEAN_TABLE,
    AthenaError,
    create_table_ddl,
    parquet_schema,
)
from custseg.features.dialect import from_athena
from custseg.features.sql import literal, quote

_UNLOAD = re.compile(
    r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'s3://(?P<bucket>[^/]+)/(?P<prefix>[^']*)'", re.S
)


_DROP = re.compile(r"^\s*DROP\s+TABLE\s+IF\s+EXISTS\s+(?P<table>\w+)\s*$", re.I)


def _xxhash64(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def _from_big_endian_64(data: bytes) -> int:
    return int.from_bytes(data[:8], "big", signed=True)


Record = Callable[[str, str, dict[str, Any]], None]


class LocalAthena:
    """The :class:`~custseg.aws.athena.QueryEngine` of the local stack.

    With ``record``, every AWS call Athena's engine would make for a statement is reported
    as (service, operation, params), made with the caller's credentials: the Athena calls
    on ``workgroup``, the Glue catalog calls on ``database``, the reads of the table's
    symlink manifest and parts, and the writes of results and UNLOAD files; with
    ``staging``, :meth:`register` writes the symlink manifest and the DDL that
    :class:`~custseg.aws.athena.AthenaEngine` would send (kept in :attr:`statements`)."""

    def __init__(
        self,
        s3: Any,
        *,
        record: Record | None = None,
        workgroup: str = "primary",
        database: str = "default",
        staging: str | None = None,
    ) -> None:
        self.s3 = s3
        self.record = record
        self.workgroup, self.database, self.staging = workgroup, database, staging
        self.files: dict[str, list[tuple[str, str]]] = {}
        self.dir = Path(tempfile.mkdtemp(prefix="custseg-athena-"))
        self.con = duckdb.connect(":memory:")
        self.con.create_function("XXHASH64", _xxhash64, ["BLOB"], "BLOB")
        self.con.create_function("FROM_BIG_ENDIAN_64", _from_big_endian_64, ["BLOB"], "BIGINT")
        self.statements: list[str] = []  # what Athena would have received
        self.scanned_bytes = 0

    def register(self, files: Sequence[tuple[str, str]], table: str = CLEAN_TABLE) -> None:
        self.files[table] = list(files)
        if self.staging is not None:
            self._register_in_catalog(files, table)
        local = []
        for i, (bucket, key) in enumerate(files):
            path = self.dir / table / f"{i:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, key, str(path))
            local.append(literal(str(path)))
            self.scanned_bytes += path.stat().st_size
        self.con.execute(
            f"CREATE OR REPLACE VIEW {quote(table)} AS SELECT * FROM "
            f"read_parquet([{', '.join(local)}], union_by_name = true)"
        )

    def _staging(self) -> tuple[str, str]:
        bucket, prefix = (self.staging or "s3://local/athena/").removeprefix("s3://").split("/", 1)
        return bucket, prefix.rstrip("/")

    def _register_in_catalog(self, files: Sequence[tuple[str, str]], table: str) -> None:
        """What :meth:`AthenaEngine.register` sends: the manifest, DROP and the DDL."""
        bucket, prefix = self._staging()
        body = "\n".join(f"s3://{b}/{k}" for b, k in files) + "\n"
        self.s3.put_object(Bucket=bucket, Key=f"{prefix}/{table}/symlink.txt", Body=body.encode())
        ddl = create_table_ddl(
            table, parquet_schema(self.s3, *files[0]), f"s3://{bucket}/{prefix}/{table}/"
        )
        self.statements += [f"DROP TABLE IF EXISTS {table}", ddl]
        self._record_statement([("GetTable", table), ("DeleteTable", table)])
        self._record_statement([("GetDatabase", ""), ("CreateTable", table)])

    def _record_statement(
        self, catalog: list[tuple[str, str]], table: str = "", unload: str = ""
    ) -> None:
        """The calls Athena makes for one statement with the caller's credentials."""
        if self.record is None:
            return
        record, bucket, prefix = self.record, *self._staging()
        record("athena", "StartQueryExecution", {"WorkGroup": self.workgroup})
        for operation, name in catalog:
            record("glue", operation, {"DatabaseName": self.database, "Name": name})
        if table:  # the table's symlink manifest, then the files it lists
            record("s3", "GetBucketLocation", {"Bucket": bucket})
            record("s3", "ListObjectsV2", {"Bucket": bucket, "Prefix": f"{prefix}/{table}/"})
            record("s3", "GetObject", {"Bucket": bucket, "Key": f"{prefix}/{table}/symlink.txt"})
            for b, k in self.files.get(table, []):
                record("s3", "GetObject", {"Bucket": b, "Key": k})
        if unload:
            target_bucket, target_key = unload.split("/", 1)
            folder = target_key.rsplit("/", 2)[0] + "/"  # checked empty first
            record("s3", "ListObjectsV2", {"Bucket": target_bucket, "Prefix": folder})
            record("s3", "PutObject", {"Bucket": target_bucket, "Key": target_key})
        record("s3", "PutObject", {"Bucket": bucket, "Key": f"{prefix}/results/query.csv"})
        record("athena", "GetQueryExecution", {"WorkGroup": self.workgroup})

    def _read_table(self, sql: str) -> str:
        """The registered table ``sql`` reads (the last registered one it names)."""
        named = [t for t in self.files if re.search(rf"\b{re.escape(t)}\b", sql)]
        return named[-1] if named else CLEAN_TABLE

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        table = self._read_table(sql)
        self._record_statement([("GetDatabase", ""), ("GetTable", table)], table)
        if self.record is not None:
            self.record("athena", "GetQueryResults", {"WorkGroup": self.workgroup})
        return [tuple(row) for row in self.con.execute(from_athena(sql)).fetchall()]

    def run(self, sql: str) -> str:
        self.statements.append(sql)
        drop = _DROP.match(sql)
        if drop is not None:  # the table is a view here
            self._record_statement([("GetTable", drop["table"]), ("DeleteTable", drop["table"])])
            self.con.execute(f"DROP VIEW IF EXISTS {quote(drop['table'])}")
            self.files.pop(drop["table"], None)
            return f"local-{len(self.statements)}"
        match = _UNLOAD.match(sql)
        if match is None:
            self.con.execute(from_athena(sql))
            return f"local-{len(self.statements)}"
        target = f"{match['bucket']}/{match['prefix'].rstrip('/')}/{BUCKET_COLUMN}=0/part.parquet"
        read = self._read_table(match["select"])
        self._record_statement([("GetDatabase", ""), ("GetTable", read)], read, unload=target)
        prefix = match["prefix"].rstrip("/") + "/"
        held = self.s3.list_objects_v2(Bucket=match["bucket"], Prefix=prefix, MaxKeys=1)
        if held.get("KeyCount", 0):  # as Athena: UNLOAD never writes over objects
            raise AthenaError(
                f"HIVE_PATH_ALREADY_EXISTS: the UNLOAD location s3://{match['bucket']}/{prefix}"
                " is not empty"
            )
        table: Any = self.con.sql(from_athena(match["select"])).to_arrow_table()
        for number in sorted(set(table.column(BUCKET_COLUMN).to_pylist())):
            part = table.filter(pc.equal(table.column(BUCKET_COLUMN), number))
            path = self.dir / f"unload-{number}.parquet"
            pq.write_table(part.drop_columns([BUCKET_COLUMN]), str(path))
            key = f"{prefix}{BUCKET_COLUMN}={number}/part-00000.parquet"
            self.s3.upload_file(str(path), match["bucket"], key)
        return f"local-{len(self.statements)}"

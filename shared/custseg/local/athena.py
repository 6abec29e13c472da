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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseg.aws.athena import BUCKET_COLUMN, CLEAN_TABLE
from custseg.features.dialect import from_athena
from custseg.features.sql import literal, quote

_UNLOAD = re.compile(
    r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'s3://(?P<bucket>[^/]+)/(?P<prefix>[^']*)'", re.S
)


def _xxhash64(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def _from_big_endian_64(data: bytes) -> int:
    return int.from_bytes(data[:8], "big", signed=True)


class LocalAthena:
    """The :class:`~custseg.aws.athena.QueryEngine` of the local stack."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.dir = Path(tempfile.mkdtemp(prefix="custseg-athena-"))
        self.con = duckdb.connect(":memory:")
        self.con.create_function("XXHASH64", _xxhash64, ["BLOB"], "BLOB")
        self.con.create_function("FROM_BIG_ENDIAN_64", _from_big_endian_64, ["BLOB"], "BIGINT")
        self.statements: list[str] = []  # what Athena would have received
        self.scanned_bytes = 0

    def register(self, files: Sequence[tuple[str, str]], table: str = CLEAN_TABLE) -> None:
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

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return [tuple(row) for row in self.con.execute(from_athena(sql)).fetchall()]

    def run(self, sql: str) -> str:
        self.statements.append(sql)
        match = _UNLOAD.match(sql)
        if match is None:
            self.con.execute(from_athena(sql))
            return f"local-{len(self.statements)}"
        table: Any = self.con.sql(from_athena(match["select"])).to_arrow_table()
        prefix = match["prefix"].rstrip("/") + "/"
        for number in sorted(set(table.column(BUCKET_COLUMN).to_pylist())):
            part = table.filter(pc.equal(table.column(BUCKET_COLUMN), number))
            path = self.dir / f"unload-{number}.parquet"
            pq.write_table(part.drop_columns([BUCKET_COLUMN]), str(path))
            key = f"{prefix}{BUCKET_COLUMN}={number}/part-00000.parquet"
            self.s3.upload_file(str(path), match["bucket"], key)
        return f"local-{len(self.statements)}"

"""One feature query, two engines: the SQL is written once in DuckDB's dialect
(:mod:`custseg.features.sql`) and translated for Athena (Trino) with sqlglot.

:func:`to_athena` is what the fanned-out path sends to Athena; :func:`from_athena` is what
the local Athena (:mod:`custseg.local.athena`) runs on DuckDB, so a local fanned-out run
executes the very text Athena would receive. sqlglot rewrites what differs between the
two (``DATE '...'`` literals, ``date_diff`` units, ``GREATEST`` / ``LEAST`` with a NULL
argument: NULL in Trino, ignored in DuckDB); the one function it does not know, DuckDB's
compensated ``FSUM``, becomes ``SUM`` (Trino has no compensated sum: a sum of amounts may
differ from DuckDB's in its last digits, about 1e-15 relative).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

SOURCE_DIALECT = "duckdb"
ATHENA_DIALECT = "trino"


class TranslationError(ValueError):
    """sqlglot could not translate a query (the message names the dialects)."""


def _plain_sums(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "FSUM":
        return exp.Sum(this=node.expressions[0])
    return node


def to_athena(sql: str) -> str:
    """The DuckDB-dialect ``sql`` as Athena (Trino) SQL."""
    try:
        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
        return tree.transform(_plain_sums).sql(dialect=ATHENA_DIALECT, pretty=True)
    except sqlglot.errors.SqlglotError as exc:
        raise TranslationError(f"cannot translate the query from DuckDB to Athena: {exc}") from exc


def from_athena(sql: str) -> str:
    """Athena (Trino) ``sql`` as DuckDB SQL (the local Athena runs this)."""
    try:
        return sqlglot.transpile(sql, read=ATHENA_DIALECT, write=SOURCE_DIALECT)[0]
    except sqlglot.errors.SqlglotError as exc:
        raise TranslationError(f"cannot translate the query from Athena to DuckDB: {exc}") from exc

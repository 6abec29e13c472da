"""The feature SQL written once (DuckDB) and translated for Athena (Trino) by sqlglot:
DuckDB computes identical features from the translated text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from custseg.dataset.clean_data import clean_files
from custseg.features.dialect import TranslationError, from_athena, to_athena
from custseg.features.engine import (
    EngineLimits,
    collect_features,
    connect,
    features_from_table,
    plan_features,
)


@pytest.fixture
def limits(tmp_path: Path) -> EngineLimits:
    return EngineLimits(memory_limit_mb=256, temp_dir=tmp_path / "spill", threads=2)


@pytest.mark.parametrize(
    ("fixture", "as_of"),
    [
        ("online_retail_invoices.csv", dt.date(2011, 12, 10)),
        ("online_retail_invoices.csv", dt.date(2011, 6, 1)),
        ("transactions_small.csv", dt.date(2011, 2, 1)),
        ("mall_customers.csv", dt.date(2024, 3, 1)),
        ("telco_customer_churn.csv", dt.date(2024, 3, 1)),
    ],
)
def test_translated_sql_computes_the_same_features(
    ingest, limits: EngineLimits, fixture: str, as_of: dt.date
) -> None:
    result = ingest(fixture)
    parts = clean_files(result.clean_path)
    con = connect(limits)
    query = plan_features(con, parts, result.contract, as_of)
    athena = to_athena(query.sql)
    assert "FSUM" not in athena.upper()
    translated = con.sql(from_athena(athena)).to_arrow_table()
    con.close()
    got = features_from_table(translated, query)
    want = collect_features(parts, result.contract, as_of, limits)
    assert list(got.frame.index) == list(want.frame.index)
    assert len(got.frame) > 0
    for col in want.numeric:
        np.testing.assert_allclose(
            got.frame[col].to_numpy(), want.frame[col].to_numpy(), rtol=1e-12, err_msg=col
        )
    for col in want.categorical:
        assert got.frame[col].tolist() == want.frame[col].tolist(), col
    assert list(got.extras.columns) == list(want.extras.columns)


def test_athena_text_uses_trino_functions(ingest, limits: EngineLimits) -> None:
    result = ingest("transactions_small.csv")
    con = connect(limits)
    query = plan_features(con, clean_files(result.clean_path), result.contract, dt.date(2011, 2, 1))
    con.close()
    athena = to_athena(query.sql)
    assert "SUM(" in athena.upper()
    assert "CAST('2011-02-01' AS DATE)" in athena  # Trino's date literal, not DuckDB's


def test_greatest_with_null_keeps_duckdb_meaning() -> None:
    import duckdb

    sql = "SELECT GREATEST(x, 0.0) AS g FROM (VALUES (NULL::DOUBLE), (-1.0), (2.0)) t(x)"
    round_trip = from_athena(to_athena(sql))
    direct = duckdb.sql(sql).to_arrow_table().column("g").to_pylist()
    via_athena = duckdb.sql(round_trip).to_arrow_table().column("g").to_pylist()
    # Trino's GREATEST is NULL when an argument is: the translation says so explicitly
    assert via_athena == [None, 0.0, 2.0]
    assert direct == [0.0, 0.0, 2.0]
    assert isinstance(pa.array(via_athena), pa.Array)


def test_untranslatable_sql_names_the_dialects() -> None:
    with pytest.raises(TranslationError, match="from DuckDB to Athena"):
        to_athena("SELECT (((")

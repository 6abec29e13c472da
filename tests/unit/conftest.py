"""Helpers for the unit tests: the fixtures directory, running ingest into tmp_path, and
the contract and features of a synthetic customer table (features, model and predict
tests share them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import pandas as pd
import pytest

from custseg.features.build import Features, build_features
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role
from custseg.ingest.pipeline import IngestResult, ingest_file

CUSTOMERS_AS_OF = dt.date(2024, 1, 1)
"""The as-of date the synthetic customer tables' features are built with."""

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def ingest(tmp_path: Path):
    """Run ingest_file on a fixture (name or path) into a fresh directory."""

    def run(name: str | Path, **kwargs) -> IngestResult:
        path = Path(name) if Path(name).is_absolute() else FIXTURES / name
        out = tmp_path / f"out-{path.stem}"
        kwargs.setdefault("source_name", f"incoming/test/{path.name}")
        kwargs.setdefault("dataset", "test")
        kwargs.setdefault("run_id", "run-1")
        result = ingest_file(path, out, **kwargs)
        rep = result.report
        assert rep.rows_read == rep.rows_kept + rep.rows_rejected
        return result

    return run


def _customer_contract(
    numeric: Sequence[str],
    *,
    integers: Collection[str] = (),
    extra: Sequence[ColumnSpec] = (),
    outcomes: Sequence[str] = (),
    value_columns: Sequence[str] = ("spending_score",),
) -> Contract:
    """A customer table's contract: ``customer_id``, a ``gender`` category, the
    ``numeric`` columns (integer when in ``integers``, else float), the ``extra`` columns,
    then the boolean ``outcomes``."""
    key = ColumnSpec(name="customer_id", type=ColumnType.ID, role=Role.CUSTOMER_ID)
    gender = ColumnSpec(name="gender", type=ColumnType.CATEGORY, role=Role.CATEGORY)
    numbers = [
        ColumnSpec(
            name=name,
            type=ColumnType.INTEGER if name in integers else ColumnType.FLOAT,
            role=Role.NUMERIC,
        )
        for name in numeric
    ]
    results = [
        ColumnSpec(name=name, type=ColumnType.BOOLEAN, role=Role.OUTCOME) for name in outcomes
    ]
    columns = [key, gender, *numbers, *extra, *results]
    return Contract(
        kind="customers", grain="customer", columns=columns, value_columns=list(value_columns)
    )


@pytest.fixture(scope="session")
def customer_contract() -> Callable[..., Contract]:
    """Makes a synthetic customer table's contract (see :func:`_customer_contract`)."""
    return _customer_contract


@pytest.fixture(scope="session")
def customer_features() -> Callable[..., Features]:
    """Builds the features of a customer table with its contract, as of
    :data:`CUSTOMERS_AS_OF` unless given."""

    def build(
        frame: pd.DataFrame, contract: Contract, as_of: dt.date = CUSTOMERS_AS_OF
    ) -> Features:
        return build_features(frame, contract, as_of=as_of)

    return build

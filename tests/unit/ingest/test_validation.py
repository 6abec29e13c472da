"""Row-level validation: every failure collected, with row and column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custseg.ingest.contracts import builtin_contract
from custseg.ingest.validation import ParseContext, check_headers, reasons_for, validate_chunk


def _validate(headers: list[str], rows: list[list[str]]):
    contract = builtin_contract("customers")
    check = check_headers(headers, contract)
    raw = pd.DataFrame(rows, columns=[str(i) for i in range(len(headers))], dtype="str")
    return validate_chunk(raw, check, contract, ParseContext()), contract


def test_all_failures_collected() -> None:
    val, _ = _validate(
        ["customer_id", "age", "churn", "annual_income"],
        [
            ["1", "30", "yes", "50"],
            ["2", "abc", "maybe", "60"],
            ["", "150", "no", "-5"],
        ],
    )
    found = {(col, why): np.flatnonzero(mask).tolist() for mask, col, why in val.failures}
    assert found[("age", "not a number")] == [1]
    assert ("churn", "not a yes/no value") not in found  # an outcome never rejects a row
    assert val.repairs["churn"] == {"not a yes/no value, set missing": 1}
    assert found[("customer_id", "required value missing")] == [2]
    assert found[("age", "out of range [0.0, 120.0]")] == [2]
    assert found[("annual_income", "out of range [0.0, None]")] == [2]
    assert val.invalid.tolist() == [False, True, True]
    text = reasons_for([(m, f"{c}: {w}") for m, c, w in val.failures], np.array([1, 2]))
    assert "age: not a number" in text[0] and "churn" not in text[0]
    assert "customer_id: required value missing" in text[1]


def test_types_and_repairs() -> None:
    val, _ = _validate(
        ["customer_id", "gender", "senior_citizen", "total_charges", "signup_date"],
        [
            [" 00042 ", " Female ", "1", "1,234.50", "2020-01-31"],
            ["00043", "M", "0", " ", "2020-02-01"],
        ],
    )
    typed = val.typed
    assert typed["customer_id"].tolist() == ["00042", "00043"]
    assert typed["gender"].tolist() == ["female", "male"]
    assert typed["senior_citizen"].tolist() == [True, False]
    assert typed["total_charges"].iloc[0] == 1234.5
    assert np.isnan(typed["total_charges"].iloc[1])
    assert str(typed["signup_date"].dtype) == "datetime64[ns]"
    assert val.repairs["gender"]["synonym mapped"] == 1
    assert val.repairs["total_charges"]["thousands separator removed"] == 1
    assert not val.invalid.any()


def test_personal_columns_never_typed() -> None:
    val, _ = _validate(["customer_id", "email", "name"], [["1", "a@b.c", "Ann"]])
    assert list(val.typed.columns) == ["customer_id"]


def test_decimal_comma_with_semicolon_files() -> None:
    contract = builtin_contract("customers")
    check = check_headers(["customer_id", "annual_income"], contract)
    raw = pd.DataFrame({"0": ["1"], "1": ["17,5"]}, dtype="str")
    val = validate_chunk(raw, check, contract, ParseContext(delimiter=";"))
    assert val.typed["annual_income"].iloc[0] == 17.5


def test_columns_converted_in_parallel_give_what_one_after_the_other_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from custseg.ingest import validation

    headers = ["customer_id", "age", "churn", "gender", "signup_date", "last_purchase_date",
               "annual_income"]  # fmt: skip
    rng = np.random.default_rng(5)
    rows = [
        [
            f"{i:05d}",
            ["30", "abc", " 41", "", "150"][i % 5],
            ["yes", "no", "maybe"][i % 3],
            [" Female", "M", "x"][i % 3],
            ["31/01/2020", "15/02/2021", "not a date"][i % 3],
            ["2022-03-01", "", "2022-13-40"][i % 3],
            ["1,234.50", str(rng.integers(0, 9999)), "-5"][i % 3],
        ]
        for i in range(3000)
    ]
    results = {}
    for parallel in (False, True):
        monkeypatch.setattr(validation, "PARALLEL", parallel)
        ctx = ParseContext()
        contract = builtin_contract("customers")
        raw = pd.DataFrame(rows, columns=[str(i) for i in range(len(headers))], dtype="str")
        first = validate_chunk(raw.iloc[:1500], check_headers(headers, contract), contract, ctx)
        second = validate_chunk(raw.iloc[1500:], check_headers(headers, contract), contract, ctx)
        results[parallel] = (first, second, ctx)
    for a, b in zip(results[False][:2], results[True][:2], strict=True):
        assert list(a.arrays) == list(b.arrays)
        assert all(a.arrays[k].equals(b.arrays[k]) for k in a.arrays)
        assert [(c, w) for _, c, w in a.failures] == [(c, w) for _, c, w in b.failures]
        pairs = zip(a.failures, b.failures, strict=True)
        assert all((m1 == m2).all() for (m1, _, _), (m2, _, _) in pairs)
        assert a.repairs == b.repairs and (a.n_missing == b.n_missing).all()
        assert (a.invalid == b.invalid).all()
    assert results[False][2] == results[True][2]  # date families and warnings, in order
    assert results[True][2].date_formats  # the date columns were detected

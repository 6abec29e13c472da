"""Row-level validation: every failure collected, with row and column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from custseg.contracts import builtin_contract
from custseg.validation import ParseContext, check_headers, reasons_for, validate_chunk


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
    assert found[("churn", "not a yes/no value")] == [1]
    assert found[("customer_id", "required value missing")] == [2]
    assert found[("age", "out of range [0.0, 120.0]")] == [2]
    assert found[("annual_income", "out of range [0.0, None]")] == [2]
    assert val.invalid.tolist() == [False, True, True]
    text = reasons_for([(m, f"{c}: {w}") for m, c, w in val.failures], np.array([1, 2]))
    assert "age: not a number" in text[0] and "churn: not a yes/no value" in text[0]
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

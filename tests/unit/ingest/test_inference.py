"""Schema inference: files of shapes no built-in contract was written for, read with no
contract; and the silent data losses the inference and the cleaning rules prevent."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custseg.dataset.clean_data import clean_files, read_clean
from custseg.features.build import build_features
from custseg.features.engine import EngineLimits, collect_features
from custseg.ingest.contracts import builtin_contract, load_contract
from custseg.ingest.contracts.inference import contract_yaml, infer_file, known_contract
from custseg.model.labels import fit_label_edges

UPLOAD = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
RNG_SEED = 7


def _write(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _run(ingest, path: Path, **kwargs):
    kwargs.setdefault("upload_time", UPLOAD)
    result = ingest(path, **kwargs)
    assert result.status == "accepted", result.report.errors
    return result


def _clean(result) -> pd.DataFrame:
    return read_clean(result.clean_path).to_pandas()


def _order_log(n_customers: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for c in range(1, n_customers + 1):
        for _ in range(int(rng.integers(1, 6))):
            day = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 360)))
            cds = int(rng.integers(1, 5))
            rows.append((f"{c:05d}", day.strftime("%Y%m%d"), cds, round(cds * 12.49, 2)))
    return pd.DataFrame(rows, columns=["cust", "date", "cds", "dollars"])


def test_order_log_without_contract_keeps_every_customer_and_gets_rfm(ingest, tmp_path) -> None:
    log = _order_log()
    result = _run(ingest, _write(tmp_path, "cdnow.csv", log))
    contract = result.contract
    assert contract.grain == "transaction"
    assert result.report.rows_rejected == 0
    clean = _clean(result)
    assert set(clean["customer_id"]) == set(log["cust"])  # leading zeros intact
    assert clean["amount"].sum() == pytest.approx(log["dollars"].sum())
    features = build_features(clean, contract, dt.date(2024, 1, 1))
    assert len(features.frame) == log["cust"].nunique()
    edges = fit_label_edges(features)
    assert edges.r_edges and edges.f_edges and edges.m_edges
    assert "rfm" not in edges.unavailable and "lifecycle" not in edges.unavailable


def _marketing_table(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)
    frame = pd.DataFrame(
        {
            "ID": rng.permutation(np.arange(1000, 1000 + n)),
            "Year_Birth": rng.integers(1945, 2000, n),
            "Education": rng.choice(["Graduation", "PhD", "Master", "Basic"], n),
            "Marital_Status": rng.choice(["Single", "Married", "Together"], n),
            "Income": np.round(rng.normal(52000, 15000, n), 0),
            "Kidhome": rng.integers(0, 3, n),
            "Teenhome": rng.integers(0, 3, n),
            "Dt_Customer": [
                (dt.date(2012, 8, 1) + dt.timedelta(days=int(d))).strftime("%d-%m-%Y")
                for d in rng.integers(0, 700, n)
            ],
            "Recency": rng.integers(0, 100, n),
        }
    )
    for col in ("MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts", "MntSweetProducts",
                "MntGoldProds"):  # fmt: skip
        frame[col] = rng.integers(0, 1500, n)
    for col in ("NumDealsPurchases", "NumWebPurchases", "NumCatalogPurchases",
                "NumStorePurchases", "NumWebVisitsMonth"):  # fmt: skip
        frame[col] = rng.integers(0, 15, n)
    for k in (3, 4, 5, 1, 2):
        frame[f"AcceptedCmp{k}"] = rng.integers(0, 2, n)
    frame["Complain"] = rng.integers(0, 2, n)
    frame["Z_CostContact"] = 3
    frame["Z_Revenue"] = 11
    frame["Response"] = (rng.random(n) < 0.15).astype(int)
    assert frame.shape[1] == 29
    return frame


def test_wide_marketing_table_uses_spend_channel_and_response(ingest, tmp_path) -> None:
    table = _marketing_table()
    result = _run(ingest, _write(tmp_path, "marketing.csv", table))
    assert result.report.rows_rejected == 0
    contract = result.contract
    clean = _clean(result)
    features = build_features(clean, contract, dt.date(2024, 1, 1))
    for used in ("mnt_wines", "mnt_gold_prods", "num_web_purchases", "num_store_purchases",
                 "num_web_visits_month", "recency_days", "age"):  # fmt: skip
        assert used in features.numeric, used
    assert "campaign_response" in features.extras.columns
    assert features.extras["campaign_response"].mean() == pytest.approx(table["Response"].mean())
    ages = features.frame["age"].to_numpy()
    assert ages.min() >= 2024 - 2000 and ages.max() <= 2024 - 1945  # birth year -> age
    assert "days_since_signup_date" in features.extras.columns
    assert fit_label_edges(features).recency_feature == "recency_days"


def test_personal_data_found_by_value_never_reaches_clean_data(ingest, tmp_path) -> None:
    n = 40
    first = ["Anna", "Ben", "Carla", "David", "Emma", "Frank", "Greta", "Hugo"]
    last = ["Smith", "Jones", "Meyer", "Brown", "Novak", "Rossi", "Dubois", "Lee"]
    table = pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "contact": [f"user{i}@example.com" for i in range(n)],
            "reach": [f"+44 20 7946 {i:04d}" for i in range(n)],
            "who": [f"{first[i % 8]} {last[(i * 3) % 8]}{'s' * (i // 8)}" for i in range(n)],
            "where": [f"{i + 1} Station Road" for i in range(n)],
            "area": [f"SW1A {i % 9}AA" for i in range(n)],
            "spend": np.linspace(10, 400, n).round(2),
        }
    )
    result = _run(ingest, _write(tmp_path, "pii.csv", table))
    clean = _clean(result)
    for col in ("contact", "reach", "who", "where", "area"):
        assert col not in clean.columns, col
    text = clean.astype(str).to_string()
    assert "@example.com" not in text and "Station Road" not in text
    assert "spend" in clean.columns or "total_spend" in clean.columns


# --- the silent disasters --------------------------------------------------------------


def test_money_column_named_like_an_order_count_rejects_nothing(ingest, tmp_path) -> None:
    n = 50
    table = pd.DataFrame(
        {
            "CUST_ID": [f"C{i:05d}" for i in range(n)],
            "BALANCE": np.linspace(0, 5000, n).round(4),
            "PURCHASES": np.r_[np.linspace(0.5, 900, n - 5).round(2), [0, 1, 2, 3, 4]],
        }
    )
    result = _run(ingest, _write(tmp_path, "cc.csv", table))
    assert result.report.rows_rejected == 0
    assert _clean(result)["purchases"].sum() == pytest.approx(table["PURCHASES"].sum())


def test_outcome_with_own_values_rejects_no_row(ingest, tmp_path) -> None:
    n = 60
    flag = ["Attrited Customer" if i % 6 == 0 else "Existing Customer" for i in range(n)]
    flag[5] = "unknown?"
    table = pd.DataFrame(
        {"CLIENTNUM": np.arange(700000, 700000 + n), "Attrition_Flag": flag,
         "Credit_Limit": np.linspace(1000, 30000, n).round(1)}
    )  # fmt: skip
    result = _run(ingest, _write(tmp_path, "bank.csv", table))
    assert result.report.rows_rejected == 0
    assert sum(result.report.repaired["churn"].values()) == 1  # the unparseable one, counted
    features = build_features(_clean(result), result.contract, dt.date(2024, 1, 1))
    churn = features.extras["churn"]
    assert churn.isna().sum() == 1
    assert churn.sum() == 10  # the attrited customers


def test_zero_spread_is_not_capped(ingest, tmp_path) -> None:
    tenure = [12] * 40 + [6, 7, 8, 9, 10, 11]
    table = pd.DataFrame({"customer_id": range(len(tenure)), "tenure": tenure,
                          "monthly_charges": np.linspace(20, 90, len(tenure))})  # fmt: skip
    result = _run(ingest, _write(tmp_path, "tenure.csv", table))
    assert _clean(result)["tenure"].tolist() == tenure


def test_other_since_last_columns_are_not_taken_as_recency(ingest, tmp_path) -> None:
    n = 50
    table = pd.DataFrame(
        {
            "policy_id": [f"P{i}" for i in range(n)],
            "months_since_last_claim": np.arange(n) % 30,
            "customer_lifetime_value": np.linspace(500, 9000, n).round(2),
        }
    )
    result = _run(ingest, _write(tmp_path, "insurance.csv", table))
    features = build_features(_clean(result), result.contract, dt.date(2024, 1, 1))
    assert "months_since_last_claim" in features.numeric
    assert fit_label_edges(features).recency_feature is None


def test_two_headers_meaning_one_column_are_both_kept(ingest, tmp_path) -> None:
    table = pd.DataFrame(
        {"customer_id": ["1", "2", "3", "4"], "State": ["ca", "ny", "ca", "tx"],
         "Region": ["west", "east", "west", "south"], "income": [10.5, 20.5, 30.0, 40.0]}
    )  # fmt: skip
    result = _run(ingest, _write(tmp_path, "regions.csv", table))
    clean = _clean(result)
    assert clean["state"].tolist() == ["ca", "ny", "ca", "tx"]
    assert clean["region"].tolist() == ["west", "east", "west", "south"]


def test_table_without_id_gets_stable_row_ids(ingest, tmp_path) -> None:
    table = pd.DataFrame({"age": [30, 41, 52, 63], "job": ["a", "b", "a", "c"],
                          "balance": [10.5, 20.25, 0.0, 7.75]})  # fmt: skip
    path = _write(tmp_path, "bank.csv", table)
    result = _run(ingest, path)
    assert _clean(result)["customer_id"].tolist() == ["2", "3", "4", "5"]
    assert any("no customer id column" in w for w in result.report.warnings)
    assert path.read_text().splitlines()[0] == "age,job,balance"  # the upload untouched


def test_log_without_amounts_gets_recency_and_frequency(ingest, tmp_path) -> None:
    log = _order_log().drop(columns=["dollars", "cds"])
    log["item"] = np.resize(["milk", "bread", "eggs"], len(log))
    result = _run(ingest, _write(tmp_path, "groceries.csv", log))
    assert result.contract.grain == "transaction"
    assert any("monetary value (M) unavailable" in w for w in result.report.warnings)
    as_of = dt.date(2024, 1, 1)
    features = build_features(_clean(result), result.contract, as_of)
    assert {"recency_days", "frequency"} <= set(features.numeric)
    assert "monetary" not in features.numeric and features.value is None
    limits = EngineLimits(memory_limit_mb=128, temp_dir=tmp_path / "spill", threads=1)
    duck = collect_features(clean_files(result.clean_path), result.contract, as_of, limits)
    assert duck.numeric == features.numeric and duck.value is None


@pytest.mark.parametrize(
    "spellings",
    [
        ["11-Feb-17", "03-Mar-17", "28-Dec-16"],
        ["2017-02-11T10:00", "2017-03-03T09:30", "2016-12-28T17:45"],
        ["11.02.2017", "03.03.2017", "28.12.2016"],
        ["20170211", "20170303", "20161228"],
    ],
)
def test_common_date_spellings(ingest, tmp_path, spellings: list[str]) -> None:
    log = pd.DataFrame(
        {"customer": ["a", "b", "a", "c", "b", "a"], "date": spellings * 2,
         "amount": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]}
    )  # fmt: skip
    result = _run(ingest, _write(tmp_path, "dates.csv", log))
    assert result.report.rows_rejected == 0
    days = pd.to_datetime(_clean(result)["event_time"]).dt.strftime("%Y-%m-%d")
    assert set(days) == {"2017-02-11", "2017-03-03", "2016-12-28"}


def test_boolean_outcome_in_every_spelling(ingest, tmp_path) -> None:
    answers = ["Yes", "No", "TRUE", "FALSE", "Y", "N", "", "yes", "no", "1", "0", "n"]
    table = pd.DataFrame({"customer_id": range(len(answers)), "Accepted Offer": answers,
                          "spend": np.linspace(5, 50, len(answers))})  # fmt: skip
    result = _run(ingest, _write(tmp_path, "offers.csv", table))
    features = build_features(_clean(result), result.contract, dt.date(2024, 1, 1))
    response = features.extras["campaign_response"]
    assert response.sum() == 5 and response.notna().sum() == 11


# --- the contract: written, printed, pinned ----------------------------------------------


def test_inferred_contract_is_written_and_round_trips(ingest, tmp_path) -> None:
    path = _write(tmp_path, "cdnow.csv", _order_log(10))
    result = _run(ingest, path)
    written = result.contract_path.with_suffix(".yaml")
    again = load_contract(written)
    assert again.model_dump() == result.contract.model_dump()
    printed = infer_file(path)
    assert contract_yaml(printed.contract) == contract_yaml(result.contract)


def test_given_contract_pins_columns_and_strict_ignores_the_rest(ingest, tmp_path) -> None:
    table = pd.DataFrame({"member": ["1", "2", "3"], "score": ["7", "8", "9"],
                          "extra": [1.5, 2.5, 3.5]})  # fmt: skip
    path = _write(tmp_path, "pinned.csv", table)
    yaml_text = (
        "kind: mine\ngrain: customer\n{strict}columns:\n"
        "  - {{name: customer_id, type: id, role: customer_id, aliases: [member]}}\n"
        "  - {{name: score, type: category, role: category}}\n"
    )
    loose = load_contract(yaml_text.format(strict="").encode())
    clean = _clean(_run(ingest, path, contract=loose))
    assert clean["score"].tolist() == ["7", "8", "9"]  # pinned: a category, not a number
    assert "extra" in clean.columns  # not listed: inferred
    strict = load_contract(yaml_text.format(strict="strict: true\n").encode())
    assert "extra" not in _clean(_run(ingest, path, contract=strict)).columns


def test_demo_response_rate_is_read_from_every_spelling(ingest, tmp_path) -> None:
    from custseg.local.demo_data import write_demo_data

    customers, _ = write_demo_data(tmp_path / "demo", seed=1)
    result = _run(ingest, customers, upload_time=dt.datetime.now(dt.UTC))
    features = build_features(_clean(result), result.contract, dt.date.today())
    rate = features.extras["campaign_response"].mean()
    assert 0.08 < rate < 0.18  # about 12 % answered yes (Yes / TRUE / Y / yes)


def test_a_known_contract_reads_a_file_whose_headers_it_names() -> None:
    log = builtin_contract("transactions")
    headers = ["InvoiceNo", "InvoiceDate", "CustomerID", "Quantity", "UnitPrice"]
    assert known_contract(headers, [log]) is log
    # a header the contract does not name, or a required column missing: inferred anew
    assert known_contract([*headers, "Loyalty tier"], [log]) is None
    assert known_contract(["InvoiceNo", "Quantity", "UnitPrice"], [log]) is None
    assert known_contract(headers, []) is None


# The cheap Arrow filters before inference's Python regexes must never rule out a value
# the regex matches (else a column's guess would change).
_FILTERED = [
    ("_EMAIL", "match", "_HAS_AT"),
    ("_STREET", "match", "_HAS_SPACE"),
    ("_PERSON", "match", "_HAS_SPACE"),
    ("_POSTCODE", "match", "_HAS_POSTCODE_CHAR"),
    ("_CURRENCY", "search", "_HAS_NON_NUMBER_CHAR"),
]
_ALPHABET = "0123456789 .,+-eE@$€£%()AZaz_'ſK١٢\u00a0\t" + "usdgbpchfr"


def _values() -> st.SearchStrategy[str]:
    from custseg.ingest.contracts import inference as inf

    shaped = [
        st.from_regex(getattr(inf, name), fullmatch=True)
        for name in ("_EMAIL", "_STREET", "_PERSON", "_POSTCODE", "_CURRENCY", "_PHONE", "_PLAIN")
    ]
    return st.one_of(st.text(_ALPHABET, max_size=24), *shaped)


@given(st.lists(_values(), min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_value_filters_keep_every_value_their_regex_matches(texts: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from custseg.ingest.contracts import inference as inf

    arrow = pa.array(texts, type=pa.string())
    for regex, how, needs in _FILTERED:
        kept = pc.match_substring_regex(arrow, getattr(inf, needs)).to_pylist()
        for text, ok in zip(texts, kept, strict=True):
            if getattr(getattr(inf, regex), how)(text):
                assert ok, (regex, text)
    phone_kept = pc.match_substring_regex(arrow, inf._HAS_NON_DIGIT_OR_00).to_pylist()
    for text, ok in zip(texts, phone_kept, strict=True):
        if inf._PHONE.match(text) and re.search(r"^\+|^00|[\s().-]", text):
            assert ok and len(text) >= inf._PHONE_MIN_LEN, text
    pure = pc.match_substring_regex(arrow, inf._PURE_NUMBER).to_pylist()
    plain = pc.match_substring_regex(arrow, inf._PLAIN_ASCII).to_pylist()
    for text, is_pure, is_plain in zip(texts, pure, plain, strict=True):
        if is_pure:  # nothing to strip, no comma shapes, and RE2 reads _PLAIN as re does
            assert inf._NUMBER_STRIP.sub("", text) == text
            assert not inf._COMMA_DECIMAL.match(text) and not inf._THOUSANDS.match(text)
            assert is_plain == bool(inf._PLAIN.match(text)), text

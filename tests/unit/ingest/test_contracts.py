"""Default contracts and contract detection."""

from __future__ import annotations

import pytest

from custseg.ingest.contracts import Role, builtin_contract, normalise_header
from custseg.ingest.contracts.detect import detect_contract
from custseg.ingest.validation import check_headers

MALL = ["CustomerID", "Genre", "Age", "Annual_Income", "Spending_Score"]
TELCO = [
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
]
RETAIL = ["InvoiceNo", "InvoiceDate", "CustomerID", "Country", "Quantity", "UnitPrice"]


@pytest.mark.parametrize(
    "header", ["CustomerID", "customer_id", "Customer ID", "customerID", "cust_id", "CUST-ID"]
)
def test_id_header_spellings_map_to_customer_id(header: str) -> None:
    contract = builtin_contract("customers")
    assert contract.header_map()[normalise_header(header)] == "customer_id"


def test_mall_headers_all_mapped() -> None:
    contract, reason = detect_contract(MALL)
    assert contract.kind == "customers", reason
    check = check_headers(MALL, contract)
    assert not check.issues and not check.ignored
    assert check.mapped["Genre"] == "gender"
    assert check.mapped["Annual_Income"] == "annual_income"


def test_telco_headers_all_mapped_and_churn_is_outcome() -> None:
    contract, _ = detect_contract(TELCO)
    assert contract.kind == "customers"
    check = check_headers(TELCO, contract)
    assert not check.issues
    assert check.ignored == []
    churn = contract.column("churn")
    assert churn.role == Role.OUTCOME and churn.positive == "yes"
    assert contract.column("senior_citizen").type == "boolean"


def test_retail_detected_as_transactions() -> None:
    contract, reason = detect_contract(RETAIL)
    assert contract.kind == "transactions"
    assert "event time" in reason
    check = check_headers(RETAIL, contract)
    assert not check.issues
    assert check.mapped == {
        "InvoiceNo": "invoice_id",
        "InvoiceDate": "event_time",
        "CustomerID": "customer_id",
        "Country": "country",
        "Quantity": "quantity",
        "UnitPrice": "unit_price",
    }


def test_personal_columns_declared() -> None:
    contract = builtin_contract("customers")
    personal = {c.name for c in contract.by_role(Role.PERSONAL)}
    assert {"name", "email", "phone", "address", "postcode"} <= personal
    assert contract.value_columns[0] == "total_spend"


def test_header_problems_all_collected() -> None:
    contract = builtin_contract("transactions")
    check = check_headers(["CustomerID", "customer_id", "Notes"], contract)
    codes = [i.code for i in check.issues]
    assert "duplicate_header" in codes
    assert "missing_required_column" in codes  # event_time and amount
    assert check.ignored == ["Notes"]
    check = check_headers(["Name", "Age"], builtin_contract("customers"))
    assert [i.code for i in check.issues] == ["no_customer_id"]

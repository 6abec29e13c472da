"""Campaign results are recognised from their headers and cleaned by the campaign contract."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from custseg.campaigns.measure import campaign_rows
from custseg.dataset.clean_data import read_clean
from custseg.ingest.contracts.detect import detect_contract
from custseg.ingest.pipeline import ingest_file
from custseg.local.demo_data import CAMPAIGN_HEADERS, demo_campaign, write_demo_campaign

RETAIL = ["InvoiceNo", "InvoiceDate", "CustomerID", "Country", "Quantity", "UnitPrice"]
MALL = ["CustomerID", "Genre", "Age", "Annual_Income", "Spending_Score"]


def test_campaign_results_are_detected_and_other_files_are_not() -> None:
    contract, reason = detect_contract(CAMPAIGN_HEADERS)
    assert contract.kind == "campaign", reason
    assert reason.startswith("campaign: group plus clicked, converted, opened")
    contract, _ = detect_contract(["customer_id", "holdout_flag", "converted_at", "revenue"])
    assert contract.kind == "campaign"
    assert detect_contract(RETAIL)[0].kind == "transactions"
    assert detect_contract(MALL)[0].kind == "customers"
    # a customer table with a response column but no group is not a campaign
    assert detect_contract([*MALL, "Response"])[0].kind == "customers"


def test_a_campaign_file_is_ingested_and_read_back_as_campaign_rows(tmp_path: Path) -> None:
    ids = [f"{i:05d}" for i in range(300)]
    frame, _ = demo_campaign(ids, [i % 3 for i in range(300)], sent=dt.datetime(2026, 11, 2, 9))
    path = write_demo_campaign(tmp_path / "campaign.csv", frame)
    result = ingest_file(
        path, tmp_path / "out", source_name="campaign.csv", dataset="shop", run_id="r1"
    )
    assert result.status == "accepted" and result.contract.kind == "campaign"
    clean = read_clean(result.clean_path).to_pandas()
    rows, counts = campaign_rows(clean, "campaign")
    assert len(rows) == 300 and counts["rows_without_group"] == 0
    assert rows["customer_id"].iloc[0] == "00000"  # ids stay text
    assert set(rows["group"]) == {"treatment", "control"}  # "Holdout" means control
    assert rows["converted"].sum() == (frame["Converted"] == "yes").sum()
    paid = pd.to_numeric(frame["Revenue"].replace("", None))
    assert rows["revenue"].sum() == pd.Series(paid).fillna(0).sum()

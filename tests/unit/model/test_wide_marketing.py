"""A wide marketing table (29 columns: spend per category, purchases per channel, web
visits, recency in days, enrolment date, birth year, campaign acceptances, a response
flag) gives three or more segments with different actions that follow from what sets each
apart; correlated spend columns weigh as one total plus shares. The file and its contract
are built here."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from custseg.dataset.clean_data import read_clean
from custseg.features.build import build_features
from custseg.ingest.contracts import load_contract
from custseg.ingest.pipeline import ingest_file
from custseg.model.training import train_model

SPEND = ["MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts", "MntSweetProducts"]
SPEND += ["MntGoldProds"]
CHANNELS = ["NumDealsPurchases", "NumWebPurchases", "NumCatalogPurchases", "NumStorePurchases"]
CAMPAIGNS = [f"AcceptedCmp{i}" for i in (3, 4, 5, 1, 2)]

CONTRACT = """\
kind: marketing
grain: customer
value_columns: [spend]
columns:
  - {name: customer_id, type: id, role: customer_id, required: true, aliases: [ID]}
  - {name: year_birth, type: integer, role: attribute}
  - {name: education, type: category, role: attribute}
  - {name: marital_status, type: category, role: attribute}
  - {name: income, type: float, role: numeric, missing: median}
  - {name: kidhome, type: integer, role: attribute}
  - {name: teenhome, type: integer, role: attribute}
  - {name: dt_customer, type: date, role: numeric}
  - {name: recency, type: integer, role: numeric}
{spend}
{channels}
  - {name: num_web_visits_month, type: integer, role: numeric}
{campaigns}
  - {name: complain, type: boolean, role: attribute}
  - {name: z_cost_contact, type: integer, role: attribute}
  - {name: z_revenue, type: integer, role: attribute}
  - {name: response, type: boolean, role: outcome}
"""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _contract_text() -> str:
    def lines(cols: list[str], kind: str, group: str) -> str:
        return "\n".join(
            f"  - {{name: {_snake(c)}, type: {kind}, role: numeric, group: {group}}}" for c in cols
        )

    return (
        CONTRACT.replace("{spend}", lines(SPEND, "float", "spend"))
        .replace("{channels}", lines(CHANNELS, "integer", "purchases"))
        .replace("{campaigns}", lines(CAMPAIGNS, "integer", "campaigns_accepted"))
    )


def marketing_table(n_per: int = 120, seed: int = 3) -> pd.DataFrame:
    """Four kinds of customer: affluent loyal responders, budget families buying on deals,
    lapsed mid-spenders and new web customers."""
    rng = np.random.default_rng(seed)
    #        income  spend  recency  tenure_d  deals web cat store visits accept response
    kinds = {
        "affluent": (82_000, 1_400, 15, 2_200, 1, 5, 6, 9, 3, 0.6, 0.45),
        "budget": (32_000, 90, 45, 1_500, 5, 3, 0, 3, 8, 0.02, 0.05),
        "lapsed": (55_000, 500, 85, 2_000, 2, 4, 2, 6, 5, 0.05, 0.03),
        "new": (48_000, 150, 10, 120, 2, 5, 1, 2, 7, 0.1, 0.12),
    }
    rows = []
    as_of = dt.date(2024, 6, 30)
    for kind, (inc, spend, rec, ten, deals, web, cat, store, visits, acc, resp) in kinds.items():
        for _ in range(n_per):
            jitter = rng.uniform(0.75, 1.25, 12)
            mix = rng.dirichlet([4, 1, 3, 1, 1, 1.5] if kind == "affluent" else [2, 2, 2, 2, 2, 2])
            row = {
                "ID": f"{len(rows):05d}",
                "Year_Birth": int(rng.integers(1950, 2000)),
                "Education": rng.choice(["Graduation", "PhD", "Master", "Basic"]),
                "Marital_Status": rng.choice(["Married", "Single", "Together"]),
                "Income": round(inc * jitter[0]),
                "Kidhome": int(rng.integers(1, 3) if kind == "budget" else rng.integers(0, 2)),
                "Teenhome": int(rng.integers(0, 2)),
                "Dt_Customer": (as_of - dt.timedelta(days=int(ten * jitter[1]))).isoformat(),
                "Recency": int(min(99, rec * jitter[2])),
            }
            row.update({c: round(spend * jitter[3] * m) for c, m in zip(SPEND, mix, strict=True)})
            counts = (deals, web, cat, store)
            row.update(
                {c: round(v * j) for c, v, j in zip(CHANNELS, counts, jitter[4:8], strict=True)}
            )
            row["NumWebVisitsMonth"] = round(visits * jitter[8])
            row.update({c: int(rng.random() < acc) for c in CAMPAIGNS})
            row.update({"Complain": int(rng.random() < 0.01), "Z_CostContact": 3, "Z_Revenue": 11})
            row["Response"] = int(rng.random() < resp)
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    tmp = tmp_path_factory.mktemp("wide")
    table = marketing_table()
    assert table.shape[1] == 29
    data = tmp / "marketing.csv"
    table.to_csv(data, index=False)
    contract = load_contract(_contract_text().encode())
    result = ingest_file(
        data, tmp / "out", source_name="marketing.csv", dataset="mk", run_id="r", contract=contract
    )
    assert result.status == "accepted" and result.report.rows_kept == len(table)
    assert result.clean_path is not None
    clean = read_clean(result.clean_path).to_pandas()
    features = build_features(clean, result.contract, as_of=dt.date(2024, 6, 30))
    model = train_model(features, contract=result.contract, model_name="mk")
    return features, model


def test_spend_and_channel_columns_weigh_as_a_total_and_shares(trained: tuple) -> None:
    features, _ = trained
    assert "spend_total" in features.numeric and "mnt_wines_share" in features.numeric
    assert "purchases_total" in features.numeric and "num_web_purchases_share" in features.numeric
    assert not any(c in features.numeric for c in ("mnt_wines", "num_store_purchases"))
    assert features.value is not None and features.value.name == "spend_total"
    assert "response" in features.extras.columns  # an outcome, never a feature


def test_three_or_more_segments_with_different_actions(trained: tuple) -> None:
    _, model = trained
    segments = model.metadata["segments"]
    assert model.k >= 3
    actions = [s["action"] for s in segments]
    assert len(set(actions)) == len(actions)
    assert all(s["action_reason"] for s in segments)
    assert "k = " in model.metadata["k_choice"]


def test_personas_write_durations_and_years_for_people(trained: tuple) -> None:
    _, model = trained
    text = " ".join(s["description"] for s in model.metadata["segments"])
    assert "days since" not in text
    assert not re.search(r"\d\.0\b(?! years)", text)  # no "1446.0"-style raw floats
    assert re.search(r"\d+ (days|months)|\d+\.\d years", text)

"""A user's own contract in the artifact bucket is used for their dataset's uploads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CONTRACT = """
kind: loyalty
grain: customer
version: "7"
value_columns: [points]
columns:
  - {name: customer_id, type: id, role: customer_id, required: true, aliases: [member_no]}
  - {name: points, type: float, role: numeric, min: 0, missing: median}
  - {name: visits, type: integer, role: numeric, min: 0, missing: median}
  - {name: tier, type: category, role: category, allowed: [bronze, silver, gold]}
"""


def test_uploads_use_the_datasets_own_contract(stack: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 120
    frame = pd.DataFrame(
        {
            "Member No": [f"M{i:05d}" for i in range(n)],
            "Points": np.r_[rng.normal(100, 10, n // 2), rng.normal(900, 50, n - n // 2)].round(),
            "Visits": np.r_[rng.integers(1, 4, n // 2), rng.integers(20, 30, n - n // 2)],
            "Tier": ["Gold" if i % 3 == 0 else "silver" for i in range(n)],
        }
    )
    frame.loc[5, "Tier"] = "platinum"  # not allowed by the contract: this row is rejected
    path = tmp_path / "members.csv"
    frame.to_csv(path, index=False)
    contract = tmp_path / "loyalty.yaml"
    contract.write_text(CONTRACT, encoding="utf-8")
    stack.put_contract("club", contract)
    stack.upload(path, "incoming/club/members.csv")
    invocations = stack.drain()
    assert [i.error for i in invocations if i.error] == []

    s3 = stack.client("s3")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="clean/club/")["Contents"]
    ]
    quality_key = next(k for k in keys if k.endswith("quality.json"))
    quality = json.loads(s3.get_object(Bucket=stack.data_bucket, Key=quality_key)["Body"].read())
    assert quality["contract"]["kind"] == "loyalty" and quality["contract"]["version"] == "7"
    assert quality["columns_mapped"]["Member No"] == "customer_id"
    assert quality["rows_kept"] == n - 1 and quality["rows_rejected"] == 1
    latest = json.loads(
        s3.get_object(Bucket=stack.results_bucket, Key="segments/club/latest.json")["Body"].read()
    )
    profiles = json.loads(
        s3.get_object(Bucket=stack.results_bucket, Key=latest["prefix"] + "profiles.json")[
            "Body"
        ].read()
    )
    assert len(profiles["segments"]) >= 2

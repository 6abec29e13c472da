"""report.html: self-contained, names every segment, no personal data."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from custseg.report.html import render_report

SEGMENTS = ["Loyal <champions>", "Bargain hunters", "Sleepers"]


def _profiles() -> dict:
    return {
        "value_measure": "monetary",
        "features": {"numeric": ["recency_days", "frequency"], "categorical": ["channel"]},
        "segments": [
            {
                "id": i,
                "name": name,
                "description": f"{name} description. Suggested action: do it.",
                "action": "retain and reward",
                "action_detail": "keep them close",
                "size": 100 * (i + 1),
                "share": (i + 1) / 6,
                "value_share": [0.6, 0.3, 0.1][i],
                "numeric": {
                    "recency_days": {"std_diff": [-1.2, 0.1, 1.5][i]},
                    "frequency": {"std_diff": [1.4, -0.2, -0.9][i]},
                },
                "traits": [f"trait of {name}"],
            }
            for i, name in enumerate(SEGMENTS)
        ],
    }


def _metrics(previous: bool, outcome: bool) -> dict:
    m: dict = {
        "dataset": "shop",
        "run_id": "r1",
        "run_date": "2024-01-02",
        "as_of": "2024-01-01",
        "model": {"version": "v1"},
        "customers": 600,
        "verdict": "retrain",
        "reasons": ["recency_days drifted: PSI 0.87 > 0.25"],
        "data_quality": {
            "available": True,
            "rows_read": 700,
            "rows_kept": 600,
            "rows_rejected": 100,
            "reject_share": 0.1429,
            "top_reasons": [{"reason": "customer_id: required value missing", "rows": 100}],
        },
        "drift": {
            "numeric": {"recency_days": {"psi": 0.87}, "frequency": {"psi": 0.05}},
            "categorical": {"channel": {"psi": 0.12}},
            "segment_shares": {"psi": 0.02, "max_abs_diff": 0.01},
        },
        "thresholds": {"psi_watch": 0.1, "psi_retrain": 0.25},
        "labels": {
            "rfm_available": True,
            "rfm_grid": {"counts": np.arange(25).reshape(5, 5).tolist()},
        },
        "value": {"top10_share": 0.55},
        "cluster_quality": {"silhouette": 0.41, "sample_size": 600, "distance_ratio": 1.0},
        "stability": {"available": False},
        "outcomes": {},
    }
    if previous:
        m["stability"] = {
            "available": True,
            "same_model": True,
            "common_customers": 500,
            "changed": 50,
            "changed_share": 0.1,
            "new_customers": 100,
            "gone_customers": 0,
            "transitions": {
                "from": [{"id": i, "name": n} for i, n in enumerate(SEGMENTS)],
                "to": [{"id": i, "name": n} for i, n in enumerate(SEGMENTS)],
                "counts": [[90, 5, 5], [10, 180, 10], [0, 20, 180]],
            },
        }
    if outcome:
        m["outcomes"] = {
            "churn": {
                "overall_rate": 0.265,
                "lift_min": 0.3,
                "lift_max": 1.7,
                "by_segment": [
                    {"id": i, "name": n, "rate": r, "lift": r / 0.265}
                    for i, (n, r) in enumerate(zip(SEGMENTS, [0.08, 0.2, 0.45], strict=True))
                ],
            }
        }
    return m


def _sample() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "pc1": rng.normal(size=90),
            "pc2": rng.normal(size=90),
            "segment_id": np.repeat([0, 1, 2], 30),
        }
    )


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower()
    assert "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "<link" not in page.lower()


def test_report_is_self_contained_and_names_every_segment() -> None:
    page = render_report(_profiles(), _metrics(True, True), sample=_sample(), title="Shop segments")
    _assert_self_contained(page)
    for name in SEGMENTS:
        assert name.replace("<", "&lt;").replace(">", "&gt;") in page  # escaped
    assert "<champions>" not in page
    # sizes, profile, map, rfm, drift, moves, churn: inline SVG, each well-formed XML
    svgs = _svgs(page)
    assert len(svgs) == 7
    titles = [svg.find("{http://www.w3.org/2000/svg}title").text for svg in svgs]  # type: ignore[union-attr]
    assert titles == [
        "How big is each segment, and how much value does it bring?",
        "What sets each segment apart (red = above average, blue = below)",
        "Map of sampled customers, coloured by segment",
        "Customers by recency and frequency",
        "Change per measure, largest first",
        "Where did last run's customers go?",
        "Churn rate per segment",
    ]
    assert "data:image" not in page and "<img" not in page
    assert "Verdict: Retrain" in page and "recency_days drifted: PSI 0.87 &gt; 0.25" in page
    assert "customer_id: required value missing" in page
    assert "Suggested action: do it." not in page  # shown once, as "What to do"
    assert "Retain and reward: keep them close" in page


def test_report_without_history_rfm_or_outcome_says_so() -> None:
    metrics = _metrics(False, False)
    metrics["labels"] = {"rfm_available": False}
    page = render_report(_profiles(), metrics, sample=None, title="Plain")
    _assert_self_contained(page)
    assert "First run" in page
    assert "RFM scores are not available" in page
    assert "Outcomes by segment" not in page
    for name in ["Bargain hunters", "Sleepers"]:
        assert name in page
    # sizes, profile and drift only: no map, RFM grid, transitions or outcome chart
    assert len(_svgs(page)) == 3
    assert "Too few customers to draw a map" in page


def test_report_without_segments_or_baseline_says_so() -> None:
    page = render_report({"segments": []}, {"customers": 0}, sample=None, title="Empty")
    _assert_self_contained(page)
    assert "<svg" not in page
    assert "No segments." in page and "No numeric measures to compare." in page
    assert "No training baseline." in page


def test_report_escapes_hostile_segment_names_in_cards_and_charts() -> None:
    profiles = _profiles()
    profiles["segments"][1]["name"] = '<b>&"x"'
    page = render_report(profiles, _metrics(True, True), sample=_sample(), title="<t>")
    _assert_self_contained(page)
    assert '<b>&"x"' not in page and "<t>" not in page
    assert page.count("&lt;b&gt;&amp;&quot;x&quot;") >= 6  # card, sizes, profile, map, ...
    assert len(_svgs(page)) == 7  # still well-formed


def test_rendering_does_not_import_matplotlib() -> None:
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from test_report import _profiles, _metrics, _sample\n"
        "from custseg.report.html import render_report\n"
        "page = render_report(_profiles(), _metrics(True, True), sample=_sample(), title='t')\n"
        "assert page.count('<svg') == 7\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL')))\n"
    )
    here = Path(__file__).resolve().parent
    shared = here.parents[2] / "shared"
    out = subprocess.run(
        [sys.executable, "-c", code, str(here), str(shared)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "[]"


def test_report_says_why_the_as_of_date_is_that_date() -> None:
    metrics = {**_metrics(True, True), "as_of": "2026-02-02"}
    metrics["as_of_reason"] = "the day after the last plausible event (2026-02-01)"
    page = render_report(_profiles(), metrics, sample=None, title="Shop")
    assert "customers as of 2026-02-02 (the day after the last plausible event" in page

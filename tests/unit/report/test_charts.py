"""custseg.report.charts: well-formed, escaped, accessible, bounded SVG whose labels do not
collide."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from custseg.report import charts
from custseg.report.charts import (
    MAX_MAP_POINTS,
    PALETTE,
    chart_drift,
    chart_map,
    chart_outcome,
    chart_profile,
    chart_rfm,
    chart_sizes,
    chart_transitions,
    colour,
    fit,
    nice_ticks,
    text_width,
    wrap,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<b>&"x"'
LONG = [
    "Loyal high-value champions who buy every single week from the online store",
    "Bargain hunters",
    HOSTILE,
    "Sleepers",
    "New customers with one order",
    "Big-basket families (mostly weekend shoppers, suburban stores)",
    "Lapsed",
    "VIP",
    "Seasonal gift buyers around Christmas and Mother's Day",
    "Supercalifragilisticexpialidociousandthensomemorewithoutanyspaces",
]
FEATS = [
    "recency_days",
    "frequency",
    "monetary",
    "mean_interval_days",
    "days_since_signup_date",
    "age",
    "annual_income",
    "tenure",
    "monthly_charges",
    "support_tickets_last_quarter",
]


# ------------------------------------------------------------------------------ inputs
def _segments(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    share, value = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    return [
        {
            "id": i,
            "name": LONG[i % len(LONG)],
            "share": float(share[i]),
            "value_share": float(value[i]),
            "numeric": {f: {"std_diff": float(rng.normal(0, 1.3))} for f in FEATS},
        }
        for i in range(n)
    ]


def _profiles(n: int) -> dict[str, Any]:
    return {"segments": _segments(n), "features": {"numeric": FEATS}}


def _metrics(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    names = [{"id": i, "name": LONG[i % len(LONG)]} for i in range(n)]
    counts = rng.integers(0, 20_000, size=(n, n)) + np.diag(rng.integers(50_000, 99_000, size=n))
    return {
        "drift": {
            "numeric": {f: {"psi": float(abs(rng.normal(0, 0.2)))} for f in FEATS},
            "categorical": {"channel": {"psi": 0.12}},
            "segment_shares": {"psi": 0.02},
        },
        "thresholds": {"psi_watch": 0.1, "psi_retrain": 0.25},
        "labels": {
            "rfm_available": True,
            "rfm_grid": {"counts": rng.integers(0, 900_000, size=(5, 5)).tolist()},
        },
        "stability": {
            "available": True,
            "transitions": {"from": names, "to": names, "counts": counts.tolist()},
        },
    }


def _outcome(n: int) -> dict[str, Any]:
    rates = np.linspace(0.02, 0.7, n)
    return {
        "overall_rate": 0.265,
        "by_segment": [
            {"id": i, "name": LONG[i % len(LONG)], "rate": float(r), "lift": float(r / 0.265)}
            for i, r in enumerate(rates)
        ],
    }


def _sample(n_seg: int, rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    seg = np.arange(rows) % n_seg
    return pd.DataFrame(
        {"pc1": rng.normal(size=rows) + seg, "pc2": rng.normal(size=rows), "segment_id": seg}
    )


def _names(n: int) -> dict[int, str]:
    return {i: LONG[i % len(LONG)] for i in range(n)}


def _all_charts(n: int) -> dict[str, str | None]:
    m = _metrics(n)
    return {
        "sizes": chart_sizes(_segments(n)),
        "profile": chart_profile(_profiles(n)),
        "map": chart_map(_sample(n), _names(n)),
        "rfm": chart_rfm(m),
        "drift": chart_drift(m),
        "transitions": chart_transitions(m),
        "outcome": chart_outcome("churn", _outcome(n)),
    }


# ------------------------------------------------------------------------------ helpers
def _parse(svg: str | None) -> ET.Element:
    assert svg is not None
    root = ET.fromstring(svg)  # raises on anything not well-formed
    assert root.tag == SVG + "svg"
    return root


def _texts(root: ET.Element) -> list[str]:
    """Every piece of text a reader can get: visible text and tooltips."""
    return ["".join(el.itertext()) for el in root.iter() if el.tag in (SVG + "text", SVG + "title")]


def _viewbox(root: ET.Element) -> tuple[float, float]:
    _, _, w, h = (float(v) for v in root.attrib["viewBox"].split())
    return w, h


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _text_box(el: ET.Element) -> tuple[Box, bool]:
    """Estimated box of a <text> (the same width estimate the layout uses) and whether it
    is rotated (then the axis-aligned box of the rotated text)."""
    size = float(el.attrib.get("font-size", 13))
    bold = el.attrib.get("font-weight") is not None
    x, y = float(el.attrib["x"]), float(el.attrib["y"])
    baselines, widths = [], []
    base = y
    for span in el.findall(SVG + "tspan"):
        base += float(span.attrib.get("dy", 0))
        baselines.append(base)
        widths.append(text_width(span.text or "", size, bold=bold))
    w = max(widths)
    anchor = el.attrib.get("text-anchor", "start")
    x0 = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
    box = (x0, min(baselines) - 0.75 * size, x0 + w, max(baselines) + 0.22 * size)
    m = re.fullmatch(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", el.attrib.get("transform", ""))
    if not m:
        return box, False
    a, cx, cy = (float(v) for v in m.groups())
    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
    pts = [
        (cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c)
        for px in (box[0], box[2])
        for py in (box[1], box[3])
    ]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (min(xs), min(ys), max(xs), max(ys)), True


def _overlap(a: Box, b: Box, tol: float = 0.5) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


def _inside(a: Box, b: Box, tol: float = 0.5) -> bool:
    return a[0] >= b[0] - tol and a[1] >= b[1] - tol and a[2] <= b[2] + tol and a[3] <= b[3] + tol


def _layout_problems(svg: str | None) -> list[str]:
    """Text outside the drawing, text partly over a bar / cell (a label is either wholly
    inside a rect, like a heatmap value, or wholly outside it), or two labels colliding."""
    root = _parse(svg)
    w, h = _viewbox(root)
    rects = []
    for el in root:  # top-level rects: bars, cells, frames (legend swatches sit in <g>)
        if el.tag == SVG + "rect" and float(el.attrib["height"]) > 0:
            x, y = float(el.attrib["x"]), float(el.attrib["y"])
            rw, rh = float(el.attrib["width"]), float(el.attrib["height"])
            if rw > 0:
                rects.append((x, y, x + rw, y + rh))
    texts = [(el, *_text_box(el)) for el in root if el.tag == SVG + "text"]
    problems = []
    for el, box, _ in texts:
        label = "".join(el.itertext())
        if not _inside(box, (0, 0, w, h)):
            problems.append(f"outside the drawing: {label!r} {box}")
        for r in rects:
            if _overlap(box, r) and not _inside(box, r):
                problems.append(f"over a bar/cell edge: {label!r} {box} {r}")
    flat = [(el, box) for el, box, rotated in texts if not rotated]
    for i, (a, box_a) in enumerate(flat):
        for b, box_b in flat[i + 1 :]:
            if _overlap(box_a, box_b):
                problems.append(f"{''.join(a.itertext())!r} overlaps {''.join(b.itertext())!r}")
    return problems


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("n", [1, 3])
def test_every_chart_is_well_formed_accessible_and_self_contained(n: int) -> None:
    for kind, svg in _all_charts(n).items():
        root = _parse(svg)
        assert svg is not None
        assert root.attrib["width"] == "100%", kind
        w, h = _viewbox(root)
        assert 300 < w <= 1000 and 100 < h < 2000, (kind, w, h)
        assert root.attrib["role"] == "img"
        assert root[0].tag == SVG + "title" and root[0].text, kind
        assert root.attrib["aria-label"] == root[0].text
        low = svg.lower()
        assert "<script" not in low and "href" not in low and "url(" not in low, kind
        assert " on" not in re.sub(r"<title>.*?</title>|>[^<]*<", "><", low)  # no onload=...
        assert re.findall(r"https?://[^\"' ]*", svg) == ["http://www.w3.org/2000/svg"], kind
        assert "id=" not in svg, kind  # ids would clash between charts of one page


def test_titles_axis_labels_and_legends_are_kept() -> None:
    got = {k: " | ".join(_texts(_parse(v))) for k, v in _all_charts(3).items()}
    assert "How big is each segment, and how much value does it bring?" in got["sizes"]
    assert "share of customers" in got["sizes"] and "share of value" in got["sizes"]
    assert "What sets each segment apart (red = above average, blue = below)" in got["profile"]
    assert "vs average (std. dev.)" in got["profile"] and "time between orders" in got["profile"]
    assert "F score: how often they buy" in got["rfm"]
    assert "R score: how recently they bought" in got["rfm"]
    assert "share of customers" in got["rfm"] and "5 bought recently" in got["rfm"]
    assert "change vs the training data (PSI; 0 = same)" in got["drift"]
    assert "watch (0.1)" in got["drift"] and "retrain (0.25)" in got["drift"]
    assert "Where did last run's customers go?" in got["transitions"]
    assert "segment in the previous run" in got["transitions"]
    assert "segment in this run" in got["transitions"]
    assert "Churn rate per segment" in got["outcome"] and "all customers (26%)" in got["outcome"]
    assert "70% (2.6x average)" in got["outcome"]
    for kind in ("sizes", "profile", "map", "transitions", "outcome"):
        for name in LONG[:3]:
            assert name in got[kind], (kind, name)  # whole names, visible or as a tooltip


def test_segment_colours_come_from_the_palette() -> None:
    sizes = chart_sizes(_segments(4))
    assert sizes is not None
    for i in range(4):
        assert f'fill="{PALETTE[i]}"' in sizes
    assert colour(len(PALETTE) + 1) == PALETTE[1]
    scatter = chart_map(_sample(3), _names(3))
    assert scatter is not None
    for i in range(3):
        assert f'stroke="{colour(i)}"' in scatter


def test_names_from_data_are_escaped() -> None:
    for kind, svg in _all_charts(3).items():
        assert svg is not None
        if kind in ("rfm", "drift"):
            continue  # no segment names
        assert "<b>" not in svg, kind
        assert "&lt;b&gt;&amp;&quot;x&quot;" in svg, kind
        assert HOSTILE in _texts(_parse(svg)), kind
    drift = chart_drift({"drift": {"numeric": {'<i>"a&b"</i>': {"psi": 0.3}}}})
    assert drift is not None and "<i>" not in drift
    assert any('<i>"a&b"</i>' in t for t in _texts(_parse(drift)))
    outcome = chart_outcome("<churn>", _outcome(2))
    assert outcome is not None and "<churn>" not in outcome
    assert "<churn> rate per segment" in _texts(_parse(outcome))


def test_control_characters_in_names_do_not_break_the_xml() -> None:
    segs = _segments(2)
    segs[0]["name"] = "Bad\x00name\x1b[31m\ud800"
    root = _parse(chart_sizes(segs))
    assert "Badname[31m" in _texts(root)


@pytest.mark.parametrize("n", range(2, 11))
def test_labels_do_not_overlap_bars_or_each_other(n: int) -> None:
    for kind, svg in _all_charts(n).items():
        assert _layout_problems(svg) == [], (kind, n)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_names_with_long_feature_labels_stay_inside(n: int) -> None:
    """Rotated column labels need room on the left even when row names are short."""
    segs = [{**seg, "name": f"S{i}"} for i, seg in enumerate(_segments(n))]
    long_feats = [f"a_very_long_feature_name_number_{i}_for_testing" for i in range(6)]
    for seg in segs:
        seg["numeric"] = {f: {"std_diff": 0.5} for f in long_feats}
    names = [{"id": i, "name": f"S{i}"} for i in range(n)]
    wide = [{"id": i, "name": f"Brand new segment called number {i}"} for i in range(n)]
    counts = (np.eye(n) * 10 + 1).tolist()
    stability = {"available": True, "transitions": {"from": names, "to": wide, "counts": counts}}
    for svg in (
        chart_profile({"segments": segs, "features": {"numeric": long_feats}}),
        chart_transitions({"stability": stability}),
    ):
        assert _layout_problems(svg) == []


@pytest.mark.parametrize("n", range(1, 11))
def test_only_names_from_data_are_ever_cut(n: int) -> None:
    """Titles, axis labels, legends and values are shown whole; a segment or feature name
    may be cut (with an ellipsis and its full text in a tooltip)."""
    from custseg.scoring.profiles import feature_label

    allowed = set(LONG) | {feature_label(f) for f in FEATS}
    for kind, svg in _all_charts(n).items():
        root = _parse(svg)
        for el in root.iter(SVG + "text"):
            tip = el.find(SVG + "title")
            shown = " ".join(s.text or "" for s in el.findall(SVG + "tspan"))
            if tip is None:
                assert not shown.endswith("…"), (kind, shown)
            else:
                assert tip.text in allowed, (kind, tip.text)


def test_the_layout_check_can_fail() -> None:
    bad = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 100" width="100%">'
        '<rect x="50" y="10" width="100" height="20" fill="#000"/>'
        '<text x="40" y="20" font-size="13"><tspan x="40" dy="4">label</tspan></text>'
        '<text x="60" y="20" font-size="13"><tspan x="60" dy="4">other</tspan></text>'
        '<text x="190" y="60" font-size="13"><tspan x="190" dy="4">far out</tspan></text>'
        "</svg>"
    )
    problems = _layout_problems(bad)
    assert any("outside" in p for p in problems)
    assert any("bar/cell edge" in p for p in problems)
    assert any("overlaps" in p for p in problems)


def test_long_names_are_wrapped_or_cut_with_the_full_name_in_a_title() -> None:
    longest = LONG[0]
    for kind, svg in _all_charts(10).items():
        if kind in ("rfm", "drift"):
            continue
        root = _parse(svg)
        cut = [el for el in root.iter(SVG + "text") if el.find(SVG + "title") is not None]
        for el in cut:
            shown = " ".join(s.text or "" for s in el.findall(SVG + "tspan"))
            full = el.find(SVG + "title").text or ""  # type: ignore[union-attr]
            assert shown.endswith("…") and len(shown) <= len(full), kind
            assert full.startswith(shown[:-1].rstrip()), kind
        assert any(longest == el.find(SVG + "title").text for el in cut) or any(  # type: ignore[union-attr]
            # wrapped on two lines instead
            len(el.findall(SVG + "tspan")) == 2 and "".join(el.itertext()).startswith("Loyal")
            for el in root.iter(SVG + "text")
        ), kind


@pytest.mark.parametrize(
    ("call", "why"),
    [
        (lambda: chart_sizes([]), "no segments"),
        (lambda: chart_profile({"segments": [], "features": {"numeric": ["a"]}}), "no segments"),
        (lambda: chart_profile({"segments": _segments(2), "features": {}}), "no features"),
        (lambda: chart_map(None, {}), "no sample"),
        (lambda: chart_map(pd.DataFrame(columns=["pc1", "pc2", "segment_id"]), {}), "empty"),
        (lambda: chart_map(pd.DataFrame({"pc1": [1.0], "pc2": [2.0]}), {}), "no segment_id"),
        (
            lambda: chart_map(
                pd.DataFrame({"pc1": [np.nan, 1.0], "pc2": [1.0, np.inf], "segment_id": [0, 1]}),
                {},
            ),
            "no finite point",
        ),
        (lambda: chart_rfm({"labels": {"rfm_available": False}}), "no RFM"),
        (
            lambda: chart_rfm({"labels": {"rfm_available": True, "rfm_grid": {"counts": [[1]]}}}),
            "not 5x5",
        ),
        (lambda: chart_drift({}), "no baseline"),
        (lambda: chart_drift({"drift": {"numeric": {"a": {"psi": float("nan")}}}}), "NaN PSI"),
        (lambda: chart_transitions({"stability": {"available": False}}), "first run"),
        (
            lambda: chart_transitions(
                {"stability": {"available": True, "transitions": {"counts": [[0, 0], [0, 0]]}}}
            ),
            "no customer in both runs",
        ),
        (lambda: chart_outcome("churn", {"by_segment": []}), "no rows"),
        (
            lambda: chart_outcome(
                "churn", {"by_segment": [{"id": 0, "name": "a", "rate": float("nan")}]}
            ),
            "NaN rate",
        ),
    ],
)
def test_nothing_to_draw_gives_none(call: Callable[[], str | None], why: str) -> None:
    assert call() is None, why


def test_single_segment_charts_are_drawn() -> None:
    for kind, svg in _all_charts(1).items():
        root = _parse(svg)
        assert LONG[0] in " ".join(_texts(root)) or kind in ("rfm", "drift"), kind
    scatter = chart_map(_sample(1), {0: "Only"})
    assert scatter is not None and scatter.count("<path") == 1


def test_nan_values_are_shown_as_missing_not_drawn_as_numbers() -> None:
    segs = _segments(2)
    segs[0]["share"] = float("nan")
    segs[1]["value_share"] = None
    segs[0]["numeric"]["frequency"]["std_diff"] = float("nan")
    segs[1]["numeric"]["monetary"]["std_diff"] = None  # missing: no difference shown
    sizes = _parse(chart_sizes(segs))
    assert "n/a" in _texts(sizes)
    assert not any("nan" in t.lower() for t in _texts(sizes))
    profile = chart_profile({"segments": segs, "features": {"numeric": FEATS}})
    texts = _texts(_parse(profile))
    assert "n/a" in texts and not any("nan" in t.lower() for t in texts)
    assert texts.count("+0.0") + texts.count("-0.0") >= 1
    assert profile is not None and 'fill="#eceff2"' in profile  # the no-data cell colour

    sample = _sample(2, rows=10)
    sample.loc[[0, 1, 2], "pc1"] = np.nan
    scatter = chart_map(sample, _names(2))
    assert scatter is not None and "nan" not in scatter.lower()
    assert sum(d.count("M") for d in re.findall(r' d="([^"]*)"', scatter)) == 7

    grid = np.full((5, 5), 10.0)
    grid[0, 0] = np.nan
    rfm = chart_rfm({"labels": {"rfm_available": True, "rfm_grid": {"counts": grid.tolist()}}})
    rtexts = _texts(_parse(rfm))
    assert "240" in " ".join(rtexts) or "10" in rtexts
    assert not any("nan" in t.lower() for t in rtexts)

    drift = chart_drift(
        {"drift": {"numeric": {"a": {"psi": float("nan")}, "b": {"psi": 0.3}, "c": {"psi": None}}}}
    )
    labels = _texts(_parse(drift))
    assert "b" in labels and "a" not in labels and "c" not in labels

    outcome = chart_outcome(
        "churn",
        {
            "overall_rate": float("nan"),
            "by_segment": [
                {"id": 0, "name": "kept", "rate": 0.2, "lift": float("nan")},
                {"id": 1, "name": "dropped", "rate": None},
            ],
        },
    )
    otexts = _texts(_parse(outcome))
    assert "kept" in otexts and "dropped" not in otexts and "20%" in otexts


def test_map_is_bounded_and_coordinates_are_rounded() -> None:
    rng = np.random.default_rng(3)
    rows = 4 * MAX_MAP_POINTS
    big = pd.DataFrame(
        {
            "pc1": rng.normal(size=rows),
            "pc2": rng.normal(size=rows),
            "segment_id": rng.integers(0, 4, size=rows),
        }
    )
    svg = chart_map(big, _names(4))
    assert svg is not None
    paths = re.findall(r' d="([^"]*)"', svg)
    assert len(paths) == 4
    dots = sum(p.count("M") for p in paths)
    assert 0.9 * MAX_MAP_POINTS < dots <= MAX_MAP_POINTS
    numbers = re.findall(r"[\d.]+", "".join(paths).replace("h0", " "))
    assert all(re.fullmatch(r"\d+(\.\d)?", v) for v in numbers)
    assert len(svg) < 30 * MAX_MAP_POINTS  # ~15 bytes a dot
    assert chart_map(big, _names(4)) == svg  # deterministic


def test_identical_points_and_one_point_are_drawn() -> None:
    same = pd.DataFrame({"pc1": [1.0] * 5, "pc2": [2.0] * 5, "segment_id": [0] * 5})
    svg = chart_map(same, {0: "All the same"})
    assert svg is not None
    (d,) = re.findall(r' d="([^"]*)"', svg)
    assert d.count("M") == 1  # duplicates after rounding are drawn once
    assert "5 customers in the sample" in svg


def test_drift_shows_the_largest_values_and_says_how_many_are_hidden() -> None:
    many = {f"f{i}": {"psi": 0.3 + i / 100} for i in range(20)}
    svg = chart_drift({"drift": {"numeric": many}})
    texts = _texts(_parse(svg))
    assert any("(5 more, all smaller, not shown)" in t for t in texts)
    assert "f19" in texts and "f4" not in texts
    bars = re.findall(r'<rect [^>]*fill="#C62828"', svg or "")
    assert len(bars) == 15
    stable = {f"f{i}": {"psi": 0.01 * i} for i in range(9)}
    texts = _texts(_parse(chart_drift({"drift": {"numeric": stable}})))
    assert any("(3 more, all smaller, not shown)" in t for t in texts)


def test_negative_value_share_stays_inside_the_plot() -> None:
    segs = _segments(3)
    segs[2]["value_share"] = -0.2
    svg = chart_sizes(segs)
    assert _layout_problems(svg) == []
    assert "-20%" in _texts(_parse(svg))


def test_text_helpers() -> None:
    assert text_width("WWW", 10) > text_width("iii", 10) > 0
    assert fit("short", 13, 200) == "short"
    cut = fit("a rather long label that will not fit", 13, 80)
    assert cut.endswith("…") and text_width(cut, 13) <= 80
    lines, was_cut = wrap("one two three four five six seven", 13, 60, max_lines=2)
    assert len(lines) == 2 and was_cut and lines[-1].endswith("…")
    lines, was_cut = wrap("Bargain hunters", 13, 300)
    assert lines == ["Bargain hunters"] and not was_cut
    assert nice_ticks(0, 0.8) == [0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(-1.5, 1.5, 4) == [-1, 0, 1]
    assert nice_ticks(1, 1) == [1]
    assert charts.esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


def test_expected_value_chart_pairs_expected_and_past_shares() -> None:
    assert charts.chart_expected_value({}) is None
    segments = [
        {"id": 0, "name": "Lapsed <buyers>", "customers": 10, "expected_value_share": 0.1,
         "past_value_share": 0.3},
        {"id": 1, "name": "New regulars", "customers": 5, "expected_value_share": 0.9,
         "past_value_share": 0.7},
    ]  # fmt: skip
    svg = charts.chart_expected_value({"predictions": {"clv": {"segments": segments}}})
    texts = _texts(_parse(svg))
    assert "Lapsed <buyers>" in texts  # escaped in the SVG, read back as the name
    assert {"10%", "30%", "90%", "70%"} <= set(texts)
    assert any("share of past value" in t for t in texts)


def test_holdout_chart_shows_predicted_and_actual_per_frequency() -> None:
    assert charts.chart_holdout({"predictions": {"clv": {"holdout": {"evaluated": False}}}}) is None
    rows = [
        {"frequency": "0", "customers": 1416, "predicted_mean": 0.59, "actual_mean": 0.73},
        {"frequency": "7+", "customers": 210, "predicted_mean": 5.75, "actual_mean": 7.63},
        {"frequency": "6", "customers": 0, "predicted_mean": None, "actual_mean": None},
    ]
    holdout = {"evaluated": True, "holdout_days": 125, "by_frequency": rows}
    texts = _texts(_parse(charts.chart_holdout({"predictions": {"clv": {"holdout": holdout}}})))
    assert any("125-day holdout" in t for t in texts)
    assert {"0.59", "0.73", "5.75", "7.63"} <= set(texts)
    assert not any(t.startswith("6 repeat purchases") for t in texts)  # empty bucket left out

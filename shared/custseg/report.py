"""report.html: one self-contained page a marketer can open offline.

Everything is inline: CSS in a ``<style>`` element, charts as base64 PNG images drawn with
matplotlib's Agg backend (imported lazily, only when a report is rendered). No script, no
web font, no external link. The page uses aggregates only (counts, shares, means, PSI) and
a 2-D projection of sampled customers without their ids: no customer id and no personal
column ever appears.

Sections: overview (what was read and rejected, the verdict and its reasons), a persona
card per segment, segment sizes vs value shares, feature profile heatmap, map of
customers (PCA), RFM grid, drift per feature, changes since the previous run, and outcome
rates per segment when the data has an outcome (e.g. churn).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

MAX_DRIFT_BARS = 15
MAX_DRIFT_BARS_STABLE = 6
"""The drift chart shows the largest PSI values only (all are in metrics.json); fewer when
everything is stable."""

PALETTE = [
    "#4E79A7",
    "#F28E2B",
    "#59A14F",
    "#E15759",
    "#76B7B2",
    "#EDC948",
    "#B07AA1",
    "#FF9DA7",
    "#9C755F",
    "#BAB0AC",
    "#1F77B4",
    "#2CA02C",
]
"""Segment colours by segment id (the same in every chart and card)."""

VERDICT_TEXT = {
    "ok": ("OK", "The segments fit this customer base. Use them as they are."),
    "watch": (
        "Watch",
        "The segments are usable, but something has changed. Read the points below before "
        "planning a campaign.",
    ),
    "retrain": (
        "Retrain",
        "Your customers no longer look like the customers the segments were built on. "
        "Retrain the model before acting on these segments.",
    ),
}
VERDICT_COLOUR = {"ok": "#2E7D32", "watch": "#B26A00", "retrain": "#C62828"}

CSS = """
:root { --ink:#1d2733; --muted:#5b6776; --line:#e3e7ec; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size:16px; line-height:1.5; }
main { max-width:1120px; margin:0 auto; padding:24px 28px 48px; }
h1 { font-size:30px; margin:0 0 4px; }
h2 { font-size:22px; margin:36px 0 8px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:18px; margin:0 0 6px; }
p.lead { color:var(--muted); margin:0 0 16px; }
.note { color:var(--muted); font-size:14px; }
.grid { display:grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap:16px; }
.kpis { display:grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap:12px;
  margin:12px 0; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.kpi .v { font-size:24px; font-weight:700; }
.kpi .l { color:var(--muted); font-size:14px; }
.verdict { border-radius:12px; padding:16px 20px; color:#fff; margin:16px 0; }
.verdict .big { font-size:24px; font-weight:700; }
.verdict ul { margin:8px 0 0 0; padding-left:20px; }
.card { background:#fff; border:1px solid var(--line); border-radius:12px; padding:16px 18px;
  border-top:8px solid #999; }
.card .facts { margin-bottom:8px; }
.card .desc { color:var(--muted); font-size:14px; margin-top:10px; }
.card .action { background:var(--bg); border-radius:8px; padding:8px 10px; margin:10px 0; }
.card ul { margin:4px 0 0; padding-left:20px; }
.card li { margin:2px 0; }
.swatch { display:inline-block; width:12px; height:12px; border-radius:3px; margin-right:6px;
  vertical-align:baseline; }
.chart { background:#fff; border:1px solid var(--line); border-radius:12px; padding:12px;
  margin:12px 0; }
.chart img { max-width:100%; height:auto; display:block; margin:0 auto; }
table { border-collapse:collapse; background:#fff; width:100%; font-size:15px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); }
th { background:#eef1f4; }
td.n { text-align:right; font-variant-numeric: tabular-nums; }
footer { margin-top:40px; color:var(--muted); font-size:13px; }
"""


def colour(segment_id: int) -> str:
    return PALETTE[int(segment_id) % len(PALETTE)]


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _pct(x: Any, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{100 * float(x):.{digits}f}%"


def _int(x: Any) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def _fmt2(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def _label(name: str) -> str:
    from custseg.profiles import feature_label

    return feature_label(name)


# ---------------------------------------------------------------------------------------
# charts (matplotlib, Agg, imported lazily)
# ---------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 12,
            "axes.titlesize": 14,
            "axes.labelsize": 12,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.family": "DejaVu Sans",
        }
    )
    return plt


def _png(fig: Any, *, tight_bbox: bool = False) -> str:
    """The figure as base64 PNG. ``tight_bbox`` measures every artist (slower; for charts
    with a legend outside the axes or a colour bar), else ``tight_layout`` is enough."""
    plt = _plt()
    buf = io.BytesIO()
    if not tight_bbox:
        fig.tight_layout(pad=0.6)
    fig.savefig(
        buf,
        format="png",
        dpi=100,
        bbox_inches="tight" if tight_bbox else None,
        metadata={"Software": None},
        pil_kwargs={"compress_level": 1},
    )
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str | None, alt: str) -> str:
    if not b64:
        return ""
    return f'<div class="chart"><img alt="{_e(alt)}" src="data:image/png;base64,{b64}"></div>'


def chart_sizes(segments: Sequence[Mapping[str, Any]]) -> str | None:
    """Horizontal bars: share of customers and share of value per segment."""
    if not segments:
        return None
    plt = _plt()
    names = [s["name"] for s in segments]
    shares = [float(s.get("share") or 0) for s in segments]
    values = [s.get("value_share") for s in segments]
    has_value = any(v is not None for v in values)
    y = np.arange(len(segments))
    fig, ax = plt.subplots(figsize=(9.5, 0.65 * len(segments) + 1.3))
    h = 0.38 if has_value else 0.6
    bars = ax.barh(
        y - (h / 2 if has_value else 0),
        shares,
        height=h,
        color=[colour(s["id"]) for s in segments],
        label="share of customers",
    )
    for rect, v in zip(bars, shares, strict=True):
        ax.text(
            rect.get_width() + 0.005,
            rect.get_y() + rect.get_height() / 2,
            f"{v:.0%}",
            va="center",
            fontsize=11,
        )
    if has_value:
        vals = [float(v or 0) for v in values]
        vb = ax.barh(
            y + h / 2,
            vals,
            height=h,
            color=[colour(s["id"]) for s in segments],
            alpha=0.45,
            hatch="//",
            edgecolor="white",
            label="share of value",
        )
        for rect, v in zip(vb, vals, strict=True):
            ax.text(
                max(rect.get_width(), 0) + 0.005,
                rect.get_y() + rect.get_height() / 2,
                f"{v:.0%}",
                va="center",
                fontsize=11,
                color="#444",
            )
        ax.legend(loc="lower right", frameon=False)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    top = max([*shares, *[float(v or 0) for v in values], 0.05])
    ax.set_xlim(min(0, min(float(v or 0) for v in values)) if has_value else 0, top * 1.15)
    ax.set_title("How big is each segment, and how much value does it bring?", loc="left")
    return _png(fig)


def chart_profile(profiles: Mapping[str, Any]) -> str | None:
    """Heatmap of standardised mean differences, segments x numeric features."""
    segments = profiles.get("segments", [])
    feats = list(profiles.get("features", {}).get("numeric", []))
    if not segments or not feats:
        return None
    z = np.array(
        [[(s["numeric"].get(f, {}).get("std_diff") or 0.0) for f in feats] for s in segments],
        dtype="float64",
    )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.5, 1.05 * len(feats) + 3.5), 0.6 * len(segments) + 2.2))
    lim = max(1.5, float(np.nanmax(np.abs(z))) if z.size else 1.5)
    im = ax.imshow(z, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(feats)), [_label(f) for f in feats], rotation=30, ha="right")
    ax.set_yticks(range(len(segments)), [s["name"] for s in segments])
    for tick, seg in zip(ax.get_yticklabels(), segments, strict=True):
        tick.set_color(colour(seg["id"]))
        tick.set_fontweight("bold")
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            ax.text(
                j,
                i,
                f"{z[i, j]:+.1f}",
                ha="center",
                va="center",
                fontsize=10,
                color="white" if abs(z[i, j]) > lim * 0.55 else "#222",
            )
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label("vs average (std. dev.)")
    ax.set_title("What sets each segment apart (red = above average, blue = below)", loc="left")
    ax.spines[:].set_visible(False)
    return _png(fig, tight_bbox=True)


def chart_map(sample: pd.DataFrame | None, names: Mapping[int, str]) -> str | None:
    """Scatter of the sampled customers on the first two principal components."""
    if sample is None or sample.empty or not {"pc1", "pc2", "segment_id"} <= set(sample.columns):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 6.2))
    size = 14 if len(sample) > 1500 else 28
    for s in sorted(int(v) for v in sample["segment_id"].unique()):
        part = sample[sample["segment_id"] == s]
        ax.scatter(
            part["pc1"],
            part["pc2"],
            s=size,
            alpha=0.6,
            color=colour(s),
            label=names.get(s, f"Segment {s}"),
            edgecolors="none",
        )
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.06),
        frameon=False,
        markerscale=1.8,
        ncol=min(3, sample["segment_id"].nunique()),
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig, tight_bbox=True)


def chart_rfm(metrics: Mapping[str, Any]) -> str | None:
    labels = metrics.get("labels", {}) or {}
    grid = (labels.get("rfm_grid") or {}).get("counts")
    if not labels.get("rfm_available") or not grid:
        return None
    counts = np.asarray(grid, dtype="float64")
    total = counts.sum() or 1.0
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    # rows: R 5 (recent) at the top
    shown = counts[::-1, :]
    im = ax.imshow(shown / total, cmap="Blues", aspect="auto")
    for i in range(5):
        for j in range(5):
            v = shown[i, j]
            ax.text(
                j,
                i,
                f"{int(v):,}\n{v / total:.0%}",
                ha="center",
                va="center",
                fontsize=10,
                color="white" if v / total > (shown.max() / total) * 0.6 else "#222",
            )
    ax.set_xticks(range(5), ["1\nrarely", "2", "3", "4", "5\nvery often"])
    ax.set_yticks(range(5), ["5 bought\nrecently", "4", "3", "2", "1 long\nago"])
    ax.set_xlabel("F score: how often they buy")
    ax.set_ylabel("R score: how recently they bought")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02).set_label("share of customers")
    ax.set_title("Customers by recency and frequency", loc="left")
    ax.spines[:].set_visible(False)
    return _png(fig)


def drift_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(plain label, PSI) per feature, category mix and segment sizes, largest first."""
    drift = metrics.get("drift", {}) or {}
    rows: list[tuple[str, float]] = []
    for name, entry in (drift.get("numeric") or {}).items():
        if entry.get("psi") is not None:
            rows.append((_label(name), float(entry["psi"])))
    for name, entry in (drift.get("categorical") or {}).items():
        if entry.get("psi") is not None:
            rows.append((_label(name) + " (mix)", float(entry["psi"])))
    seg = drift.get("segment_shares") or {}
    if seg.get("psi") is not None:
        rows.append(("segment sizes", float(seg["psi"])))
    rows.sort(key=lambda r: -r[1])
    return rows


def _psi_limits(metrics: Mapping[str, Any]) -> tuple[float, float]:
    th = metrics.get("thresholds", {}) or {}
    return float(th.get("psi_watch", 0.1)), float(th.get("psi_retrain", 0.25))


def chart_drift(metrics: Mapping[str, Any]) -> str | None:
    rows = drift_rows(metrics)
    if not rows:
        return None
    watch, _ = _psi_limits(metrics)
    limit = MAX_DRIFT_BARS if rows[0][1] > watch else MAX_DRIFT_BARS_STABLE
    hidden = max(0, len(rows) - limit)
    rows = rows[:limit]
    watch, retrain = _psi_limits(metrics)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 0.42 * len(rows) + 1.6))
    names = [r[0] for r in rows]
    vals = [r[1] for r in rows]
    cols = ["#C62828" if v > retrain else "#E0A100" if v > watch else "#4E8F5A" for v in vals]
    y = np.arange(len(rows))
    ax.barh(y, vals, color=cols)
    ax.axvline(watch, color="#E0A100", ls="--", lw=1.5, label=f"watch ({watch:g})")
    ax.axvline(retrain, color="#C62828", ls="--", lw=1.5, label=f"retrain ({retrain:g})")
    for yi, v in zip(y, vals, strict=True):
        ax.text(v + 0.005, yi, f"{v:.2f}", va="center", fontsize=10)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(vals) * 1.15, retrain * 1.3))
    ax.set_xlabel("change vs the training data (PSI; 0 = same)")
    ax.legend(loc="lower right", frameon=False)
    title = "Change per measure, largest first"
    if hidden:
        title += f" ({hidden} more, all smaller, not shown)"
    ax.set_title(title, loc="left")
    return _png(fig)


def chart_transitions(metrics: Mapping[str, Any]) -> str | None:
    st = metrics.get("stability", {}) or {}
    if not st.get("available"):
        return None
    tr = st.get("transitions") or {}
    counts = np.asarray(tr.get("counts") or [], dtype="float64")
    if counts.size == 0 or counts.sum() == 0:
        return None
    frm = [r["name"] for r in tr.get("from", [])]
    to = [r["name"] for r in tr.get("to", [])]
    row_tot = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_tot, out=np.zeros_like(counts), where=row_tot > 0)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(to) + 3), 0.6 * len(frm) + 2.4))
    im = ax.imshow(share, cmap="Purples", vmin=0, vmax=1, aspect="auto")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="white" if share[i, j] > 0.6 else "#222",
                )
    ax.set_xticks(range(len(to)), to, rotation=25, ha="right")
    ax.set_yticks(range(len(frm)), frm)
    ax.set_xlabel("segment in this run")
    ax.set_ylabel("segment in the previous run")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02).set_label("share of the previous segment")
    ax.set_title("Where did last run's customers go?", loc="left")
    ax.spines[:].set_visible(False)
    return _png(fig)


def chart_outcome(name: str, doc: Mapping[str, Any]) -> str | None:
    rows = [r for r in doc.get("by_segment", []) if r.get("rate") is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 0.6 * len(rows) + 1.5))
    y = np.arange(len(rows))
    rates = [float(r["rate"]) for r in rows]
    ax.barh(y, rates, color=[colour(r["id"]) for r in rows])
    overall = float(doc.get("overall_rate") or 0)
    ax.axvline(overall, color="#333", ls="--", lw=1.5, label=f"all customers ({overall:.0%})")
    for yi, r in zip(y, rows, strict=True):
        lift = r.get("lift")
        extra = f"  ({lift:.1f}x average)" if lift is not None else ""
        ax.text(
            float(r["rate"]) + 0.005,
            yi,
            f"{float(r['rate']):.0%}{extra}",
            va="center",
            fontsize=11,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        )
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlim(0, max([*rates, overall]) * 1.45 or 1)
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(f"{_label(name).capitalize()} rate per segment", loc="left")
    return _png(fig)


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------


def _kpi(value: str, label: str) -> str:
    return (
        f'<div class="kpi"><div class="v">{_e(value)}</div><div class="l">{_e(label)}</div></div>'
    )


def _overview(profiles: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    dq = metrics.get("data_quality", {}) or {}
    verdict = str(metrics.get("verdict", "ok"))
    title, text = VERDICT_TEXT.get(verdict, (verdict, ""))
    reasons = metrics.get("reasons", []) or []
    parts = []
    kpis = [_kpi(_int(metrics.get("customers")), "customers scored")]
    if dq.get("available"):
        kpis.append(_kpi(_int(dq.get("rows_read")), "rows read from the file"))
        rej = dq.get("rows_rejected")
        share = dq.get("reject_share")
        kpis.append(
            _kpi(
                _int(rej) + (f" ({_pct(share, 1)})" if share is not None else ""),
                "rows rejected",
            )
        )
    kpis.append(_kpi(str(len(profiles.get("segments", []))), "segments"))
    value = metrics.get("value", {}) or {}
    if value.get("top10_share") is not None:
        kpis.append(_kpi(_pct(value["top10_share"]), "of value from the top 10% of customers"))
    parts.append(f'<div class="kpis">{"".join(kpis)}</div>')
    reasons_html = (
        "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>" if reasons else ""
    )
    parts.append(
        f'<div class="verdict" style="background:{VERDICT_COLOUR.get(verdict, "#555")}">'
        f'<div class="big">Verdict: {_e(title)}</div><div>{_e(text)}</div>{reasons_html}</div>'
    )
    if dq.get("available"):
        top = dq.get("top_reasons") or []
        if top:
            rows = "".join(
                f'<tr><td>{_e(r["reason"])}</td><td class="n">{_int(r["rows"])}</td></tr>'
                for r in top
            )
            parts.append(
                "<h3>Why rows were rejected</h3>"
                f"<table><tr><th>reason</th><th>rows</th></tr>{rows}</table>"
            )
        else:
            parts.append('<p class="note">No rows were rejected.</p>')
    else:
        parts.append('<p class="note">No data-quality report was passed to this run.</p>')
    return "".join(parts)


def _plain_description(seg: Mapping[str, Any]) -> str:
    """The persona description without its "Suggested action" tail (shown apart)."""
    text = str(seg.get("description") or "")
    cut = text.find("Suggested action:")
    return text[:cut].strip() if cut > 0 else text


def _action(seg: Mapping[str, Any]) -> str:
    action = str(seg.get("action") or "").strip()
    detail = str(seg.get("action_detail") or "").strip()
    if action and detail:
        return f"{action[:1].upper()}{action[1:]}: {detail}"
    return (action or detail)[:1].upper() + (action or detail)[1:]


def _card(seg: Mapping[str, Any], outcomes: Mapping[str, Any], has_value: bool) -> str:
    c = colour(seg["id"])
    facts = [
        f"<b>{_int(seg.get('size'))}</b> customers (<b>{_pct(seg.get('share'))}</b>)",
    ]
    if has_value and seg.get("value_share") is not None:
        facts.append(f"<b>{_pct(seg.get('value_share'))}</b> of value")
    for name, doc in outcomes.items():
        for row in doc.get("by_segment", []):
            if row.get("id") == seg["id"] and row.get("rate") is not None:
                lift = row.get("lift")
                facts.append(
                    f"{_e(_label(name))} <b>{_pct(row['rate'])}</b>"
                    + (f" ({lift:.1f}x average)" if lift is not None else "")
                )
    traits = seg.get("traits") or []
    body = [
        f'<div class="card" style="border-top-color:{c}">',
        f'<h3><span class="swatch" style="background:{c}"></span>{_e(seg["name"])}</h3>',
        f'<div class="facts">{" · ".join(facts)}</div>',
    ]
    action = _action(seg)
    if action:
        body.append(f'<div class="action"><b>What to do:</b> {_e(action)}</div>')
    if traits:
        body.append(
            "<div><b>What sets them apart</b><ul>"
            + "".join(f"<li>{_e(t)}</li>" for t in traits)
            + "</ul></div>"
        )
    description = _plain_description(seg)
    if description:
        body.append(f'<div class="desc">When the model was trained: {_e(description)}</div>')
    body.append("</div>")
    return "".join(body)


def render_report(
    profiles: dict[str, Any],
    metrics: dict[str, Any],
    *,
    sample: pd.DataFrame | None,
    title: str,
) -> str:
    """The report as one HTML string (self-contained; see the module docs).

    ``sample``: the 2-D projection of sampled customers (columns ``pc1``, ``pc2``,
    ``segment_id``; no ids) or ``None`` to leave the map out.
    """
    segs = list(profiles.get("segments", []))
    names = {int(s["id"]): str(s["name"]) for s in segs}
    has_value = any(s.get("value_share") is not None for s in segs)
    outcomes = metrics.get("outcomes", {}) or {}
    model = metrics.get("model", {}) or {}
    sub = (
        f"Dataset {_e(metrics.get('dataset'))} · run {_e(metrics.get('run_id'))} · "
        f"run date {_e(metrics.get('run_date'))} · customers as of {_e(metrics.get('as_of'))} · "
        f"model {_e(model.get('version'))}"
    )
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1><p class='lead'>{sub}</p>",
        "<h2>Overview</h2>",
        _overview(profiles, metrics),
        "<h2>The segments</h2>",
        "<p class='lead'>Each card describes one group of similar customers: how many they "
        "are, what makes them different from the average customer, and a suggested action."
        "</p>",
        '<div class="grid">' + "".join(_card(s, outcomes, has_value) for s in segs) + "</div>",
        "<h2>Size and value</h2>",
        _img(chart_sizes(segs), "segment sizes and value shares")
        or "<p class='note'>No segments.</p>",
    ]
    if has_value and profiles.get("value_measure"):
        out.append(
            f"<p class='note'>Value measure: {_e(_label(str(profiles['value_measure'])))}.</p>"
        )
    out += [
        "<h2>What makes each segment different</h2>",
        "<p class='lead'>Average of each measure in the segment compared with all customers, "
        "in standard deviations: +1 means clearly above average, -1 clearly below.</p>",
        _img(chart_profile(profiles), "feature profile per segment")
        or "<p class='note'>No numeric measures to compare.</p>",
        "<h2>Map of customers</h2>",
        "<p class='lead'>Each dot is a customer, placed so that customers with similar data "
        "are close together (a random sample when there are many; no names or ids). Well "
        "separated colours mean well separated segments.</p>",
        _img(chart_map(sample, names), "map of sampled customers")
        or "<p class='note'>Too few customers to draw a map.</p>",
        "<h2>Recency and frequency (RFM)</h2>",
    ]
    rfm = chart_rfm(metrics)
    if rfm:
        out.append(_img(rfm, "RFM grid"))
    else:
        out.append(
            "<p class='note'>RFM scores are not available for this data: it has no purchase "
            "history (dates and orders). The segment sizes above show how customers split "
            "instead.</p>"
        )
    out.append("<h2>Has anything changed?</h2>")
    drift = chart_drift(metrics)
    out.append(
        "<p class='lead'>Each bar compares this data with the data the model was trained on. "
        "Green: stable. Amber: worth watching. Red: large change; retrain.</p>"
    )
    rows = drift_rows(metrics)
    if rows:
        watch, _ = _psi_limits(metrics)
        moved = [name for name, v in rows if v > watch]
        if moved:
            out.append(
                f"<p><b>{len(moved)} of {len(rows)}</b> measures changed: {_e(', '.join(moved))}."
                "</p>"
            )
        else:
            out.append(
                f"<p><b>All {len(rows)} measures are stable</b> (largest change: "
                f"{_e(rows[0][0])}, {rows[0][1]:.2f}).</p>"
            )
    out.append(
        _img(drift, "drift per feature") if drift else "<p class='note'>No training baseline.</p>"
    )
    st = metrics.get("stability", {}) or {}
    out.append("<h3>Since the previous run</h3>")
    if st.get("available"):
        out.append(
            f"<p>{_int(st.get('common_customers'))} customers were in both runs; "
            f"{_int(st.get('changed'))} ({_pct(st.get('changed_share'))}) changed segment. "
            f"{_int(st.get('new_customers'))} new customers, "
            f"{_int(st.get('gone_customers'))} no longer present.</p>"
        )
        if not st.get("same_model"):
            out.append(
                "<p class='note'>The previous run used another model version, so segment "
                "numbers may not mean the same thing.</p>"
            )
        out.append(_img(chart_transitions(metrics), "transitions since the previous run"))
    else:
        out.append("<p class='note'>First run: there is no previous run to compare with.</p>")
    if outcomes:
        out.append("<h2>Outcomes by segment</h2>")
        for name, doc in outcomes.items():
            lift = ""
            if doc.get("lift_min") is not None and doc.get("lift_max") is not None:
                lift = (
                    f" Segments range from {doc['lift_min']:.1f}x to {doc['lift_max']:.1f}x "
                    "the average rate."
                )
            out.append(
                f"<p class='lead'>{_e(_label(name).capitalize())}: "
                f"{_pct(doc.get('overall_rate'), 1)} of all customers.{_e(lift)}</p>"
            )
            out.append(_img(chart_outcome(name, doc), f"{name} rate per segment"))
    cq = metrics.get("cluster_quality", {}) or {}
    out.append(
        "<footer>"
        f"Segment separation (silhouette, -1..1, higher is better): "
        f"{_fmt2(cq.get('silhouette'))} on {_int(cq.get('sample_size'))} customers "
        f"(training: {_fmt2(cq.get('training_silhouette'))}). Distance to segment centres "
        f"vs training: {_fmt2(cq.get('distance_ratio'))}x. Full figures are in metrics.json "
        "and profiles.json. This report shows only totals, shares and averages; it contains "
        "no customer identifiers or personal data."
        "</footer></main></body></html>"
    )
    return "\n".join(part for part in out if part)

"""report.html: one self-contained page a marketer can open offline.

Everything is inline: CSS in a ``<style>`` element and charts as ``<svg>`` elements drawn
by :mod:`custseg.report.charts` (hand-written SVG, no plotting library, a few milliseconds per
chart). No script, no web font, no external link. The page uses aggregates only (counts,
shares, means, PSI) and a 2-D projection of sampled customers without their ids: no
customer id and no personal column ever appears.

Sections: overview (what was read and rejected, the verdict and its reasons), a persona
card per segment, segment sizes vs value shares, feature profile heatmap, map of
customers (PCA), RFM grid, drift per feature, changes since the previous run, and outcome
rates per segment when the data has an outcome (e.g. churn).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from custseg.report import charts
from custseg.report.charts import PALETTE, colour, drift_rows, psi_limits

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PALETTE", "VERDICT_COLOUR", "VERDICT_TEXT", "colour", "render_report"]

VERDICT_TEXT = {
    "ok": ("OK", "The segments fit this customer base. Use them as they are."),
    "watch": (
        "Watch",
        "The segments are usable with care: something changed or was lost (data, quality). "
        "Read the points below before "
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
  border-top:8px solid #999; overflow-wrap:anywhere; }
.card .facts { margin-bottom:8px; }
.card .desc { color:var(--muted); font-size:14px; margin-top:10px; }
.card .action { background:var(--bg); border-radius:8px; padding:8px 10px; margin:10px 0; }
.card ul { margin:4px 0 0; padding-left:20px; }
.card li { margin:2px 0; }
.swatch { display:inline-block; width:12px; height:12px; border-radius:3px; margin-right:6px;
  vertical-align:baseline; }
.chart { background:#fff; border:1px solid var(--line); border-radius:12px; padding:12px;
  margin:12px 0; }
.chart svg { display:block; margin:0 auto; height:auto; }
table { border-collapse:collapse; background:#fff; width:100%; font-size:15px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); }
th { background:#eef1f4; }
td.n { text-align:right; font-variant-numeric: tabular-nums; }
footer { margin-top:40px; color:var(--muted); font-size:13px; }
"""


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
    from custseg.scoring.profiles import feature_label

    return feature_label(name)


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------


def _figure(svg: str | None) -> str:
    """A chart in its frame ("" when there is no chart)."""
    return f'<div class="chart">{svg}</div>' if svg else ""


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
    if seg.get("rank") is not None:
        facts.append(
            f"target rank <b>{_int(seg['rank'])}</b> "
            f"(attractiveness {_e(seg.get('attractiveness'))} / 100)"
        )
    traits = seg.get("traits") or []
    body = [
        f'<div class="card" style="border-top-color:{c}">',
        f'<h3><span class="swatch" style="background:{c}"></span>{_e(seg["name"])}</h3>',
        f'<div class="facts">{" · ".join(facts)}</div>',
    ]
    action = _action(seg)
    if action:
        why = str(seg.get("action_reason") or "")
        body.append(
            f'<div class="action"><b>What to do:</b> {_e(action)}'
            + (f" <i>(why: {_e(why)})</i>" if why else "")
            + "</div>"
        )
    for flag in seg.get("campaign_flags") or []:  # a measured campaign's negative uplift
        body.append(f'<div class="action"><b>Stop:</b> {_e(flag)}</div>')
    if seg.get("offer"):  # the categories the segment buys more than the base
        body.append(f'<div class="facts"><b>{_e(str(seg["offer"]).capitalize())}</b></div>')
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


def _prediction_block(name: str, doc: Mapping[str, Any]) -> list[str]:
    """One propensity: its evidence, reliability chart and drivers."""
    outcome = _label(str(doc.get("outcome") or name.removeprefix("p_")))
    if doc.get("skipped"):
        return [
            f"<p class='note'>{_e(outcome.capitalize())}: no prediction ({_e(doc['skipped'])}).</p>"
        ]
    cv = doc.get("cv") or {}
    model = str(doc.get("model") or "").replace("_", " ")
    out = [
        f"<h3>{_e(name)}: probability of {_e(outcome)}</h3>",
        f"<p class='lead'>A {_e(model)} model, checked on customers it was not trained on "
        f"(5-fold cross-validation): AUC {_fmt2(cv.get('auc'))} (0.5 = guessing, 1 = perfect), "
        f"Brier score {_fmt2(cv.get('brier'))}. The 10 % of customers it rates most likely "
        f"show {_e(outcome)} {_pct(cv.get('top_decile_rate'))} of the time, "
        f"{_fmt2(cv.get('lift'))}x the average ({_pct(cv.get('base_rate'))}). "
        f"Average predicted in this run: {_pct(doc.get('mean'))}.</p>",
        _figure(charts.chart_reliability(name, doc)),
    ]
    drivers = [d for d in doc.get("drivers") or [] if float(d.get("importance") or 0) > 0]
    if drivers:
        items = "".join(
            f"<li>{_e(_label(str(d['feature'])))} (AUC drops by {float(d['importance']):.3f} "
            "when it is shuffled)</li>"
            for d in drivers
        )
        out.append(f"<p>What drives the prediction most:</p><ol>{items}</ol>")
    return out


def _propensity_section(predictions: Mapping[str, Any]) -> list[str]:
    """The propensities (the ``predictions`` entries of kind ``propensity``): evidence,
    reliability charts, drivers."""
    docs = {
        name: doc
        for name, doc in predictions.items()
        if isinstance(doc, Mapping) and doc.get("kind") == "propensity"
    }
    if not docs:
        return []
    out = [
        "<h2>Predictions</h2>",
        "<p class='lead'>Each customer's probability of each outcome is in the assignments "
        "(columns p_&lt;outcome&gt;).</p>",
    ]
    for name, doc in docs.items():
        out += _prediction_block(name, doc)
    return out


def _value_at_risk_block(metrics: Mapping[str, Any], profiles: Mapping[str, Any]) -> list[str]:
    """The segments ranked by value at risk (when the run has a value-at-risk measure)."""
    at_risk = metrics.get("value_at_risk") or {}
    priority = profiles.get("priority") or []
    if not (at_risk and priority):
        return []
    rows = "".join(
        f"<tr><td>{int(p['rank'])}</td><td>{_e(p['name'])}</td>"
        f"<td>{_e(_fmt2(p['value_at_risk']))}</td><td>{_pct(p.get('share'))}</td>"
        f"<td>{_e(p.get('action') or '')}</td></tr>"
        for p in priority
    )
    return [
        "<h3>Where the value at risk is</h3>",
        f"<p class='lead'>Value at risk = {_e(at_risk.get('measure'))}; total "
        f"{_e(_fmt2(at_risk.get('total')))}. The {_int(at_risk.get('top_rows'))} customers "
        f"with the most are listed in {_e(at_risk.get('top_file'))}.</p>",
        "<table><tr><th>Rank</th><th>Segment</th><th>Value at risk</th><th>Share</th>"
        f"<th>Action</th></tr>{rows}</table>",
    ]


def _predictions_section(metrics: Mapping[str, Any], profiles: Mapping[str, Any]) -> list[str]:
    """The report's predictions: the propensities ("Predictions"), an order log's expected
    value and holdout check, and where the value at risk is; empty when the model predicts
    nothing."""
    predictions = metrics.get("predictions") or {}
    out = _propensity_section(predictions) + _value_section(profiles, metrics)
    if out:
        out += _value_at_risk_block(metrics, profiles)
    return out


def _value_section(profiles: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    """The expected value per segment and the holdout check (order logs with a model that
    has the customer-value predictions; nothing otherwise)."""
    clv = (metrics.get("predictions") or {}).get("clv") or {}
    if not clv.get("available"):
        return []
    base = (((profiles.get("predictions") or {}).get("clv") or {}).get("base")) or {}
    out = [
        "<h2>Expected value in the next 12 months</h2>",
        "<p class='lead'>From each customer's purchase history: how likely they are still "
        "buying, how often they will buy and what a purchase is worth (BG/NBD and "
        "Gamma-Gamma models, discounted 1 % a month). A segment with a larger share of "
        "expected value than of past value is growing in importance.</p>",
    ]
    if base.get("customers"):
        total = float(base.get("expected_value_12m_total") or 0)
        out.append(
            f"<p>{_int(base.get('customers'))} customers with a purchase history are expected "
            f"to bring {total:,.0f} in the next 12 months; the model reckons "
            f"{_pct(base.get('p_alive_mean'))} of them are still buying.</p>"
        )
    out.append(_figure(charts.chart_expected_value(profiles)))
    holdout = clv.get("holdout") or {}
    out.append("<h3>Do the predictions hold?</h3>")
    if holdout.get("evaluated"):
        miss = holdout.get("miss")
        side = "" if miss is None else f" ({_pct(abs(miss))} {'more' if miss > 0 else 'fewer'}"
        out.append(
            f"<p>Fitted on the history before {_e(holdout.get('calibration_end'))}, the model "
            f"predicted {float(holdout.get('predicted_total') or 0):,.0f} purchase days in "
            f"the following {_int(holdout.get('holdout_days'))} days; the customers made "
            f"{float(holdout.get('actual_total') or 0):,.0f}"
            + (f"{side} predicted than made)." if side else ".")
            + "</p>"
        )
        out.append(_figure(charts.chart_holdout(metrics)))
    else:
        out.append(f"<p class='note'>Not checked: {_e(holdout.get('reason', 'no holdout'))}.</p>")
    return out


def _ranking(profiles: Mapping[str, Any]) -> str:
    """The segments as targets, most attractive first (see custseg.scoring.ranking)."""
    ranking = profiles.get("ranking") or {}
    by_id = {int(s["id"]): s for s in profiles.get("segments", [])}
    order = [by_id[i] for i in ranking.get("order", []) if i in by_id]
    if not order:
        return ""
    parts = ranking.get("weights") or {}
    rows = "".join(
        f'<tr><td class="n">{_int(s.get("rank"))}</td><td>{_e(s["name"])}</td>'
        f'<td class="n">{_e(s.get("attractiveness"))}</td>'
        f'<td class="n">{_pct(s.get("share"))}</td>'
        f'<td class="n">{_pct(s.get("value_share"))}</td>'
        + "".join(f'<td class="n">{_fmt_part(name, s)}</td>' for name in ("growth", "outcome"))
        + f"<td>{_e(s.get('action'))}</td></tr>"
        for s in order
    )
    weights = ", ".join(f"{name} {w:.0%}" for name, w in parts.items())
    missing = ranking.get("components_missing") or []
    note = f" Not available in this run: {', '.join(missing)}." if missing else ""
    return (
        "<h2>Which segments to target first</h2>"
        "<p class='lead'>Attractiveness (0-100) weighs each segment's value share, size, "
        f"growth since the previous run and outcome rates ({_e(weights)}).{_e(note)}</p>"
        "<table><tr><th>rank</th><th>segment</th><th>attractiveness</th><th>customers</th>"
        "<th>value</th><th>growth</th><th>outcome score</th><th>action</th></tr>"
        f"{rows}</table>"
    )


def _fmt_part(name: str, seg: Mapping[str, Any]) -> str:
    part = (seg.get("attractiveness_parts") or {}).get(name)
    if not part:
        return "n/a"
    raw = float(part["raw"])
    return f"{raw:+.0%}" if name == "growth" else f"{raw:.2f}"


def _head(title: str, metrics: Mapping[str, Any]) -> list[str]:
    """The document's head, title and the run's one-line description."""
    model = metrics.get("model", {}) or {}
    sub = (
        f"Dataset {_e(metrics.get('dataset'))} · run {_e(metrics.get('run_id'))} · "
        f"run date {_e(metrics.get('run_date'))} · customers as of {_e(metrics.get('as_of'))}"
        + (f" ({_e(metrics['as_of_reason'])})" if metrics.get("as_of_reason") else "")
        + f" · model {_e(model.get('version'))}"
    )
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1><p class='lead'>{sub}</p>",
    ]


def _segments_section(
    profiles: dict[str, Any],
    metrics: dict[str, Any],
    segs: list[dict[str, Any]],
    has_value: bool,
) -> list[str]:
    """The overview, a card per segment, the ranking and the sizes and values."""
    outcomes = metrics.get("outcomes", {}) or {}
    out = [
        "<h2>Overview</h2>",
        _overview(profiles, metrics),
        "<h2>The segments</h2>",
        "<p class='lead'>Each card describes one group of similar customers: how many they "
        "are, what makes them different from the average customer, and a suggested action."
        "</p>",
        '<div class="grid">' + "".join(_card(s, outcomes, has_value) for s in segs) + "</div>",
        _ranking(profiles),
        "<h2>Size and value</h2>",
        _figure(charts.chart_sizes(segs)) or "<p class='note'>No segments.</p>",
    ]
    if has_value and profiles.get("value_measure"):
        out.append(
            f"<p class='note'>Value measure: {_e(_label(str(profiles['value_measure'])))}.</p>"
        )
    return out


def _differences_section(
    profiles: dict[str, Any], sample: pd.DataFrame | None, names: dict[int, str]
) -> list[str]:
    """What sets each segment apart, and the map of sampled customers."""
    return [
        "<h2>What makes each segment different</h2>",
        "<p class='lead'>Average of each measure in the segment compared with all customers, "
        "in standard deviations: +1 means clearly above average, -1 clearly below.</p>",
        _figure(charts.chart_profile(profiles))
        or "<p class='note'>No numeric measures to compare.</p>",
        "<h2>Map of customers</h2>",
        "<p class='lead'>Each dot is a customer, placed so that customers with similar data "
        "are close together (a random sample when there are many; no names or ids). Well "
        "separated colours mean well separated segments.</p>",
        _figure(charts.chart_map(sample, names))
        or "<p class='note'>Too few customers to draw a map.</p>",
    ]


def _rfm_section(metrics: dict[str, Any]) -> list[str]:
    """The recency and frequency chart, or why there is none."""
    out = ["<h2>Recency and frequency (RFM)</h2>"]
    rfm = charts.chart_rfm(metrics)
    if rfm:
        out.append(_figure(rfm))
    else:
        out.append(
            "<p class='note'>RFM scores are not available for this data: it has no purchase "
            "history (dates and orders). The segment sizes above show how customers split "
            "instead.</p>"
        )
    return out


def _drift_section(metrics: dict[str, Any]) -> list[str]:
    """How this data compares with the model's training data."""
    out = ["<h2>Has anything changed?</h2>"]
    drift = charts.chart_drift(metrics)
    out.append(
        "<p class='lead'>Each bar compares this data with the data the model was trained on. "
        "Green: stable. Amber: worth watching. Red: large change; retrain.</p>"
    )
    rows = drift_rows(metrics)
    if rows:
        watch, _ = psi_limits(metrics)
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
    out.append(_figure(drift) if drift else "<p class='note'>No training baseline.</p>")
    return out


def _stability_section(metrics: dict[str, Any]) -> list[str]:
    """How many customers changed segment since the previous run."""
    st = metrics.get("stability", {}) or {}
    out = ["<h3>Since the previous run</h3>"]
    if not st.get("available"):
        out.append("<p class='note'>First run: there is no previous run to compare with.</p>")
        return out
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
    out.append(_figure(charts.chart_transitions(metrics)))
    return out


def _outcomes_section(metrics: dict[str, Any]) -> list[str]:
    """Each outcome's rate by segment (nothing when the data has no outcome)."""
    outcomes = metrics.get("outcomes", {}) or {}
    if not outcomes:
        return []
    out = ["<h2>Outcomes by segment</h2>"]
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
        out.append(_figure(charts.chart_outcome(name, doc)))
    return out


def _footer(metrics: dict[str, Any]) -> str:
    """The cluster-quality figures and the privacy note, closing the document."""
    cq = metrics.get("cluster_quality", {}) or {}
    return (
        "<footer>"
        f"Segment separation (silhouette, -1..1, higher is better): "
        f"{_fmt2(cq.get('silhouette'))} on {_int(cq.get('sample_size'))} customers "
        f"(training: {_fmt2(cq.get('training_silhouette'))}). Distance to segment centres "
        f"vs training: {_fmt2(cq.get('distance_ratio'))}x. Full figures are in metrics.json "
        "and profiles.json. This report shows only totals, shares and averages; it contains "
        "no customer identifiers or personal data."
        "</footer></main></body></html>"
    )


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
    out: list[str] = [
        *_head(title, metrics),
        *_segments_section(profiles, metrics, segs, has_value),
        *_differences_section(profiles, sample, names),
        *_rfm_section(metrics),
        *_drift_section(metrics),
        *_stability_section(metrics),
        *_outcomes_section(metrics),
        *_predictions_section(metrics, profiles),
        _footer(metrics),
    ]
    return "\n".join(part for part in out if part)

"""A campaign's report page: the uplift per segment with its interval, and a table.

One self-contained HTML page from a campaign's ``effect.json`` document
(:func:`custseg.campaigns.measure.measure_campaign`): aggregates only, no customer id.
The chart is a hand-drawn SVG: one row per segment, a dot at the conversion uplift (in
percentage points) and a bar over its 95 % interval, the zero line marked; green when
significantly positive, red when significantly negative, grey otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from custseg.report.charts import esc
from custseg.report.html import CSS

_W, _LEFT, _RIGHT, _ROW = 760, 250, 30, 34
_GREEN, _RED, _GREY = "#2E7D32", "#C62828", "#7a8591"


def _pp(v: Any) -> str:
    return "–" if v is None else f"{float(v) * 100:+.1f} pp"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{float(v) * 100:.1f}%"


def _money(v: Any) -> str:
    return "–" if v is None else f"{float(v):+,.2f}"


def _colour(est: Mapping[str, Any]) -> str:
    if not est.get("significant"):
        return _GREY
    return _GREEN if (est.get("estimate") or 0) > 0 else _RED


def uplift_chart(rows: Sequence[Mapping[str, Any]], key: str = "conversion_uplift") -> str:
    """The uplift ``key`` per segment with its interval, as an inline SVG ('' when no row
    has one)."""
    found = [(r, r[key]) for r in rows if isinstance(r.get(key), Mapping)]
    found = [(r, e) for r, e in found if e.get("ci_low") is not None]
    if not found:
        return ""
    lo = min(0.0, *(float(e["ci_low"]) for _, e in found))
    hi = max(0.0, *(float(e["ci_high"]) for _, e in found))
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    width = _W - _LEFT - _RIGHT

    def x(v: float) -> float:
        return _LEFT + (v - lo) / (hi - lo) * width

    height = 40 + _ROW * len(found)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img"><title>Uplift per segment with 95% '
        "intervals</title>",
        f'<line x1="{x(0):.1f}" y1="8" x2="{x(0):.1f}" y2="{height - 24}" stroke="#1d2733" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 8}" font-size="12" text-anchor="middle">0</text>',
        f'<text x="{x(lo):.1f}" y="{height - 8}" font-size="12">{esc(_pp(lo))}</text>',
        f'<text x="{x(hi):.1f}" y="{height - 8}" font-size="12" text-anchor="end">'
        f"{esc(_pp(hi))}</text>",
    ]
    for i, (row, est) in enumerate(found):
        y = 24 + i * _ROW
        c = _colour(est)
        name = str(row.get("segment_name", ""))[:34]
        parts += [
            f'<text x="{_LEFT - 10}" y="{y + 4}" font-size="13" text-anchor="end">'
            f"{esc(name)}</text>",
            f'<line x1="{x(float(est["ci_low"])):.1f}" y1="{y}" x2="{x(float(est["ci_high"])):.1f}"'
            f' y2="{y}" stroke="{c}" stroke-width="4" stroke-linecap="round"/>',
            f'<circle cx="{x(float(est["estimate"])):.1f}" cy="{y}" r="6" fill="{c}">'
            f"<title>{esc(name)}: {esc(_pp(est['estimate']))} ({esc(_pp(est['ci_low']))} to "
            f"{esc(_pp(est['ci_high']))})</title></circle>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def _table(doc: Mapping[str, Any]) -> str:
    causal = bool(doc.get("causal"))
    head = (
        ["segment", "treated", "control", "conversion T / C", "uplift (95% CI)",
         "revenue / customer uplift (95% CI)", "incremental revenue", "verdict"]
        if causal
        else ["segment", "customers", "conversion", "vs baseline (95% CI)", "verdict"]
    )  # fmt: skip
    rows = []
    for s in [*doc.get("segments", []), doc.get("overall") or {}]:
        if not s:
            continue
        t, c = s.get("treatment") or {}, s.get("control") or {}
        if causal:
            cu, ru = s.get("conversion_uplift") or {}, s.get("revenue_uplift") or {}
            cells = [
                s.get("segment_name", ""),
                f"{t.get('customers', 0):,}",
                f"{c.get('customers', 0):,}",
                f"{_pct(t.get('conversion_rate'))} / {_pct(c.get('conversion_rate'))}",
                f"{_pp(cu.get('estimate'))} ({_pp(cu.get('ci_low'))} to {_pp(cu.get('ci_high'))})",
                f"{_money(ru.get('estimate'))} ({_money(ru.get('ci_low'))} to "
                f"{_money(ru.get('ci_high'))})",
                _money((s.get("incremental_revenue") or {}).get("estimate")),
                s.get("verdict", ""),
            ]
        else:
            vs = s.get("conversion_vs_baseline") or {}
            cells = [
                s.get("segment_name", ""),
                f"{t.get('customers', 0):,}",
                _pct(t.get("conversion_rate")),
                f"{_pp(vs.get('estimate'))} ({_pp(vs.get('ci_low'))} to {_pp(vs.get('ci_high'))})",
                s.get("verdict", ""),
            ]
        rows.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def render_campaign_report(doc: Mapping[str, Any], *, dataset: str) -> str:
    """The report page of one campaign's effect document."""
    causal = bool(doc.get("causal"))
    run = doc.get("segments_run") or {}
    key = "conversion_uplift" if causal else "conversion_vs_baseline"
    chart = uplift_chart(doc.get("segments", []), key)
    warnings = [w for s in doc.get("segments", []) for w in s.get("warnings", [])]
    warnings += list(doc.get("warnings", []))
    lead = (
        "Treatment against control: the uplift is what the campaign caused."
        if causal
        else "Not causal: this campaign had no control group. Each segment's response is "
        "set against the campaign's response over every segment; a difference may be "
        "who the segment is, not what the campaign did."
    )
    body = [
        f"<h1>Campaign {esc(doc.get('campaign', ''))}</h1>",
        f'<p class="lead">Dataset {esc(dataset)} · segments of run {esc(run.get("run_id", ""))}'
        f" ({esc(run.get('chosen', ''))}) · {doc.get('customers_matched', 0):,} customers "
        "matched</p>",
        f"<p>{esc(lead)}</p>",
        "<h2>Conversion uplift per segment</h2>" if causal else "<h2>Conversion vs baseline</h2>",
        chart or '<p class="note">No interval to draw.</p>',
        '<p class="note">Dot: the estimate; bar: its 95% interval. Green: significantly '
        "positive; red: significantly negative (stop this campaign for them); grey: not "
        "significant.</p>",
        "<h2>Per segment</h2>",
        _table(doc),
    ]
    if warnings:
        body.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings))
        body.append("</ul>")
    method = doc.get("method") or {}
    body.append(
        '<p class="note">Method: '
        + esc("; ".join(f"{k}: {v}" for k, v in method.items() if isinstance(v, str)))
        + "</p>"
    )
    extra = "table{border-collapse:collapse;background:#fff}td,th{border:1px solid #e3e7ec;"
    extra += "padding:6px 8px;font-size:14px;text-align:left}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Campaign {esc(doc.get('campaign', ''))}</title>"
        f"<style>{CSS}{extra}</style></head><body><main>{''.join(body)}</main></body></html>"
    )

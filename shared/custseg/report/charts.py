"""The charts of report.html as inline SVG, drawn by hand (no plotting library).

Every ``chart_*`` function is pure: it takes the same documents the report is built from
(``profiles.json`` / ``metrics.json`` parts, the 2-D customer sample) and returns one
``<svg>`` element as a string, or ``None`` when there is nothing to draw. The SVG:

* scales with the page (``viewBox``, ``width="100%"``, never wider than drawn);
* has a ``<title>`` and an ``aria-label`` (``role="img"``) for screen readers, and
  tooltips (``<title>``) on bars, cells and truncated labels;
* escapes every piece of text (segment and feature names come from data) and drops the
  control characters XML does not allow;
* contains no script, no id, no link and no external reference, so any number of charts
  can sit in one page.

Text is measured with approximate per-character widths of a sans-serif font, so labels
are wrapped (segment names, two lines at most) or cut with an ellipsis (the full text is
then kept in a ``<title>``) before they could overlap a bar or a neighbour. The customer
map is bounded: at most :data:`MAX_MAP_POINTS` dots, coordinates rounded to 0.1 px, each
segment drawn as one path of round dots.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

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

MAX_DRIFT_BARS = 15
MAX_DRIFT_BARS_STABLE = 6
"""The drift chart shows the largest PSI values only (all are in metrics.json); fewer when
everything is stable."""

MAX_MAP_POINTS = 5000
"""At most this many dots on the customer map (the sample passed in is already bounded;
this keeps the page small whatever it is)."""

FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1d2733"
MUTED = "#5b6776"
GRID = "#e3e7ec"
AXIS = "#9aa5b1"
NEUTRAL = "#7a8794"
PAD = 16
WIDTH = 960
TITLE_SIZE = 15
LABEL_SIZE = 13
SMALL_SIZE = 12
AMBER = "#E0A100"
RED = "#C62828"
GREEN = "#4E8F5A"


def colour(segment_id: int) -> str:
    """The colour of a segment (by id, cycling through :data:`PALETTE`)."""
    return PALETTE[int(segment_id) % len(PALETTE)]


# ---------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(text: Any) -> str:
    """``text`` safe inside an XML / HTML element or quoted attribute."""
    return html.escape(_NOT_XML.sub("", "" if text is None else str(text)), quote=True)


# Approximate advance widths of a sans-serif font (Arial / Helvetica metrics, em units).
_WIDTHS: dict[str, float] = {}
for _chars, _w in (
    ("ijl|!.,:;'`", 0.26),
    ('frtI()[]{}- /\\"', 0.34),
    ("abcdeghknopqsuvxyz0123456789$_#?+=<>~^*", 0.56),
    ("J", 0.5),
    ("mM", 0.84),
    ("wCDGHNOQRU", 0.73),
    ("W%", 0.95),
    ("@", 1.02),
):
    for _c in _chars:
        _WIDTHS[_c] = _w


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """Estimated width of ``text`` in px at font ``size`` (slightly generous)."""
    em = 0.0
    for c in text:
        w = _WIDTHS.get(c)
        if w is None:
            if c.isupper():
                w = 0.68
            elif ord(c) >= 0x2E80 or c == "…":  # full-width scripts, the ellipsis
                w = 1.0
            else:
                w = 0.6
        em += w
    return em * size * (1.1 if bold else 1.04)


def fit(text: str, size: float, max_width: float, *, bold: bool = False) -> str:
    """``text``, cut and ended with an ellipsis if wider than ``max_width``."""
    if text_width(text, size, bold=bold) <= max_width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid].rstrip() + "…", size, bold=bold) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def wrap(
    text: str, size: float, max_width: float, *, max_lines: int = 2, bold: bool = False
) -> tuple[list[str], bool]:
    """``text`` on at most ``max_lines`` lines of ``max_width`` px; ``True`` when cut."""
    words = text.split()
    if not words:
        return [""], False
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, size, bold=bold) <= max_width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    cut = len(lines) > max_lines
    if cut:
        lines = [*lines[: max_lines - 1], " ".join(lines[max_lines - 1 :])]
    out = []
    for line in lines:
        fitted = fit(line, size, max_width, bold=bold)
        cut = cut or fitted != line
        out.append(fitted)
    return out, cut


def _num(v: float) -> str:
    """A coordinate with at most one decimal ("12", "12.5")."""
    s = f"{v:.1f}"
    s = s[:-2] if s.endswith(".0") else s
    return "0" if s == "-0" else s


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: float = LABEL_SIZE,
    anchor: str = "start",
    fill: str = INK,
    bold: bool = False,
    max_width: float | None = None,
    max_lines: int = 1,
    rotate: float | None = None,
    halo: bool = False,
) -> str:
    """A ``<text>`` whose block of lines is vertically centred on ``y``. Too long: wrapped
    (``max_lines``) then cut with an ellipsis, the full text in a ``<title>``."""
    if max_width is None:
        lines, cut = [text], False
    elif max_lines > 1:
        lines, cut = wrap(text, size, max_width, max_lines=max_lines, bold=bold)
    else:
        lines = [fit(text, size, max_width, bold=bold)]
        cut = lines[0] != text
    line_h = size * 1.2
    attrs = [f'x="{_num(x)}"', f'y="{_num(y)}"', f'font-size="{_num(size)}"']
    if anchor != "start":
        attrs.append(f'text-anchor="{anchor}"')
    if fill != INK:
        attrs.append(f'fill="{fill}"')
    if bold:
        attrs.append('font-weight="600"')
    if rotate is not None:
        attrs.append(f'transform="rotate({_num(rotate)} {_num(x)} {_num(y)})"')
    if halo:
        attrs.append('stroke="#fff" stroke-width="3" paint-order="stroke"')
    tip = f"<title>{esc(text)}</title>" if cut else ""
    first = -(len(lines) - 1) * line_h / 2 + 0.35 * size
    spans = "".join(
        f'<tspan x="{_num(x)}" dy="{_num(first if i == 0 else line_h)}">{esc(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f"<text {' '.join(attrs)}>{tip}{spans}</text>"


def _svg(width: float, height: float, title: str, body: Sequence[str], desc: str = "") -> str:
    w, h = math.ceil(width), math.ceil(height)
    label = esc(title)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
        f'style="max-width:{w}px;height:auto" role="img" aria-label="{label}" '
        f'font-family="{esc(FONT)}" fill="{INK}"><title>{label}</title>'
    )
    return head + (f"<desc>{esc(desc)}</desc>" if desc else "") + "".join(body) + "</svg>"


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "", tip: str = "") -> str:
    inner = f"<title>{esc(tip)}</title>" if tip else ""
    attrs = f'x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" height="{_num(h)}"'
    if inner:
        return f'<rect {attrs} fill="{fill}"{extra}>{inner}</rect>'
    return f'<rect {attrs} fill="{fill}"{extra}/>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "") -> str:
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" '
        f'stroke="{stroke}"{extra}/>'
    )


# ---------------------------------------------------------------------------------------
# scales and colours
# ---------------------------------------------------------------------------------------


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (multiples of 1, 2 or 5 x 10^k) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * 0.999)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _pct_tick(v: float) -> str:
    return f"{round(v * 100, 6):g}%"


def _plain_tick(v: float) -> str:
    return f"{round(v, 6):g}"


def _cmap(anchors: Sequence[str]) -> Callable[[float], str]:
    """A colour map: ``t`` in 0..1 to a hex colour, linear between ``anchors``."""
    rgb = [tuple(int(a[i : i + 2], 16) for i in (1, 3, 5)) for a in anchors]

    def at(t: float) -> str:
        t = 0.0 if not math.isfinite(t) else min(1.0, max(0.0, t))
        pos = t * (len(rgb) - 1)
        i = min(int(pos), len(rgb) - 2)
        f = pos - i
        c = [round(rgb[i][k] + (rgb[i + 1][k] - rgb[i][k]) * f) for k in range(3)]
        return "#{:02x}{:02x}{:02x}".format(*c)

    return at


# matplotlib's RdBu_r, Blues and Purples (ColorBrewer)
RDBU_R = _cmap(
    [
        "#053061",
        "#2166ac",
        "#4393c3",
        "#92c5de",
        "#d1e5f0",
        "#f7f7f7",
        "#fddbc7",
        "#f4a582",
        "#d6604d",
        "#b2182b",
        "#67001f",
    ]
)
BLUES = _cmap(
    [
        "#f7fbff",
        "#deebf7",
        "#c6dbef",
        "#9ecae1",
        "#6baed6",
        "#4292c6",
        "#2171b5",
        "#08519c",
        "#08306b",
    ]
)
PURPLES = _cmap(
    [
        "#fcfbfd",
        "#efedf5",
        "#dadaeb",
        "#bcbddc",
        "#9e9ac8",
        "#807dba",
        "#6a51a3",
        "#54278f",
        "#3f007d",
    ]
)
NO_DATA = "#eceff2"


# ---------------------------------------------------------------------------------------
# horizontal bars (sizes, drift, outcomes)
# ---------------------------------------------------------------------------------------


@dataclass
class _Series:
    values: list[float]
    colours: list[str]
    labels: list[str]
    name: str = ""
    light: bool = False  # drawn pale with an outline (e.g. "share of value")
    label_fill: str = INK


@dataclass
class _RefLine:
    value: float
    colour: str
    legend: str


@dataclass
class _Bars:
    title: str
    names: list[str]
    series: list[_Series]
    lines: list[_RefLine] = field(default_factory=list)
    tick: Callable[[float], str] = _plain_tick
    x_label: str = ""
    headroom: float = 1.15
    min_top: float = 0.0
    desc: str = ""


def _legend(
    items: Sequence[tuple[str, str]], x: float, y: float, right: float
) -> tuple[list[str], float]:
    """Legend entries ``(swatch drawn in (0,0)-(16,10), text)`` in rows from ``(x, y)``
    (``y`` is the centre of the first row), wrapping before ``right``. Returns the SVG
    parts and the centre of the last row."""
    out: list[str] = []
    cx, cy = x, y
    for swatch, text in items:
        shown = fit(text, SMALL_SIZE, 300)
        w = 22 + text_width(shown, SMALL_SIZE) + 18
        if cx > x and cx + w > right:
            cx, cy = x, cy + 20
        out.append(f'<g transform="translate({_num(cx)} {_num(cy - 5)})">{swatch}</g>')
        out.append(_text(cx + 22, cy, text, size=SMALL_SIZE, fill=MUTED, max_width=300))
        cx += w
    return out, cy


def _bar_swatch(colour_: str, light: bool) -> str:
    if light:
        return (
            f'<rect x="0.5" y="0.5" width="15" height="9" fill="{colour_}" fill-opacity="0.4" '
            f'stroke="{colour_}"/>'
        )
    return f'<rect width="16" height="10" fill="{colour_}"/>'


def _line_swatch(colour_: str) -> str:
    return (
        f'<line x1="0" y1="5" x2="16" y2="5" stroke="{colour_}" stroke-width="2" '
        'stroke-dasharray="4 3"/>'
    )


def _hbars(spec: _Bars) -> str:
    n_series = len(spec.series)
    body: list[str] = [
        _text(PAD, 22, spec.title, size=TITLE_SIZE, bold=True, max_width=WIDTH - 2 * PAD)
    ]
    legend = [
        (_bar_swatch(s.colours[0] if len(set(s.colours)) == 1 else NEUTRAL, s.light), s.name)
        for s in spec.series
        if s.name
    ]
    legend += [(_line_swatch(r.colour), r.legend) for r in spec.lines]
    top = 44.0
    if legend:
        items, last = _legend(legend, PAD, 50, WIDTH - PAD)
        body += items
        top = last + 18
    # row labels: at most 2 lines, at most ~32% of the width
    label_max = WIDTH * 0.32
    widths = [
        max(text_width(line, LABEL_SIZE) for line in wrap(n, LABEL_SIZE, label_max)[0])
        for n in spec.names
    ]
    left = PAD + max([60.0, *widths]) + 10
    right = WIDTH - PAD
    plot_w = right - left
    bar_h = 15.0 if n_series > 1 else 20.0
    gap = 3.0
    row_h = max(n_series * bar_h + (n_series - 1) * gap + 14, 2 * LABEL_SIZE * 1.2 + 6)
    n = len(spec.names)
    plot_top, plot_bottom = top, top + n * row_h

    values = [v for s in spec.series for v in s.values]
    lo = min([0.0, *values, *(r.value for r in spec.lines)])
    hi = max([*values, *(r.value for r in spec.lines), spec.min_top, 1e-9]) * spec.headroom
    hi = max(hi, lo + 1e-9)
    # leave room for every value label right of its bar
    for s in spec.series:
        for v, text in zip(s.values, s.labels, strict=True):
            room = plot_w - 6 - min(text_width(text, SMALL_SIZE), plot_w / 2)
            hi = max(hi, lo + (max(v, 0.0) - lo) * plot_w / room)

    def px(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    axis: list[str] = []
    for t in nice_ticks(lo, hi):
        x = px(t)
        axis.append(_line(x, plot_top, x, plot_bottom, GRID))
        axis.append(
            _text(x, plot_bottom + 14, spec.tick(t), size=SMALL_SIZE, anchor="middle", fill=MUTED)
        )
    body += axis
    body.append(_line(px(0), plot_top, px(0), plot_bottom, AXIS))
    value_labels: list[str] = []  # drawn last, over the reference lines
    for i, name in enumerate(spec.names):
        row_top = plot_top + i * row_h
        centre = row_top + row_h / 2
        body.append(_text(left - 10, centre, name, anchor="end", max_width=label_max, max_lines=2))
        y = centre - (n_series * bar_h + (n_series - 1) * gap) / 2
        for s in spec.series:
            v, c, text = s.values[i], s.colours[i], s.labels[i]
            x0, x1 = sorted((px(0), px(v)))
            extra = f' fill-opacity="0.4" stroke="{c}"' if s.light else ""
            tip = f"{name}: {text}" + (f" ({s.name})" if s.name else "")
            body.append(_rect(x0, y, x1 - x0, bar_h, c, extra, tip))
            value_labels.append(
                _text(
                    px(max(v, 0.0)) + 5,
                    y + bar_h / 2,
                    text,
                    size=SMALL_SIZE,
                    fill=s.label_fill,
                    max_width=plot_w / 2,
                    halo=True,
                )
            )
            y += bar_h + gap
    for r in spec.lines:
        x = px(r.value)
        body.append(
            _line(
                x,
                plot_top - 4,
                x,
                plot_bottom,
                r.colour,
                ' stroke-width="1.5" stroke-dasharray="5 4"',
            )
        )
    body += value_labels
    height = plot_bottom + 24
    if spec.x_label:
        body.append(
            _text(
                (left + right) / 2,
                plot_bottom + 36,
                spec.x_label,
                anchor="middle",
                max_width=plot_w,
            )
        )
        height += 22
    return _svg(WIDTH, height + PAD / 2, spec.title, body, spec.desc)


# ---------------------------------------------------------------------------------------
# heatmaps (profile, RFM, transitions)
# ---------------------------------------------------------------------------------------


@dataclass
class _ColourBar:
    cmap: Callable[[float], str]
    vmin: float
    vmax: float
    label: str
    tick: Callable[[float], str] = _plain_tick


@dataclass
class _Heatmap:
    title: str
    rows: list[str]
    cols: list[str]
    fills: list[list[str]]
    texts: list[list[str]]
    text_fills: list[list[str]]
    bar: _ColourBar
    row_colours: list[str] | None = None
    x_label: str = ""
    y_label: str = ""
    cell_h: float = 34.0
    max_cell_w: float = 96.0
    desc: str = ""


@dataclass
class _HeatmapLayout:
    """Where a heatmap's parts go (px): the grid's left and top edges and cells, whether
    the column labels are rotated, the colour bar's position, ticks and size."""

    left: float
    top: float
    cell_w: float
    cell_h: float
    row_max: float
    col_max: float
    col_widths: list[float]
    rotated: bool
    bar_x: float
    bar_h: float
    ticks: list[float]
    tick_w: float
    width: float

    @property
    def grid_w(self) -> float:
        return len(self.col_widths) * self.cell_w

    def grid_h(self, rows: int) -> float:
        return rows * self.cell_h


def _heatmap(spec: _Heatmap) -> str:
    lay = _heatmap_layout(spec)
    body = [
        _text(
            PAD, 22, spec.title, size=TITLE_SIZE, bold=True, max_width=max(lay.width, 560) - 2 * PAD
        )
    ]
    width = max(
        lay.width, min(text_width(spec.title, TITLE_SIZE, bold=True), WIDTH - 2 * PAD) + 2 * PAD
    )
    body += _heatmap_cells(spec, lay)
    labels, height = _heatmap_column_labels(spec, lay)
    body += labels
    axis, height = _heatmap_axis_labels(spec, lay, height)
    body += axis
    body += _colour_bar(spec.bar, lay)
    height = max(height, lay.top + lay.bar_h + 12)
    return _svg(width, height + PAD / 2, spec.title, body, spec.desc)


def _heatmap_layout(spec: _Heatmap) -> _HeatmapLayout:
    """The heatmap's layout: row labels (segment names: up to 2 lines, at most 260 px) on
    the left, column labels below (rotated when they do not fit their cells), the colour
    bar on the right (at least 120 px tall)."""
    n, m = len(spec.rows), len(spec.cols)
    bold = spec.row_colours is not None
    row_max = 260.0
    row_w = max(
        [40.0]
        + [
            text_width(line, LABEL_SIZE, bold=bold)
            for r in spec.rows
            for line in wrap(r, LABEL_SIZE, row_max, bold=bold)[0]
        ]
    )
    cell_w = spec.max_cell_w if m <= 8 else max(52.0, min(spec.max_cell_w, 620.0 / m))
    col_max = 150.0
    col_widths = [text_width(c, SMALL_SIZE) for c in spec.cols]
    rotated = any(
        len(wrap(c, SMALL_SIZE, cell_w - 8, max_lines=2)[0]) > 1 or w > 2 * (cell_w - 8)
        for c, w in zip(spec.cols, col_widths, strict=True)
    ) and any(w > cell_w - 8 for w in col_widths)
    left = PAD + (24 if spec.y_label else 0) + row_w + 10
    if rotated:
        reach = min(max(col_widths, default=0.0), col_max) * math.cos(math.radians(30))
        left = max(left, PAD + reach - cell_w / 2 + 4)
    cell_h = spec.cell_h
    if spec.y_label:  # room for the rotated y label (on two lines if need be)
        cell_h = min(90.0, max(cell_h, (text_width(spec.y_label, LABEL_SIZE) + 12) / n))
    grid_w, grid_h = m * cell_w, n * cell_h
    bar_x = left + grid_w + 22
    bar_h = max(grid_h, 120.0, text_width(spec.bar.label, SMALL_SIZE) + 16)
    ticks = nice_ticks(spec.bar.vmin, spec.bar.vmax, 4)
    tick_w = max([text_width(spec.bar.tick(t), SMALL_SIZE) for t in ticks] or [0.0])
    return _HeatmapLayout(
        left=left,
        top=44.0,
        cell_w=cell_w,
        cell_h=cell_h,
        row_max=row_max,
        col_max=col_max,
        col_widths=col_widths,
        rotated=rotated,
        bar_x=bar_x,
        bar_h=bar_h,
        ticks=list(ticks),
        tick_w=tick_w,
        width=bar_x + 14 + 6 + tick_w + 8 + SMALL_SIZE * 1.4 + PAD,
    )


def _heatmap_cells(spec: _Heatmap, lay: _HeatmapLayout) -> list[str]:
    """Each row's label, then its cells with their texts."""
    body: list[str] = []
    left, top, cell_w, cell_h = lay.left, lay.top, lay.cell_w, lay.cell_h
    for i, row in enumerate(spec.rows):
        cy = top + (i + 0.5) * cell_h
        fill = spec.row_colours[i] if spec.row_colours else INK
        body.append(
            _text(
                left - 10,
                cy,
                row,
                anchor="end",
                fill=fill,
                bold=spec.row_colours is not None,
                max_width=lay.row_max,
                max_lines=2,
            )
        )
        for j, col in enumerate(spec.cols):
            x, y = left + j * cell_w, top + i * cell_h
            text = spec.texts[i][j]
            body.append(
                _rect(
                    x,
                    y,
                    cell_w,
                    cell_h,
                    spec.fills[i][j],
                    ' stroke="#fff"',
                    f"{row} / {col}: {text.replace(chr(10), ' ')}" if text else f"{row} / {col}",
                )
            )
            if text:
                lines = text.split("\n")
                for k, line in enumerate(lines):
                    body.append(
                        _text(
                            x + cell_w / 2,
                            y + cell_h / 2 + (k - (len(lines) - 1) / 2) * SMALL_SIZE * 1.2,
                            line,
                            size=SMALL_SIZE,
                            anchor="middle",
                            fill=spec.text_fills[i][j],
                            max_width=cell_w - 4,
                        )
                    )
    return body


def _heatmap_column_labels(spec: _Heatmap, lay: _HeatmapLayout) -> tuple[list[str], float]:
    """The column labels below the grid (rotated by 30 degrees, or on up to 2 lines) and
    the height reached."""
    body: list[str] = []
    bottom = lay.top + lay.grid_h(len(spec.rows))
    if lay.rotated:
        for j, col in enumerate(spec.cols):
            cx = lay.left + (j + 0.5) * lay.cell_w
            body.append(
                _text(
                    cx,
                    bottom + 10,
                    col,
                    size=SMALL_SIZE,
                    anchor="end",
                    max_width=lay.col_max,
                    rotate=-30,
                )
            )
        label_h = min(max(lay.col_widths, default=0.0), lay.col_max) * 0.5 + SMALL_SIZE + 12
        return body, bottom + label_h
    n_lines = 1
    for j, col in enumerate(spec.cols):
        cx = lay.left + (j + 0.5) * lay.cell_w
        lines = wrap(col, SMALL_SIZE, lay.cell_w - 8, max_lines=2)[0]
        n_lines = max(n_lines, len(lines))
        body.append(
            _text(
                cx,
                bottom + 8 + len(lines) * SMALL_SIZE * 0.6,
                col,
                size=SMALL_SIZE,
                anchor="middle",
                max_width=lay.cell_w - 8,
                max_lines=2,
            )
        )
    label_h = n_lines * SMALL_SIZE * 1.2 + 12
    return body, bottom + label_h


def _heatmap_axis_labels(
    spec: _Heatmap, lay: _HeatmapLayout, height: float
) -> tuple[list[str], float]:
    """The x label below the column labels (at ``height``) and the y label on the left;
    and the height reached."""
    body: list[str] = []
    grid_w, grid_h = lay.grid_w, lay.grid_h(len(spec.rows))
    if spec.x_label:
        extra_lines = len(wrap(spec.x_label, LABEL_SIZE, grid_w + 20)[0]) - 1
        body.append(
            _text(
                lay.left + grid_w / 2,
                height + 8 + extra_lines * LABEL_SIZE * 0.6,
                spec.x_label,
                anchor="middle",
                max_width=grid_w + 20,
                max_lines=2,
            )
        )
        height += 22 + extra_lines * LABEL_SIZE * 1.2
    if spec.y_label:
        body.append(
            _text(
                PAD + 8,
                lay.top + grid_h / 2,
                spec.y_label,
                anchor="middle",
                rotate=-90,
                max_width=grid_h + 10,
                max_lines=2,
            )
        )
    return body, height


def _colour_bar(bar: _ColourBar, lay: _HeatmapLayout) -> list[str]:
    """The colour bar (48 steps, top = ``bar.vmax``), its ticks and its label."""
    body: list[str] = []
    top, bar_x, bar_h = lay.top, lay.bar_x, lay.bar_h
    steps = 48
    span = bar.vmax - bar.vmin or 1.0
    for k in range(steps):
        t = 1 - (k + 0.5) / steps  # top = vmax
        body.append(_rect(bar_x, top + k * bar_h / steps, 14, bar_h / steps + 0.5, bar.cmap(t)))
    body.append(_rect(bar_x, top, 14, bar_h, "none", f' stroke="{AXIS}"'))
    for t in lay.ticks:
        y = top + (1 - (t - bar.vmin) / span) * bar_h
        body.append(_line(bar_x + 14, y, bar_x + 18, y, AXIS))
        body.append(_text(bar_x + 20, y, bar.tick(t), size=SMALL_SIZE, fill=MUTED))
    lx = bar_x + 14 + 6 + lay.tick_w + 8 + SMALL_SIZE * 0.7
    body.append(
        _text(
            lx,
            top + bar_h / 2,
            bar.label,
            size=SMALL_SIZE,
            anchor="middle",
            fill=MUTED,
            rotate=90,
            max_width=bar_h,
        )
    )
    return body


# ---------------------------------------------------------------------------------------
# the report's charts
# ---------------------------------------------------------------------------------------


def _feature_label(name: str) -> str:
    from custseg.scoring.profiles import feature_label

    return feature_label(name)


def _pct(v: float, digits: int = 0) -> str:
    return f"{100 * v:.{digits}f}%"


def chart_sizes(segments: Sequence[Mapping[str, Any]]) -> str | None:
    """Horizontal bars: share of customers and share of value per segment."""
    if not segments:
        return None
    names = [str(s.get("name", f"Segment {s.get('id')}")) for s in segments]
    colours = [colour(s["id"]) for s in segments]
    shares = [_finite(s.get("share")) for s in segments]
    values = [_finite(s.get("value_share")) for s in segments]
    has_value = any(s.get("value_share") is not None for s in segments)
    series = [
        _Series(
            [v or 0.0 for v in shares],
            colours,
            ["n/a" if v is None else _pct(v) for v in shares],
            "share of customers" if has_value else "",
        )
    ]
    if has_value:
        series.append(
            _Series(
                [v or 0.0 for v in values],
                colours,
                ["n/a" if v is None else _pct(v) for v in values],
                "share of value",
                light=True,
                label_fill="#444",
            )
        )
    desc = "; ".join(
        f"{n}: {series[0].labels[i]} of customers"
        + (f", {series[1].labels[i]} of value" if has_value else "")
        for i, n in enumerate(names)
    )
    return _hbars(
        _Bars(
            "How big is each segment, and how much value does it bring?",
            names,
            series,
            tick=_pct_tick,
            min_top=0.05,
            desc=desc + ".",
        )
    )


def chart_profile(profiles: Mapping[str, Any]) -> str | None:
    """Heatmap of standardised mean differences, segments x numeric features."""
    segments = list(profiles.get("segments", []) or [])
    feats = list((profiles.get("features", {}) or {}).get("numeric", []) or [])
    if not segments or not feats:
        return None
    z = np.array(
        [
            [
                _finite((s.get("numeric", {}).get(f, {}) or {}).get("std_diff", 0.0) or 0.0)
                for f in feats
            ]
            for s in segments
        ],
        dtype="float64",
    )  # None (not finite) -> nan
    finite = np.abs(z[np.isfinite(z)])
    lim = max(1.5, float(finite.max()) if finite.size else 1.5)
    fills, texts, text_fills = [], [], []
    for row in z:
        fills.append(
            [NO_DATA if not math.isfinite(v) else RDBU_R((v + lim) / (2 * lim)) for v in row]
        )
        texts.append(["n/a" if not math.isfinite(v) else f"{v:+.1f}" for v in row])
        text_fills.append(
            ["#fff" if math.isfinite(v) and abs(v) > lim * 0.55 else "#222" for v in row]
        )
    return _heatmap(
        _Heatmap(
            "What sets each segment apart (red = above average, blue = below)",
            [str(s.get("name", f"Segment {s.get('id')}")) for s in segments],
            [_feature_label(str(f)) for f in feats],
            fills,
            texts,
            text_fills,
            _ColourBar(RDBU_R, -lim, lim, "vs average (std. dev.)"),
            row_colours=[colour(s["id"]) for s in segments],
        )
    )


def chart_map(sample: pd.DataFrame | None, names: Mapping[int, str]) -> str | None:
    """Scatter of the sampled customers on the first two principal components, one colour
    per segment (at most :data:`MAX_MAP_POINTS` dots)."""
    if sample is None or sample.empty or not {"pc1", "pc2", "segment_id"} <= set(sample.columns):
        return None
    x = np.asarray(sample["pc1"], dtype="float64")
    y = np.asarray(sample["pc2"], dtype="float64")
    seg = np.asarray(sample["segment_id"], dtype="float64")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(seg)
    x, y, seg = x[ok], y[ok], seg[ok].astype("int64")
    if x.size == 0:
        return None
    if x.size > MAX_MAP_POINTS:  # evenly spaced, deterministic
        keep = np.linspace(0, x.size - 1, MAX_MAP_POINTS).round().astype("int64")
        x, y, seg = x[keep], y[keep], seg[keep]
    title = "Map of sampled customers, coloured by segment"
    plot_l, plot_t, plot_w, plot_h = PAD, 12.0, WIDTH - 2 * PAD, 520.0

    def scale(v: np.ndarray, size: float) -> np.ndarray:
        lo, hi = float(v.min()), float(v.max())
        if hi - lo < 1e-12:
            lo, hi = lo - 1, hi + 1
        margin = (hi - lo) * 0.04
        return (v - (lo - margin)) / ((hi + margin) - (lo - margin)) * size

    px = np.round((plot_l + scale(x, plot_w)) * 10).astype("int64")
    py = np.round((plot_t + plot_h - scale(y, plot_h)) * 10).astype("int64")
    dot = 5 if x.size > 1500 else 7
    body = [
        _rect(plot_l, plot_t, plot_w, plot_h, "none", f' stroke="{GRID}"'),
    ]
    ids = sorted(int(v) for v in np.unique(seg))
    for s in ids:
        mask = seg == s
        pts = np.unique(np.stack([px[mask], py[mask]], axis=1), axis=0)  # 0.1 px duplicates
        d = "".join(f"M{_tenths(a)} {_tenths(b)}h0" for a, b in pts.tolist())
        label = names.get(s, f"Segment {s}")
        body.append(
            f"<g><title>{esc(label)}: {int(mask.sum()):,} customers in the sample</title>"
            f'<path d="{d}" fill="none" stroke="{colour(s)}" stroke-width="{dot}" '
            'stroke-linecap="round" stroke-opacity="0.6"/></g>'
        )
    # legend below, up to 3 columns
    ncol = min(3, len(ids))
    col_w = (WIDTH - 2 * PAD) / ncol
    legend_top = plot_t + plot_h + 22
    for k, s in enumerate(ids):
        cx = PAD + (k % ncol) * col_w
        cy = legend_top + (k // ncol) * 22
        body.append(f'<circle cx="{_num(cx + 6)}" cy="{_num(cy)}" r="5" fill="{colour(s)}"/>')
        body.append(_text(cx + 18, cy, names.get(s, f"Segment {s}"), max_width=col_w - 30))
    height = legend_top + ((len(ids) - 1) // ncol) * 22 + 14 + PAD / 2
    desc = "; ".join(f"{names.get(s, f'Segment {s}')}: {int((seg == s).sum()):,} dots" for s in ids)
    return _svg(WIDTH, height, title, body, desc + ".")


def _tenths(q: int) -> str:
    """A coordinate in tenths of a px (non-negative) as text: 1234 -> "123.4"."""
    whole, frac = divmod(q, 10)
    return f"{whole}.{frac}" if frac else str(whole)


def chart_rfm(metrics: Mapping[str, Any]) -> str | None:
    """5 x 5 grid of customers by R score (rows, recent at the top) and F score."""
    labels = metrics.get("labels", {}) or {}
    grid = (labels.get("rfm_grid") or {}).get("counts")
    if not labels.get("rfm_available") or not grid:
        return None
    counts = np.nan_to_num(np.asarray(grid, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    if counts.shape != (5, 5):
        return None
    total = counts.sum() or 1.0
    shown = counts[::-1, :]  # R 5 (bought recently) at the top
    share = shown / total
    top = float(share.max()) or 1.0
    return _heatmap(
        _Heatmap(
            "Customers by recency and frequency",
            ["5 bought recently", "4", "3", "2", "1 long ago"],
            ["1 rarely", "2", "3", "4", "5 very often"],
            [[BLUES(v / top) for v in row] for row in share],
            [
                [f"{int(c):,}\n{v:.0%}" for c, v in zip(cr, sr, strict=True)]
                for cr, sr in zip(shown, share, strict=True)
            ],
            [["#fff" if v > top * 0.6 else "#222" for v in row] for row in share],
            _ColourBar(BLUES, 0.0, top, "share of customers", _pct_tick),
            x_label="F score: how often they buy",
            y_label="R score: how recently they bought",
            cell_h=46,
            max_cell_w=104,
        )
    )


def drift_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(plain label, PSI) per feature, category mix and segment sizes, largest first."""
    drift = metrics.get("drift", {}) or {}
    rows: list[tuple[str, float]] = []
    for name, entry in (drift.get("numeric") or {}).items():
        if _finite(entry.get("psi")) is not None:
            rows.append((_feature_label(name), float(entry["psi"])))
    for name, entry in (drift.get("categorical") or {}).items():
        if _finite(entry.get("psi")) is not None:
            rows.append((_feature_label(name) + " (mix)", float(entry["psi"])))
    seg = drift.get("segment_shares") or {}
    if _finite(seg.get("psi")) is not None:
        rows.append(("segment sizes", float(seg["psi"])))
    rows.sort(key=lambda r: -r[1])
    return rows


def psi_limits(metrics: Mapping[str, Any]) -> tuple[float, float]:
    """The (watch, retrain) PSI thresholds of the run."""
    th = metrics.get("thresholds", {}) or {}
    return float(th.get("psi_watch", 0.1)), float(th.get("psi_retrain", 0.25))


def chart_drift(metrics: Mapping[str, Any]) -> str | None:
    """Bars of PSI per measure, largest first, coloured by threshold."""
    rows = drift_rows(metrics)
    if not rows:
        return None
    watch, retrain = psi_limits(metrics)
    limit = MAX_DRIFT_BARS if rows[0][1] > watch else MAX_DRIFT_BARS_STABLE
    hidden = max(0, len(rows) - limit)
    rows = rows[:limit]
    vals = [r[1] for r in rows]
    cols = [RED if v > retrain else AMBER if v > watch else GREEN for v in vals]
    title = "Change per measure, largest first"
    if hidden:
        title += f" ({hidden} more, all smaller, not shown)"
    return _hbars(
        _Bars(
            title,
            [r[0] for r in rows],
            [_Series(vals, cols, [f"{v:.2f}" for v in vals])],
            [
                _RefLine(watch, AMBER, f"watch ({watch:g})"),
                _RefLine(retrain, RED, f"retrain ({retrain:g})"),
            ],
            x_label="change vs the training data (PSI; 0 = same)",
            min_top=retrain * 1.3 / 1.15,
            desc="; ".join(f"{n}: {v:.2f}" for n, v in rows) + ".",
        )
    )


def chart_transitions(metrics: Mapping[str, Any]) -> str | None:
    """Heatmap: share of each previous segment now in each segment."""
    st = metrics.get("stability", {}) or {}
    if not st.get("available"):
        return None
    tr = st.get("transitions") or {}
    counts = np.nan_to_num(
        np.asarray(tr.get("counts") or [], dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0
    )
    if counts.ndim != 2 or counts.size == 0 or counts.sum() == 0:
        return None
    frm = [str(r.get("name", f"Segment {r.get('id')}")) for r in tr.get("from", []) or []]
    to = [str(r.get("name", f"Segment {r.get('id')}")) for r in tr.get("to", []) or []]
    frm += [f"Segment {i}" for i in range(len(frm), counts.shape[0])]
    to += [f"Segment {j}" for j in range(len(to), counts.shape[1])]
    frm, to = frm[: counts.shape[0]], to[: counts.shape[1]]
    row_tot = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_tot, out=np.zeros_like(counts), where=row_tot > 0)
    return _heatmap(
        _Heatmap(
            "Where did last run's customers go?",
            frm,
            to,
            [[PURPLES(v) for v in row] for row in share],
            [
                [f"{v:.0%}" if c else "" for c, v in zip(cr, sr, strict=True)]
                for cr, sr in zip(counts, share, strict=True)
            ],
            [["#fff" if v > 0.6 else "#222" for v in row] for row in share],
            _ColourBar(PURPLES, 0.0, 1.0, "share of the previous segment", _pct_tick),
            x_label="segment in this run",
            y_label="segment in the previous run",
            max_cell_w=110,
        )
    )


def chart_outcome(name: str, doc: Mapping[str, Any]) -> str | None:
    """Bars of an outcome's rate (e.g. churn) per segment, with the overall rate."""
    rows = [r for r in doc.get("by_segment", []) or [] if _finite(r.get("rate")) is not None]
    if not rows:
        return None
    rates = [float(r["rate"]) for r in rows]
    labels = []
    for r in rows:
        lift = _finite(r.get("lift"))
        labels.append(
            _pct(float(r["rate"])) + (f" ({lift:.1f}x average)" if lift is not None else "")
        )
    overall = _finite(doc.get("overall_rate")) or 0.0
    title = f"{_feature_label(name).capitalize()} rate per segment"
    names = [str(r.get("name", f"Segment {r.get('id')}")) for r in rows]
    return _hbars(
        _Bars(
            title,
            names,
            [_Series(rates, [colour(r["id"]) for r in rows], labels)],
            [_RefLine(overall, "#333", f"all customers ({overall:.0%})")],
            tick=_pct_tick,
            headroom=1.1,
            desc="; ".join(f"{n}: {t.strip()}" for n, t in zip(names, labels, strict=True))
            + f"; all customers: {overall:.0%}.",
        )
    )


def chart_reliability(name: str, doc: Mapping[str, Any]) -> str | None:
    """Bars of the observed outcome rate per band of predicted probability (the
    cross-validated reliability curve): a calibrated model's bars end near each band's
    predicted mean (shown in the label)."""
    rows = [
        r
        for r in (doc.get("cv") or {}).get("reliability", []) or []
        if r.get("customers") and _finite(r.get("observed")) is not None
    ]
    if not rows:
        return None
    names = [f"predicted {r['low']:.0%}-{r['high']:.0%}" for r in rows]
    observed = [float(r["observed"]) for r in rows]
    labels = [
        f"{float(r['observed']):.0%} observed vs {float(r['predicted']):.0%} predicted "
        f"({int(r['customers']):,})"
        for r in rows
    ]
    outcome = _feature_label(str(doc.get("outcome") or name.removeprefix("p_")))
    return _hbars(
        _Bars(
            f"Predicted vs observed {outcome} (out of fold)",
            names,
            [_Series(observed, [NEUTRAL] * len(rows), labels)],
            tick=_pct_tick,
            headroom=1.1,
            desc="; ".join(f"{n}: {t}" for n, t in zip(names, labels, strict=True)) + ".",
        )
    )


def chart_expected_value(profiles: Mapping[str, Any]) -> str | None:
    """Bars per segment: its share of the customers' expected value over the next 12
    months next to its share of their past value (profiles ``predictions.clv``)."""
    clv = ((profiles.get("predictions") or {}).get("clv") or {}).get("segments") or []
    rows = [r for r in clv if r.get("customers")]
    if not rows or not any(_finite(r.get("expected_value_share")) for r in rows):
        return None
    names = [str(r.get("name", f"Segment {r.get('id')}")) for r in rows]
    colours = [colour(r["id"]) for r in rows]
    ahead = [_finite(r.get("expected_value_share")) or 0.0 for r in rows]
    past = [_finite(r.get("past_value_share")) or 0.0 for r in rows]
    series = [
        _Series(ahead, colours, [_pct(v) for v in ahead], "share of expected value (12 months)"),
        _Series(
            past,
            colours,
            [_pct(v) for v in past],
            "share of past value",
            light=True,
            label_fill="#444",
        ),
    ]
    desc = "; ".join(
        f"{n}: {_pct(a)} of expected value, {_pct(p)} of past value"
        for n, a, p in zip(names, ahead, past, strict=True)
    )
    return _hbars(
        _Bars(
            "Where will next year's value come from?",
            names,
            series,
            tick=_pct_tick,
            min_top=0.05,
            desc=desc + ".",
        )
    )


def chart_holdout(metrics: Mapping[str, Any]) -> str | None:
    """Bars per calibration frequency (0 .. 7+ repeat purchases): mean purchases per
    customer predicted for the holdout next to the actual ones (metrics
    ``predictions.clv.holdout``)."""
    holdout = ((metrics.get("predictions") or {}).get("clv") or {}).get("holdout") or {}
    rows = [r for r in holdout.get("by_frequency") or [] if r.get("customers")]
    if not holdout.get("evaluated") or not rows:
        return None
    names = [f"{r['frequency']} repeat purchases ({int(r['customers']):,} customers)" for r in rows]
    predicted = [_finite(r.get("predicted_mean")) or 0.0 for r in rows]
    actual = [_finite(r.get("actual_mean")) or 0.0 for r in rows]
    series = [
        _Series(predicted, [NEUTRAL] * len(rows), [f"{v:.2f}" for v in predicted], "predicted"),
        _Series(
            actual,
            [INK] * len(rows),
            [f"{v:.2f}" for v in actual],
            "actual",
            light=True,
            label_fill="#444",
        ),
    ]
    desc = "; ".join(
        f"{n}: predicted {p:.2f}, actual {a:.2f}"
        for n, p, a in zip(names, predicted, actual, strict=True)
    )
    return _hbars(
        _Bars(
            f"Purchases per customer in the {holdout.get('holdout_days')}-day holdout",
            names,
            series,
            x_label="purchase days per customer",
            desc=desc + ".",
        )
    )

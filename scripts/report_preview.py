"""Draw docs/report-preview.svg: the first charts of a run's report.html, stacked into one
image the README shows.

The report's charts are inline SVG, so the picture is made from the report itself (no
browser needed): the report's title, then its first ``--charts`` charts, each scaled to
one width.

    python scripts/report_preview.py                      # runs `custseg demo` first
    python scripts/report_preview.py --report path/to/report.html
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH = 960
GAP = 24
TITLE_HEIGHT = 48


def demo_report(out: Path) -> Path:
    """Run ``custseg demo`` into ``out`` and return its customer table's current report."""
    subprocess.run(
        [sys.executable, "-m", "custseg.cli", "demo", "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (report,) = out.glob("*results*/segments/demo_customers/current/report.html")
    return report


def charts(page: str) -> list[tuple[float, float, str]]:
    """(width, height, inner markup) of every inline SVG chart of ``page``, in order."""
    out = []
    for match in re.finditer(r"<svg\b([^>]*)>(.*?)</svg>", page, re.S):
        box = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', match.group(1))
        if box:
            out.append((float(box.group(1)), float(box.group(2)), match.group(2)))
    return out


def preview(page: str, count: int) -> str:
    """One SVG: the report's ``<h1>`` and its first ``count`` charts, scaled to WIDTH."""
    title = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    heading = html.escape(re.sub(r"<[^>]+>", "", title.group(1)) if title else "custseg report")
    parts, y = [], TITLE_HEIGHT
    for width, height, inner in charts(page)[:count]:
        scale = WIDTH / width
        parts.append(f'<g transform="translate(0 {y:.0f}) scale({scale:.4f})">{inner}</g>')
        y += height * scale + GAP
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {y:.0f}" '
        f'width="{WIDTH}" font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="0" y="32" font-size="26" font-weight="600">{heading}</text>'
        + "".join(parts)
        + "</svg>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, help="a report.html (default: run the demo)")
    parser.add_argument("--charts", type=int, default=3, help="how many charts to keep")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report-preview.svg")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = args.report or demo_report(Path(tmp))
        args.out.write_text(preview(report.read_text(encoding="utf-8"), args.charts), "utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What to offer each segment and each customer, from an order log's product categories.

The method (SQL on DuckDB over the clean Parquet parts, ``sql/offers.sql``):

- a customer *bought* a category when one of their order lines (not a return) names it;
- per segment and category: ``share``, the segment's customers who bought it;
  ``base_share``, the same over every customer scored; ``lift = share / base_share``
  (above 1: the segment buys it more than the base);
- a segment's **offers** are its categories of lift above 1 bought by at least
  :data:`MIN_BUYERS` of its customers, highest lift first (at most :data:`SEGMENT_TOP`);
- a customer's **offers** are the :data:`CUSTOMER_TOP` first categories of their
  segment's ranking they have not bought: the categories of lift above 1 (with enough
  buyers) by share, then the segment's other categories by share, then the base's most
  bought (so a customer who bought everything their segment likes, or a segment without
  orders, still gets offers). At most :data:`CANDIDATES` of each list are considered.

The category column is the order log's ``product_category`` or, without one, its
``product_id`` (a stock code: each product is its own category). A log with neither
gives no offers, and :func:`category_column` says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from custseg.features.engine import EngineLimits, connect
from custseg.features.sql import literal, quote
from custseg.layout import OFFERS_FILE

CATEGORY_COLUMNS = ("product_category", "product_id")
MIN_BUYERS = 5
SEGMENT_TOP = 5
CUSTOMER_TOP = 3
CANDIDATES = 20
NO_CATEGORY = (
    "no offers: the dataset has no order log with a product or category column "
    "(product_category, or product_id from a stock code)"
)


@functools.cache
def _template(name: str) -> Template:
    text = resources.files("custseg.campaigns.sql").joinpath(f"{name}.sql").read_text("utf-8")
    return Template(text)


def category_column(columns: Sequence[str]) -> str | None:
    """The column offers are made of (None: the order log has none)."""
    return next((c for c in CATEGORY_COLUMNS if c in columns), None)


@dataclass(frozen=True)
class Offers:
    """Per segment: its profile rows; per customer: their offers (best first)."""

    column: str
    segments: pd.DataFrame  # segment_id, category, buyers, share, base_share, lift
    customers: pd.DataFrame  # customer_id, segment_id, offer_1 .. offer_<CUSTOMER_TOP>

    def segment_offers(self, segment_id: int) -> list[dict[str, Any]]:
        """The segment's categories bought more than by the base, highest lift first."""
        rows = self.segments[
            (self.segments["segment_id"] == segment_id)
            & (self.segments["lift"] > 1)
            & (self.segments["buyers"] >= MIN_BUYERS)
        ].sort_values(["lift", "category"], ascending=[False, True])
        return [
            {
                "category": str(r["category"]),
                "buyers": int(r["buyers"]),
                "share": round(float(r["share"]), 4),
                "base_share": round(float(r["base_share"]), 4),
                "lift": round(float(r["lift"]), 3),
            }
            for r in rows.head(SEGMENT_TOP).to_dict("records")
        ]


def compute_offers(
    order_parts: Sequence[Path],
    assignments: Path,
    limits: EngineLimits,
    *,
    columns: Sequence[str],
) -> Offers | None:
    """The offers of the customers in ``assignments`` (a Parquet file) from the order
    log's clean ``order_parts``; None when the log has no category column."""
    column = category_column(columns)
    if column is None:
        return None
    files = ", ".join(literal(str(p)) for p in order_parts)
    is_return = "COALESCE(is_return, FALSE)" if "is_return" in columns else "FALSE"
    with connect(limits) as con:
        con.execute(
            f"CREATE TEMPORARY VIEW orders AS SELECT * FROM read_parquet([{files}], "
            "union_by_name = true)"
        )
        con.execute(
            "CREATE TEMPORARY VIEW assignments AS SELECT customer_id, segment_id "
            f"FROM read_parquet({literal(str(assignments))})"
        )
        script = _template("offers").substitute(
            category=quote(column),
            is_return=is_return,
            min_buyers=MIN_BUYERS,
            candidates=CANDIDATES,
        )
        for statement in _statements(script):
            con.execute(statement)
        segments = con.execute("SELECT * FROM profile ORDER BY segment_id, category").df()
        picks = con.execute(_template("customer_offers").substitute(top=CUSTOMER_TOP)).df()
    return Offers(column, segments, _wide(picks))


def _statements(script: str) -> list[str]:
    """The statements of a script (``--`` comment lines dropped, split at ``;``)."""
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s for s in code.split(";") if s.strip()]


def _wide(picks: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: ``offer_1`` .. ``offer_<CUSTOMER_TOP>`` (best first)."""
    cols = [f"offer_{i + 1}" for i in range(CUSTOMER_TOP)]
    if picks.empty:
        return pd.DataFrame(columns=["customer_id", "segment_id", *cols])
    picks = picks.assign(n=picks.groupby("customer_id").cumcount() + 1)
    wide = picks.pivot(index=["customer_id", "segment_id"], columns="n", values="category")
    wide.columns = [f"offer_{int(n)}" for n in wide.columns]
    return wide.reindex(columns=cols).reset_index()


def annotate_profiles(profiles: dict[str, Any], offers: Offers | None) -> None:
    """Add each segment's offers to ``profiles`` (``offers`` per segment, the text
    ``offer: a, b, c`` in ``offer``), or say why there are none."""
    if offers is None:
        profiles["offers"] = {"available": False, "reason": NO_CATEGORY}
        return
    profiles["offers"] = {"available": True, "column": offers.column, "method": _METHOD}
    for seg in profiles.get("segments", []):
        found = offers.segment_offers(int(seg["id"]))
        seg["offers"] = found
        if found:
            seg["offer"] = "offer: " + ", ".join(o["category"] for o in found[:CUSTOMER_TOP])


_METHOD = (
    f"a segment's offers: its categories of lift above 1 (share of the segment buying it / "
    f"share of every customer), bought by at least {MIN_BUYERS} of its customers; a "
    f"customer's: the first {CUSTOMER_TOP} of their segment's categories they have not "
    "bought (see docs/campaigns.md)"
)


def annotator(
    flags: Mapping[int, list[str]],
    order_parts: Sequence[Path],
    limits: EngineLimits,
    out_dir: Path,
) -> Callable[[dict[str, Any], Path], None]:
    """The ``annotate`` hook of a scoring run (see
    :func:`custseg.scoring.score.score_dataset`): each segment's campaign ``flags``
    (segment id -> "stop campaign X for them") in ``campaign_flags``, and the offers
    from the order log's clean ``order_parts`` (none: no order log) in the profiles,
    each customer's in ``out_dir/offers.csv``."""

    def annotate(profiles: dict[str, Any], assignments: Path) -> None:
        for seg in profiles.get("segments", []):
            if flags.get(int(seg["id"])):
                seg["campaign_flags"] = list(flags[int(seg["id"])])
        offers = None
        if order_parts:
            columns = pq.read_schema(str(order_parts[0])).names
            offers = compute_offers(order_parts, assignments, limits, columns=columns)
        annotate_profiles(profiles, offers)
        if offers is not None:
            offers.customers.to_csv(out_dir / OFFERS_FILE, index=False)

    return annotate

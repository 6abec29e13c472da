"""Pick the built-in contract that fits a file's headers best."""

from __future__ import annotations

from custseg.ingest.contracts.model import (
    BUILTIN_KINDS,
    Contract,
    Role,
    builtin_contract,
    normalise_header,
)

_TX_ROLES = (Role.QUANTITY, Role.UNIT_PRICE, Role.AMOUNT, Role.INVOICE_ID)
_CAMPAIGN_GROUPS = ("group", "holdout")  # columns only campaign results carry


def matched_columns(contract: Contract, headers: list[str]) -> dict[str, str]:
    """Header (as written) -> canonical column, for the headers ``contract`` knows."""
    hmap = contract.header_map()
    return {h: hmap[normalise_header(h)] for h in headers if normalise_header(h) in hmap}


def detect_contract(headers: list[str]) -> tuple[Contract, str]:
    """The built-in contract whose columns match ``headers`` best, and why.

    ``campaign`` wins when the headers hold a treatment/control group (or holdout flag)
    plus a response (sent, opened, clicked, converted or their times); ``transactions``
    when they hold an event time plus at least one of quantity, unit price, amount or
    invoice id; otherwise ``customers`` (one row per customer) — the kind that matches
    more headers breaks any remaining tie.
    """
    contracts = {kind: builtin_contract(kind) for kind in BUILTIN_KINDS}
    matches = {kind: matched_columns(c, headers) for kind, c in contracts.items()}
    campaign = contracts["campaign"]
    cp_cols = set(matches["campaign"].values())
    groups = sorted(c for c in _CAMPAIGN_GROUPS if c in cp_cols)
    responses = sorted(c.name for c in campaign.by_role(Role.OUTCOME) if c.name in cp_cols)
    if groups and responses:
        return campaign, (
            f"campaign: {', '.join(groups)} plus {', '.join(responses)} "
            f"({len(cp_cols)} of {len(headers)} headers matched)"
        )
    tx = contracts["transactions"]
    tx_cols = set(matches["transactions"].values())
    has_time = any(c.name in tx_cols for c in tx.by_role(Role.EVENT_TIME))
    tx_fields = sorted(c.name for r in _TX_ROLES for c in tx.by_role(r) if c.name in tx_cols)
    if has_time and tx_fields:
        return tx, (
            f"transactions: an event time plus {', '.join(tx_fields)} "
            f"({len(tx_cols)} of {len(headers)} headers matched)"
        )
    n_cust = len(set(matches["customers"].values()))
    reason = f"customers: {n_cust} of {len(headers)} headers matched"
    if not has_time and tx_fields:
        reason += " (no event time column, so not transactions)"
    return contracts["customers"], reason

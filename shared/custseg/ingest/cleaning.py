"""Cleaning per contract: normalise text, transaction rules, dedupe, impute, flag outliers.

All functions are vectorised over pandas / numpy; none loops over rows.

- :func:`normalise_column` trims text, collapses whitespace, lower-cases categories,
  applies synonyms (``Y``/``Yes``/``1``/``True`` ...) and spots missing-value tokens.
- :func:`apply_transaction_rules` marks cancellations / returns, computes amounts and
  decides which rows the contract excludes.
- :func:`dedupe_plan` decides, over the whole file, which rows are exact duplicates and
  which repeated customer ids are dropped (rule ``latest`` or ``most_complete``).
- :class:`ColumnStats` / :func:`collect_stats` gather imputation values and outlier
  bounds from a bounded deterministic sample (exact below ``SAMPLE_K`` rows).
- :func:`apply_cleaning` imputes and adds ``<name>__missing`` / ``<name>__clipped`` flag
  columns (``__clipped``: outside the outlier bounds; the value itself is kept).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from custseg.ingest.contracts.model import (
    ColumnSpec,
    ColumnType,
    Contract,
    DedupeRule,
    MissingPolicy,
    OutlierMethod,
    Role,
)
from custseg.stats import Counts, Moments

MISSING_TOKENS = frozenset(
    {"", "na", "n/a", "n.a.", "nan", "null", "none", "nil", "-", "--", "?", "(blank)", "#n/a"}
)
NUMERIC_TYPES = (ColumnType.INTEGER, ColumnType.FLOAT)
TEXT_TYPES = (ColumnType.ID, ColumnType.STRING, ColumnType.CATEGORY)
SAMPLE_K = 200_000


@dataclass
class NormalisedColumn:
    """Normalised text of one column: ``values`` (str, "" where missing) and ``missing``."""

    values: pd.Series
    missing: np.ndarray
    repairs: dict[str, int] = field(default_factory=dict)


def to_np_bool(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array as a numpy bool array (null -> False)."""
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def as_text(raw: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` / ``large_string`` array, null -> ""."""
    arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar("", arr.type))
    return arr


def weighted_count(mask: np.ndarray, weights: np.ndarray | None) -> int:
    """``mask.sum()``, or the sum of ``weights`` where ``mask`` (values of a dictionary
    counted by how many rows hold them)."""
    if weights is None:
        return int(np.count_nonzero(mask))
    return int(weights[mask].sum())


def normalise_text(
    raw: pa.Array | pa.ChunkedArray, spec: ColumnSpec, weights: np.ndarray | None = None
) -> tuple[pa.Array, np.ndarray, dict[str, int]]:
    """Arrow core of :func:`normalise_column`: ``(values, missing, repairs)``.

    ``values`` is a string array ("" where missing), ``missing`` a numpy bool array.
    ``weights`` (optional): how many rows hold each value, when ``raw`` is the
    dictionary of a column's distinct values; repair counts are then row counts.
    """
    text = as_text(raw)
    stripped = pc.utf8_trim_whitespace(text)
    lower = pc.utf8_lower(stripped)
    tokens = MISSING_TOKENS | {t.strip().lower() for t in spec.missing_tokens}
    missing = to_np_bool(pc.is_in(lower, value_set=pa.array(sorted(tokens), type=lower.type)))
    present = ~missing
    repairs: dict[str, int] = {}
    # trimming only removes characters: a value changed iff its length changed
    changed = to_np_bool(pc.not_equal(pc.binary_length(stripped), pc.binary_length(text)))
    trimmed = weighted_count(changed & present, weights)
    if trimmed:
        repairs["trimmed whitespace"] = trimmed
    values = stripped
    if spec.type in (ColumnType.CATEGORY, ColumnType.BOOLEAN):
        values = lower  # lower case is the canonical form: not counted as a repair
        if pc.any(pc.match_substring_regex(values, r"\s\s|[\t\r\n]")).as_py():
            collapsed = pc.replace_substring_regex(values, r"\s+", " ")
            changed = to_np_bool(pc.not_equal(collapsed, values)) & present
            if changed.any():
                repairs["collapsed inner whitespace"] = weighted_count(changed, weights)
            values = collapsed
        if spec.synonyms:
            syn = {k.strip().lower(): v.strip().lower() for k, v in spec.synonyms.items()}
            keys = pa.array(list(syn), type=values.type)
            idx = pc.index_in(values, value_set=keys)
            hit = to_np_bool(pc.is_valid(idx)) & present
            if hit.any():
                mapped = pc.take(pa.array(list(syn.values()), type=values.type), idx)
                values = pc.coalesce(mapped, values)
                repairs["synonym mapped"] = weighted_count(hit, weights)
    if missing.any():
        values = pc.if_else(pa.array(present), values, pa.scalar("", values.type))
    return values, missing, repairs


def normalise_column(raw: pd.Series, spec: ColumnSpec) -> NormalisedColumn:
    """Trim, normalise case / whitespace / synonyms per the column's type.

    Counts, per reason: ``trimmed whitespace``, ``normalised case/whitespace`` (categories),
    ``synonym mapped``. Missing tokens (blank, NA, n/a, null, (blank), ...) plus the
    column's own ``missing_tokens`` become missing. Vectorised with pyarrow.compute
    (:func:`normalise_text`).
    """
    arr = pa.array(raw.astype("str").array, from_pandas=True)
    values, missing, repairs = normalise_text(arr, spec)
    out = pd.Series(values.to_pandas(), index=raw.index, dtype="str")
    return NormalisedColumn(values=out, missing=missing, repairs=repairs)


# --------------------------------------------------------------------------------------
# transactions


@dataclass
class TransactionOutcome:
    """Per-row results of :func:`apply_transaction_rules` for one chunk."""

    amount: np.ndarray  # float64, negative for returns when netted
    is_return: np.ndarray  # bool
    exclude_reasons: list[tuple[np.ndarray, str]]  # (mask, "column: reason")
    counts: Counter[str]


def apply_transaction_rules(
    typed: pd.DataFrame, contract: Contract, valid: np.ndarray
) -> TransactionOutcome:
    """Cancellations, returns, non-positive quantities / prices and amounts.

    ``typed`` holds the converted canonical columns present in the file (floats NaN
    where missing); ``valid`` marks rows that passed validation. Raw counts
    (``cancellations``, ``non_positive_quantity``, ``non_positive_price``,
    ``negative_quantity``) cover every row read whose value could be parsed, so the
    report accounts for the file as delivered; action counts (``returns_netted``,
    ``returns_excluded``, ``*_excluded``, ``amounts_computed``) cover valid rows only.

    A row is a cancellation when its invoice id starts with a cancel prefix; it is a
    return when it is a cancellation, or its quantity is negative with a positive unit
    price, or (no quantity) its amount is negative. Returns are netted (amount kept
    negative, ``is_return`` True) or excluded per ``transactions.returns``. Rows with
    quantity <= 0 that are not returns, and rows with unit price <= 0, are excluded or
    kept per the contract.
    """
    rules = contract.transactions
    assert rules is not None
    n = len(typed)
    nan = np.full(n, np.nan)
    qty = typed["quantity"].to_numpy(dtype="float64") if "quantity" in typed else nan
    price = typed["unit_price"].to_numpy(dtype="float64") if "unit_price" in typed else nan
    counts: Counter[str] = Counter()
    if "invoice_id" in typed and rules.cancel_prefixes:
        inv = typed["invoice_id"].astype("str").str.upper()
        cancel = np.zeros(n, dtype=bool)
        for prefix in rules.cancel_prefixes:
            cancel |= inv.str.startswith(prefix.upper()).to_numpy(dtype=bool)
    else:
        cancel = np.zeros(n, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        computed = qty * price  # may overflow to inf: the caller rejects those rows
    if "amount" in typed:
        amount = typed["amount"].to_numpy(dtype="float64").copy()
        fill = np.isnan(amount) & ~np.isnan(computed)
        amount[fill] = computed[fill]
    else:
        amount = computed.copy()
        fill = ~np.isnan(computed)
    with np.errstate(invalid="ignore"):
        neg_qty = qty < 0
        nonpos_qty = qty <= 0
        nonpos_price = price <= 0
        returns = cancel | (neg_qty & (price > 0)) | (np.isnan(qty) & (amount < 0))
    counts["cancellations"] = int(cancel.sum())
    counts["negative_quantity"] = int(neg_qty.sum())
    counts["non_positive_quantity"] = int(nonpos_qty.sum())
    counts["non_positive_price"] = int(nonpos_price.sum())
    counts["returns"] = int(returns.sum())
    excl: list[tuple[np.ndarray, str]] = []
    if rules.returns == "exclude":
        excl.append((returns, "invoice_id: return or cancellation (excluded by contract)"))
        counts["returns_excluded"] = int((returns & valid).sum())
    else:
        counts["returns_netted"] = int((returns & valid).sum())
    if rules.non_positive_quantity == "exclude":
        mask = nonpos_qty & ~returns
        excl.append((mask, "quantity: quantity <= 0 and not a return (excluded by contract)"))
        counts["non_positive_quantity_excluded"] = int((mask & valid).sum())
    if rules.non_positive_price == "exclude":
        excl.append((nonpos_price, "unit_price: price <= 0 (excluded by contract)"))
        counts["non_positive_price_excluded"] = int((nonpos_price & valid).sum())
    with np.errstate(invalid="ignore"):
        amount = np.where(returns, -np.abs(amount), amount)
    counts["amounts_computed"] = int((fill & valid).sum())
    return TransactionOutcome(amount=amount, is_return=returns, exclude_reasons=excl, counts=counts)


# --------------------------------------------------------------------------------------
# dedupe


def join_raw(raw: pd.DataFrame | pa.Table) -> pa.Array:
    """Each row's raw text values joined with the unit separator ``\\x1f`` (large_string)."""
    if isinstance(raw, pa.Table):
        cols = list(raw.columns)
        if raw.nbytes > 1 << 30 or not all(pa.types.is_string(c.type) for c in cols):
            cols = [pc.cast(c, pa.large_string()) for c in cols]  # 32-bit offsets may overflow
    else:
        cols = [pc.cast(pa.array(raw[c].array), pa.large_string()) for c in raw.columns]
    if not cols:
        return pa.array([], pa.large_string())
    sep = pa.scalar("\x1f", cols[0].type)
    joined = pc.binary_join_element_wise(*cols, sep) if len(cols) > 1 else cols[0]
    if isinstance(joined, pa.ChunkedArray):
        joined = joined.combine_chunks()
    return joined.cast(pa.large_string())


def split_raw(joined: pd.Series, width: int) -> pd.DataFrame:
    """Inverse of :func:`join_raw`: ``width`` text columns named "0", "1", ..."""
    parts = [str(v).split("\x1f") for v in joined]  # only for removed rows (few)
    padded = [(p + [""] * width)[:width] for p in parts]
    return pd.DataFrame(padded, columns=[str(i) for i in range(width)])


def row_hash(joined: pa.Array) -> np.ndarray:
    """A 64-bit hash per row of the joined raw text (see :func:`join_raw`).

    Two rows are exact duplicates when every value as read is identical; hashing the
    joined text once per row is pandas' fixed-key SipHash (same in every process).
    """
    if len(joined) == 0:
        return np.empty(0, dtype=np.uint64)
    text = pd.Series(pd.array(joined, dtype="str"))
    return pd.util.hash_pandas_object(text, index=False, hash_key="custseg-rowhash1").to_numpy(
        dtype=np.uint64
    )


REASON_CODES = ("", "duplicate row", "duplicate customer id")


@dataclass
class DedupePlan:
    """Which rows of the staged (valid) data to keep, in staged order.

    ``code`` per row: 0 kept, 1 exact duplicate row, 2 repeated customer id (see
    :data:`REASON_CODES`); ``reason`` is the same as text.
    """

    keep: np.ndarray  # bool
    code: np.ndarray  # uint8 index into REASON_CODES
    exact: int
    by_id: int
    customers: int

    @property
    def reason(self) -> np.ndarray:
        """object: "" kept, "duplicate row", "duplicate customer id"."""
        reasons: np.ndarray = np.asarray(REASON_CODES, dtype=object)[self.code]
        return reasons


_HASH_HEAD_BYTES = 64  # vectorised over this many leading bytes; longer tails one by one


def text_hash64(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per string (null as ""), vectorised over the Arrow buffers.

    Reads each value 8 bytes at a time and mixes the words with :func:`mix64`: one numpy
    pass per 8 bytes of the longest value, no hash table, memory a few bytes per value.
    Not cryptographic: equal strings hash equal, different ones rarely collide (callers
    use it to find candidates, then compare exactly).
    """
    arr = as_text(text)
    n = len(arr)
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    raw_offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)
    offsets: np.ndarray = raw_offsets[arr.offset : arr.offset + n + 1].astype(np.int64)
    data_buf = arr.buffers()[2]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    starts: np.ndarray = offsets[:-1]
    lengths: np.ndarray = offsets[1:] - starts
    h = mix64(lengths.astype(np.uint64))
    longest = int(lengths.max()) if n else 0
    if longest == 0:
        return h
    lo, hi = int(offsets[0]), int(offsets[-1])
    head = min(longest, _HASH_HEAD_BYTES)
    padded = np.zeros(hi - lo + head + 8, dtype=np.uint8)
    padded[: hi - lo] = data[lo:hi]
    starts = starts - lo
    # every 8-byte little-endian word starting at each byte (unaligned strided view)
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    for j in range(0, head, 8):
        word = words[starts + j]
        left = np.clip(lengths - j, 0, 8).astype(np.uint64)  # bytes of the value left
        keep = np.where(left >= 8, np.uint64(2**64 - 1), (np.uint64(1) << (left * 8)) - 1)
        h = np.where(left > 0, mix64(h ^ (word & keep)), h)  # past the end: unchanged
    if longest > head:  # the few long values: their tails hashed one by one
        long_rows = np.flatnonzero(lengths > head)
        tails = [
            bytes(padded[starts[i] + head : starts[i] + lengths[i]]) for i in long_rows.tolist()
        ]
        tail_hash = pd.util.hash_array(np.asarray(tails, dtype=object), hash_key="custseg-tail-v01")
        h[long_rows] = mix64(h[long_rows] ^ tail_hash.astype(np.uint64))
    return h


def repeated(values: np.ndarray) -> np.ndarray:
    """Mask of the values that occur more than once.

    pandas' hash table (``duplicated(keep=False)``): about half the time of sorting the
    values, for 64-bit hashes of a million rows.
    """
    if len(values) < 2:
        return np.zeros(len(values), dtype=bool)
    hit: np.ndarray = pd.Series(values, copy=False).duplicated(keep=False).to_numpy()
    return hit


def id_codes(
    customer_id: pd.Series | pa.Array | pa.ChunkedArray | np.ndarray,
) -> tuple[np.ndarray, int]:
    """Integer code per id (equal ids, equal codes; missing ids share one code) and the
    code of the missing id (-1 when none)."""
    arr = customer_id
    if isinstance(arr, np.ndarray) and arr.dtype.kind in "iu":  # already codes
        return arr, -1
    if isinstance(arr, pd.Series):
        arr = pa.array(arr.array, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
    nulls = np.flatnonzero(~to_np_bool(enc.dictionary.is_valid()))
    return codes, int(nulls[0]) if nulls.size else -1


def dedupe_plan(
    row_hash: np.ndarray,
    customer_id: pd.Series | pa.Array | pa.ChunkedArray | np.ndarray,
    contract: Contract,
    order_by: pd.Series | None = None,
    n_missing: np.ndarray | None = None,
    null_code: int = -1,
) -> DedupePlan:
    """Decide duplicates over the whole file (arrays hold every staged row, file order).

    Exact duplicate rows (same ``row_hash``) keep their first occurrence. In a customer
    table, repeated customer ids then keep one row per id: ``latest`` keeps the greatest
    ``order_by`` (missing = oldest; ties and no ``order_by`` -> last in file order);
    ``most_complete`` keeps the fewest missing values (ties -> last in file order).
    ``customer_id`` may be given as integer codes (see :func:`id_codes`); ``null_code``
    is then the code of a missing id (-1: none). See :func:`dedupe_candidates` for the
    form that only needs the few rows that can be duplicates.
    """
    n = len(row_hash)
    ids, found_null = id_codes(customer_id)
    pos = np.arange(n)
    return dedupe_candidates(
        ids,
        pos,
        np.asarray(row_hash, dtype=np.uint64),
        contract,
        order_by=None if order_by is None else order_by.to_numpy(),
        n_missing=None if n_missing is None else np.asarray(n_missing),
        null_code=found_null if found_null >= 0 else null_code,
    )


def dedupe_candidates(
    codes: np.ndarray,
    cand: np.ndarray,
    cand_hash: np.ndarray,
    contract: Contract,
    order_by: np.ndarray | None = None,
    n_missing: np.ndarray | None = None,
    null_code: int = -1,
) -> DedupePlan:
    """:func:`dedupe_plan` when only some rows can be duplicates.

    ``codes``: an integer id code per row (all rows, file order); ``cand``: the sorted
    positions of the rows that can be duplicates (every row whose id repeats, and in a
    transaction table every row whose raw text may repeat); ``cand_hash``, ``order_by``,
    ``n_missing``: the raw-text hash, recency and missing-value count of those rows only.
    Rows outside ``cand`` are kept. Memory: a few bytes per row plus the candidates.
    """
    n = len(codes)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return DedupePlan(keep=keep, code=np.zeros(0, np.uint8), exact=0, by_id=0, customers=0)
    plan = decide_candidates(
        keep, cand, cand_hash, contract, codes[cand], order_by=order_by, n_missing=n_missing
    )
    present = np.bincount(codes[keep], minlength=int(codes.max()) + 1) > 0
    if null_code >= 0:
        present[null_code] = False
    plan.customers = int(present.sum())
    return plan


def decide_candidates(
    keep: np.ndarray,
    cand: np.ndarray,
    cand_hash: np.ndarray,
    contract: Contract,
    cand_codes: np.ndarray,
    order_by: np.ndarray | None = None,
    n_missing: np.ndarray | None = None,
) -> DedupePlan:
    """The plan of :func:`dedupe_candidates` from the candidates alone (``customers`` 0:
    the caller counts them).

    ``keep``: per row, whether it may be kept (rows outside ``cand`` are kept as they
    are), cleared in place for the duplicates; ``cand_codes``: the candidates' id codes
    (equal ids, equal codes). Exact duplicates (same ``cand_hash``) keep their first
    occurrence; in a customer table the repeated ids left keep one row each (see
    :func:`dedupe_plan`).
    """
    code = np.zeros(len(keep), dtype=np.uint8)
    exact_c = pd.Series(cand_hash, dtype=np.uint64).duplicated(keep="first").to_numpy()
    exact_pos = cand[exact_c]
    keep[exact_pos] = False
    code[exact_pos] = 1
    by_id = 0
    if not contract.is_transactions:
        sub = np.flatnonzero(~exact_c)  # candidates left after exact duplicates
        ids = cand_codes[sub]
        repeated = pd.Series(ids).duplicated(keep=False).to_numpy()
        sub, ids = sub[repeated], ids[repeated]  # ids still repeated need a decision
        if sub.size:
            frame = pd.DataFrame({"id": ids, "pos": cand[sub]})
            if contract.dedupe == DedupeRule.MOST_COMPLETE and n_missing is not None:
                frame["k"] = -n_missing[sub]
            elif order_by is not None:
                frame["k"] = order_by[sub]
            else:
                frame["k"] = 0
            frame = frame.sort_values(["k", "pos"], kind="stable", na_position="first")
            drop_pos = frame["pos"].to_numpy()[frame["id"].duplicated(keep="last").to_numpy()]
            keep[drop_pos] = False
            code[drop_pos] = 2
            by_id = len(drop_pos)
    return DedupePlan(keep=keep, code=code, exact=int(exact_c.sum()), by_id=by_id, customers=0)


# --------------------------------------------------------------------------------------
# statistics, imputation, winsorising


@dataclass
class ColumnStats:
    """What cleaning needs to know about one column over the kept rows."""

    name: str
    spec: ColumnSpec
    moments: Moments = field(default_factory=Moments)
    counts: Counts = field(default_factory=Counts)
    missing: int = 0
    fill: Any = None
    lower: float | None = None
    upper: float | None = None

    @property
    def numeric(self) -> bool:
        return self.spec.type in NUMERIC_TYPES

    @property
    def will_clip(self) -> bool:
        lo, hi = self.lower, self.upper
        m = self.moments
        return m.n > 0 and ((lo is not None and m.min < lo) or (hi is not None and m.max > hi))

    def without_copies(self, gone: ColumnStats) -> ColumnStats:
        """These statistics without the rows folded into ``gone``, each of them a copy
        of a row that stays (removed exact duplicates)."""
        counts = Counter(self.counts.counts)
        counts.subtract(gone.counts.counts)
        sums = {k: v - gone.counts.sums.get(k, 0.0) for k, v in self.counts.sums.items()}
        return ColumnStats(
            name=self.name,
            spec=self.spec,
            moments=self.moments.without_copies(gone.moments),
            counts=Counts(counts=+counts, sums=sums),
            missing=self.missing - gone.missing,
        )

    @property
    def flags_missing(self) -> bool:
        return self.missing > 0 and self.spec.missing_policy != MissingPolicy.KEEP

    @property
    def imputes(self) -> bool:
        return self.spec.missing_policy in (
            MissingPolicy.MEDIAN,
            MissingPolicy.MODE,
            MissingPolicy.CONSTANT,
        )


def clean_columns(contract: Contract, present: list[str]) -> list[ColumnSpec]:
    """Contract columns present in the file that reach the clean output (no personal)."""
    return [
        c
        for c in contract.columns
        if c.name in present and c.role != Role.PERSONAL and c.type != ColumnType.STRING
    ]


def new_stats(specs: list[ColumnSpec]) -> dict[str, ColumnStats]:
    return {s.name: ColumnStats(name=s.name, spec=s) for s in specs}


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-mixed 64-bit hash of integers (no salt)."""
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass
class RowSample:
    """Bounded deterministic sample of numeric rows: the ``k`` smallest hashes of ``_row``.

    Same idea as :class:`custseg.stats.BottomKSample` (mergeable, independent of
    chunking; exact when the file has at most ``k`` rows) but keyed by the integer row
    number with a numpy hash, which is ~10x cheaper per row than hashing text keys.
    """

    k: int
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, frame: pd.DataFrame | dict[str, np.ndarray], rows: np.ndarray) -> None:
        new = mix64(np.asarray(rows))
        cols_in: dict[str, np.ndarray] = (
            {c: frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in frame.columns}
            if isinstance(frame, pd.DataFrame)
            else {c: np.asarray(v, dtype="float64") for c, v in frame.items()}
        )
        if self.keys.size >= self.k:  # full: only keys below the current largest can enter
            take = np.flatnonzero(new < self.keys.max())
            new = new[take]
            cols_in = {c: v[take] for c, v in cols_in.items()}
        keys = np.concatenate([self.keys, new])
        cols = {c: np.concatenate([self.values.get(c, np.empty(0)), v]) for c, v in cols_in.items()}
        if keys.size > self.k:
            idx = np.argpartition(keys, self.k - 1)[: self.k]
            keys = keys[idx]
            cols = {c: v[idx] for c, v in cols.items()}
        self.keys, self.values = keys, cols

    def column(self, name: str) -> np.ndarray:
        return self.values.get(name, np.empty(0))

    def without(self, rows: np.ndarray, k: int) -> RowSample | None:
        """The sample of at most ``k`` rows that folding every row but ``rows`` would give;
        None when this sample cannot tell (it was full, and the rows removed from it leave
        fewer than ``k``: the rows that would replace them were not kept)."""
        gone = np.isin(self.keys, mix64(np.asarray(rows)))
        keys = self.keys[~gone]
        cols = {c: v[~gone] for c, v in self.values.items()}
        if self.keys.size >= self.k and keys.size < k:
            return None
        if keys.size > k:
            idx = np.argpartition(keys, k - 1)[:k]
            keys, cols = keys[idx], {c: v[idx] for c, v in cols.items()}
        return RowSample(k=k, keys=keys, values=cols)

    def merge(self, other: RowSample) -> RowSample:
        """The sample of both row sets (keys are hashes of the upload's row numbers, so
        the ranges of one upload merge into the sample of the whole upload)."""
        names = sorted(set(self.values) | set(other.values))
        keys = np.concatenate([self.keys, other.keys])

        def col(s: RowSample, c: str) -> np.ndarray:
            return s.values.get(c, np.full(s.keys.size, np.nan))

        cols = {c: np.concatenate([col(self, c), col(other, c)]) for c in names}
        if keys.size > self.k:
            idx = np.argpartition(keys, self.k - 1)[: self.k]
            keys, cols = keys[idx], {c: v[idx] for c, v in cols.items()}
        return RowSample(k=self.k, keys=keys, values=cols)


def _update_stats_arrow(
    stats: dict[str, ColumnStats], table: pa.Table, sample: RowSample, rows: np.ndarray
) -> None:
    names = set(table.column_names)
    num: dict[str, np.ndarray] = {}
    for name, st in stats.items():
        if name not in names:
            continue
        col = table.column(name)
        if st.numeric:
            values = np.asarray(col.to_numpy(), dtype="float64")  # null -> NaN
            st.missing += int(np.isnan(values).sum())
            with np.errstate(over="ignore", invalid="ignore"):  # 1e308 sums overflow
                st.moments.update(values)
            num[name] = values
            continue
        st.missing += col.null_count
        if st.spec.type in (ColumnType.CATEGORY, ColumnType.BOOLEAN) and col.null_count < len(col):
            counts = pc.value_counts(col.drop_null())
            keys = counts.field("values").to_pylist()
            for key, n in zip(keys, counts.field("counts").to_pylist(), strict=True):
                st.counts.counts[str(key)] += int(n)
    if num:
        sample.update(num, rows)


def update_stats(
    stats: dict[str, ColumnStats],
    frame: pd.DataFrame | pa.Table,
    sample: RowSample,
    rows: pd.Series | np.ndarray,
) -> None:
    """Fold one chunk of kept, typed rows into the running statistics.

    ``frame``: pandas (NaN / NA missing) or Arrow (null missing); ``rows``: row numbers.
    """
    if isinstance(frame, pa.Table):
        _update_stats_arrow(stats, frame, sample, np.asarray(rows))
        return
    num = [name for name, st in stats.items() if st.numeric and name in frame]
    for name, st in stats.items():
        if name not in frame:
            continue
        col = frame[name]
        st.missing += int(col.isna().sum())
        if st.numeric:
            with np.errstate(over="ignore", invalid="ignore"):
                st.moments.update(col.to_numpy(dtype="float64", na_value=np.nan))
        elif st.spec.type in (ColumnType.CATEGORY, ColumnType.BOOLEAN):
            st.counts.update(col.dropna().astype("str"))
    if num:
        sample.update(frame[num], np.asarray(rows))


def finalise_stats(stats: dict[str, ColumnStats], sample: RowSample) -> None:
    """Set imputation values and outlier bounds from the sample / counts."""
    for name, st in stats.items():
        spec = st.spec
        values = sample.column(name) if st.numeric else np.array([], dtype="float64")
        values = values[np.isfinite(values)]
        policy = spec.missing_policy
        if policy == MissingPolicy.MEDIAN and st.numeric and values.size:
            st.fill = float(np.median(values))
        elif policy in (MissingPolicy.MODE, MissingPolicy.MEDIAN):
            if st.numeric and values.size:
                uniq, cnt = np.unique(values, return_counts=True)
                st.fill = float(uniq[np.argmax(cnt)])
            elif st.counts.total:
                top = st.counts.top(1)[0][0]
                st.fill = (top == "True") if spec.type == ColumnType.BOOLEAN else top
        elif policy == MissingPolicy.CONSTANT:
            st.fill = spec.fill_value
        method = spec.outliers.method
        if st.numeric and values.size and method != OutlierMethod.NONE:
            if method == OutlierMethod.IQR:
                q1, q3 = np.quantile(values, [0.25, 0.75])
                if q3 <= q1:  # no spread: every value beyond the middle half would move
                    continue
                k = spec.outliers.iqr_factor
                with np.errstate(over="ignore", invalid="ignore"):  # may overflow to ±inf
                    st.lower, st.upper = float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))
            else:
                # non-interpolating quantiles: a small file keeps its own min and max
                lo = np.quantile(values, spec.outliers.lower_quantile, method="lower")
                hi = np.quantile(values, spec.outliers.upper_quantile, method="higher")
                st.lower, st.upper = float(lo), float(hi)


def clean_table(
    table: pa.Table, stats: dict[str, ColumnStats]
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Arrow core of :func:`apply_cleaning` (missing values are nulls, or NaN in floats)."""
    imputed: dict[str, int] = {}
    clipped: dict[str, int] = {}
    out = table
    for name, st in stats.items():
        if name not in out.column_names:
            continue
        idx = out.column_names.index(name)
        col = out.column(idx)
        if st.flags_missing:
            is_float = pa.types.is_floating(col.type)
            miss = pc.is_null(col, nan_is_null=True) if is_float else pc.is_null(col)
            n_miss = int(pc.sum(miss).as_py() or 0)
            out = out.append_column(f"{name}__missing", miss)
            if st.imputes and st.fill is not None and n_miss:
                fill = pa.scalar(st.fill).cast(col.type)
                col = pc.if_else(miss, fill, col)
                out = out.set_column(idx, name, col)
                imputed[name] = n_miss
        if st.will_clip:
            arr = np.asarray(col.to_numpy(), dtype="float64")  # null -> NaN
            lo = -np.inf if st.lower is None else st.lower
            hi = np.inf if st.upper is None else st.upper
            with np.errstate(invalid="ignore"):
                flag = (arr < lo) | (arr > hi)
            # flagged, never changed: the clean data (and every exported value built from
            # it) keeps the true value; the model caps its own inputs (standardised values
            # clipped, see custseg.model.training.clip_z)
            out = out.append_column(f"{name}__clipped", pa.array(flag))
            clipped[name] = int(flag.sum())
    return out, imputed, clipped


def apply_cleaning(
    frame: pd.DataFrame, stats: dict[str, ColumnStats]
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """Impute one chunk; flag missing values and outliers (``__missing`` / ``__clipped``).

    Flag columns are added for every column whose statistics say it has any missing
    value (``flags_missing``) or any value outside its bounds (``will_clip``), so every
    chunk gets the same schema. Returns the frame, imputed counts and clipped counts.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    out, imputed, clipped = clean_table(table, stats)
    result = out.to_pandas()
    result.index = frame.index
    return result, imputed, clipped

"""Per-customer features from a clean dataset: one function for training and scoring.

Input is the CLEAN frame written by ingest (canonical contract column names; category
columns lower-case strings, booleans ``bool``, numbers ``float64``, dates
``datetime64[ns]``; helper columns ``_row`` and ``<name>__missing`` / ``<name>__clipped``
are ignored).

Transactions (``contract.grain == "transaction"``), per customer, as of an explicit date
``as_of`` (only events strictly before ``as_of`` 00:00 count; later events are ignored):

============================  ===============================================================
feature                       definition (unit)
============================  ===============================================================
``recency_days``              days from the last purchase's date to ``as_of`` (>= 1 when
                              ``as_of`` is the default "day after the last event")
``frequency``                 distinct orders: invoices with at least one purchase row; a
                              cancellation / return invoice is not an order. Without an
                              ``invoice_id`` column, one order = one (customer, timestamp).
``monetary``                  net spend: purchases minus returns (currency; may be < 0)
``avg_order_value``           gross purchase amount / ``frequency`` (currency per order)
``tenure_days``               days from the first purchase's date to ``as_of``
``mean_interval_days``        (last - first purchase, days) / (orders - 1). A customer with
                              one order has no interval yet: we use ``tenure_days`` (the time
                              they have gone without a second order, a lower bound of their
                              interval), so one-time buyers look "occasional", not missing.
``return_share``              returned amount / gross purchase amount, in [0, 1] (1 when a
                              customer only returned within the window)
============================  ===============================================================

A customer with only returns in the window has ``frequency`` 0, ``avg_order_value`` 0 and
recency/tenure measured from their returns. Contract ``category`` columns of a transaction
table become per-customer categorical features (the customer's most frequent value);
``attribute`` columns (e.g. country) go to :attr:`Features.extras` the same way.

Customer tables (one row per customer): the contract's ``numeric`` columns (numbers;
booleans as 0/1; dates as days before ``as_of``, named ``days_since_<name>``) and
``category`` columns present in the frame. ``outcome`` columns never become features; they
go to ``extras`` as 0/1 floats (named by contract column), attributes as they are (date
attributes as ``days_since_<name>`` floats, e.g. ``days_since_last_purchase_date``, which
the lifecycle labels can use).

The value measure (:attr:`Features.value`) is ``monetary`` for transactions, else the first
of ``contract.value_columns`` present.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role

MISSING_CATEGORY = "(missing)"
"""The category used for a missing categorical value (in training and scoring)."""

TRANSACTION_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "mean_interval_days",
    "return_share",
)
"""Numeric features computed from transactions, in this order."""

MONEY_FEATURES: tuple[str, ...] = ("monetary", "avg_order_value", "return_share")
"""The transaction features an event log without amounts cannot have (M unavailable)."""


def has_amounts(contract: Contract) -> bool:
    """Whether a transaction contract's log has amounts (else: no M features)."""
    return contract.transactions is None or contract.transactions.amounts


_NUMBER_TYPES = {ColumnType.INTEGER, ColumnType.FLOAT}
_DATE_TYPES = {ColumnType.DATE, ColumnType.DATETIME}


@dataclass
class FeatureSchema:
    """The feature columns a model was trained on (stored in the artifact metadata).

    ``categories`` lists, per categorical feature, the values seen in training (most
    frequent first); ``kind`` is ``"transactions"`` or ``"customers"``.
    """

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    kind: str = "customers"

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "dtypes": {
                **{c: "float64" for c in self.numeric},
                **{c: "string" for c in self.categorical},
            },
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSchema:
        return cls(
            numeric=list(d.get("numeric", [])),
            categorical=list(d.get("categorical", [])),
            categories={k: list(v) for k, v in d.get("categories", {}).items()},
            kind=str(d.get("kind", "customers")),
        )


@dataclass
class CategoryCodes:
    """One categorical column as integer codes into its distinct values.

    ``values[codes[i]]`` is the value of row ``i``; ``values`` are distinct, in no
    particular order, and may hold values no row uses. A compact twin of a text column
    that lets consumers count, one-hot encode or label it without touching the strings.
    """

    codes: np.ndarray  # intp, one per row, each a position in ``values``
    values: list[str]

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def take(self, rows: np.ndarray) -> CategoryCodes:
        """The codes of ``rows`` (positions or a boolean mask), same values."""
        return CategoryCodes(self.codes[rows], self.values)

    @classmethod
    def from_values(
        cls, values: pd.Series | pd.Index | np.ndarray, missing: str = "(missing)"
    ) -> CategoryCodes:
        """Codes of a column's values as text; a missing value counts as ``missing``."""
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        words = [str(u) for u in uniques]
        codes = np.asarray(codes, dtype=np.intp)
        if (codes < 0).any():
            if missing in words:
                fill = words.index(missing)
            else:
                fill = len(words)
                words.append(missing)
            codes = np.where(codes < 0, fill, codes)
        return cls(codes, words)


@dataclass
class Features:
    """Per-customer features.

    ``frame``: index ``customer_id`` (string, unique); numeric columns (float64) then
    categorical columns (string, no missing values: :data:`MISSING_CATEGORY`).
    ``value``: the customer's value measure (index ``customer_id``) or ``None``.
    ``extras``: per customer, non-feature columns for profiles (attributes as strings,
    outcomes as 0/1 floats), index ``customer_id``.
    ``codes``: optionally, per categorical column of ``frame``, the same values as
    :class:`CategoryCodes` (:func:`build_features_arrow` fills it; consumers use it when
    present and fall back to the text column otherwise). It must agree with ``frame``.
    ``history``: for an order log's features computed on DuckDB
    (:mod:`custseg.features.engine`), per customer (same index) the inputs of the
    repeat-purchase predictions, :data:`custseg.features.sql.HISTORY_COLUMNS` (missing for a
    customer without purchases); ``None`` otherwise.
    """

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    as_of: dt.date
    value: pd.Series | None
    extras: pd.DataFrame
    codes: dict[str, CategoryCodes] = field(default_factory=dict)
    source_kind: str | None = None  # "combined": joined from a customer table and an order log
    history: pd.DataFrame | None = None  # an order log's repeat-purchase history (see above)

    @property
    def kind(self) -> str:
        """``source_kind`` when set; else ``"transactions"`` if the frame holds the
        transaction features, else ``"customers"``."""
        if self.source_kind:
            return self.source_kind
        return "transactions" if set(TRANSACTION_FEATURES) <= set(self.numeric) else "customers"

    def __len__(self) -> int:
        return len(self.frame)

    def schema(self) -> FeatureSchema:
        """The schema of these features (categories: values seen, most frequent first)."""
        cats: dict[str, list[str]] = {}
        for col in self.categorical:
            counts = self.frame[col].astype("string").value_counts(sort=False)
            ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
            cats[col] = [str(k) for k, _ in ordered]
        return FeatureSchema(list(self.numeric), list(self.categorical), cats, self.kind)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def _feature_columns(clean: pd.DataFrame) -> list[str]:
    """Columns of ``clean`` that may carry data (not helper or flag columns)."""
    return [
        c
        for c in clean.columns
        if not c.startswith("_") and not c.endswith("__missing") and not c.endswith("__clipped")
    ]


def default_as_of(clean: pd.DataFrame, contract: Contract) -> dt.date:
    """The as-of date when none is given (see :func:`default_as_of_reason`)."""
    return default_as_of_reason(clean, contract)[0]


def default_as_of_reason(clean: pd.DataFrame, contract: Contract) -> tuple[dt.date, str]:
    """The as-of date when none is given, and why it is that date.

    Transactions: the day after the last event (so every event counts and the most recent
    buyer has ``recency_days == 1``). The clean data holds plausible dates only (the
    ingest rejects events after the upload time or before the date floor), so no
    implausible date can move it. Customer tables: today (UTC).
    """
    if contract.is_transactions:
        times = _event_times(clean, contract)
        last = times.max() if len(times) else pd.NaT
        if pd.notna(last):
            day = _as_date(last)
            return day + dt.timedelta(days=1), (
                f"the day after the last event ({day.isoformat()}); events dated after "
                "their upload or before the date floor were rejected at ingest"
            )
        return dt.datetime.now(dt.UTC).date(), "today (UTC): no event has a date"
    return dt.datetime.now(dt.UTC).date(), "today (UTC): a customer table has no event dates"


def _role_column(clean: pd.DataFrame, contract: Contract, role: Role, fallback: str) -> str | None:
    for spec in contract.by_role(role):
        if spec.name in clean.columns:
            return spec.name
    return fallback if fallback in clean.columns else None


def _event_times(clean: pd.DataFrame, contract: Contract) -> pd.Series:
    col = _role_column(clean, contract, Role.EVENT_TIME, "event_time")
    if col is None:
        raise ValueError("a transactions table needs an event_time column")
    times = clean[col]
    if not pd.api.types.is_datetime64_any_dtype(times):
        times = pd.to_datetime(times, errors="coerce")
    return times


def _id_series(clean: pd.DataFrame, contract: Contract) -> pd.Series:
    col = contract.id_column.name
    if col not in clean.columns:
        col = "customer_id"
    if col not in clean.columns:
        raise ValueError("the clean frame has no customer_id column")
    return clean[col].astype("string")


def _mode_per_customer(ids: pd.Series, values: pd.Series) -> pd.Series:
    """Most frequent non-missing value per customer (ties: alphabetically first)."""
    df = pd.DataFrame({"id": ids.to_numpy(), "v": values.astype("string").to_numpy()})
    df = df.dropna(subset=["v"])
    if df.empty:
        return pd.Series(dtype="string")
    counts = df.groupby(["id", "v"], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["id", "n", "v"], ascending=[True, False, True], kind="stable")
    first = counts.drop_duplicates("id", keep="first").set_index("id")["v"]
    return first.astype("string")


def _outcome_values(spec: ColumnSpec, values: pd.Series) -> pd.Series:
    """An outcome column as 0/1 floats (NaN when missing)."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    if spec.type == ColumnType.BOOLEAN:  # cleaned booleans (None where missing)
        mapped = values.map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0})
        return pd.to_numeric(mapped, errors="coerce").astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip().str.lower()
    positive = (spec.positive or "").strip().lower()
    trues = {positive} if positive else {t.lower() for t in spec.true_values}
    falses = {f.lower() for f in spec.false_values}
    out = pd.Series(np.nan, index=values.index, dtype="float64")
    out[text.isin(list(trues)).fillna(False).to_numpy(dtype=bool)] = 1.0
    if positive:
        known = text.notna().to_numpy(dtype=bool)
        out[known & (out.isna().to_numpy())] = 0.0
    else:
        out[text.isin(list(falses)).fillna(False).to_numpy(dtype=bool)] = 0.0
    return out


def _transaction_features(
    clean: pd.DataFrame, contract: Contract, as_of: dt.date
) -> tuple[pd.DataFrame, list[str], list[str], pd.DataFrame]:
    ids = _id_series(clean, contract)
    times = _event_times(clean, contract)
    cutoff = pd.Timestamp(as_of)
    keep = (times < cutoff).fillna(False).to_numpy(dtype=bool) & ids.notna().to_numpy(dtype=bool)

    amount_col = _role_column(clean, contract, Role.AMOUNT, "amount")
    if amount_col is not None:
        amount = clean[amount_col].astype("float64")
    else:
        qty_col = _role_column(clean, contract, Role.QUANTITY, "quantity")
        price_col = _role_column(clean, contract, Role.UNIT_PRICE, "unit_price")
        if qty_col is None or price_col is None:
            amount = pd.Series(np.nan, index=clean.index, dtype="float64")
        else:
            amount = clean[qty_col].astype("float64") * clean[price_col].astype("float64")
    if "is_return" in clean.columns:
        is_return = clean["is_return"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        is_return = is_return | (amount.fillna(0.0).to_numpy() < 0)
    else:
        is_return = amount.fillna(0.0).to_numpy() < 0
    invoice_col = _role_column(clean, contract, Role.INVOICE_ID, "invoice_id")

    df = pd.DataFrame(
        {
            "id": ids.to_numpy()[keep],
            "t": times.to_numpy()[keep],
            "amount": amount.fillna(0.0).to_numpy(dtype="float64")[keep],
            "ret": is_return[keep],
        }
    )
    if invoice_col is not None:
        df["order"] = clean[invoice_col].astype("string").to_numpy()[keep]
    else:
        df["order"] = df["t"].astype("int64").astype("string")
    df["day"] = df["t"].to_numpy().astype("datetime64[D]")
    purchase = ~df["ret"].to_numpy()
    df["gross"] = np.where(purchase, np.maximum(df["amount"].to_numpy(), 0.0), 0.0)
    df["returned"] = np.where(~purchase, np.abs(df["amount"].to_numpy()), 0.0)

    grouped = df.groupby("id", sort=True)
    gross = grouped["gross"].sum()
    returned = grouped["returned"].sum()
    first_any = grouped["day"].min()
    last_any = grouped["day"].max()
    buys = df.loc[purchase]
    bgroup = buys.groupby("id", sort=True)
    frequency = bgroup["order"].nunique().reindex(gross.index, fill_value=0).astype("float64")
    first_buy = bgroup["day"].min().reindex(gross.index).fillna(first_any)
    last_buy = bgroup["day"].max().reindex(gross.index).fillna(last_any)

    as_of_day = np.datetime64(as_of, "D")
    recency = (as_of_day - last_buy.to_numpy().astype("datetime64[D]")).astype("float64")
    tenure = (as_of_day - first_buy.to_numpy().astype("datetime64[D]")).astype("float64")
    span = tenure - recency
    freq = frequency.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        interval = np.where(freq >= 2, span / np.maximum(freq - 1, 1), tenure)
        aov = np.where(freq > 0, gross.to_numpy() / np.maximum(freq, 1), 0.0)
        gross_v = gross.to_numpy()
        ret_v = returned.to_numpy()
        share = np.where(gross_v > 0, ret_v / np.where(gross_v > 0, gross_v, 1.0), 0.0)
        share = np.where((gross_v <= 0) & (ret_v > 0), 1.0, share)
    share = np.clip(share, 0.0, 1.0)

    index = pd.Index(gross.index.astype("string"), name="customer_id")
    frame = pd.DataFrame(
        {
            "recency_days": recency,
            "frequency": freq,
            "monetary": gross_v - ret_v,
            "avg_order_value": aov,
            "tenure_days": tenure,
            "mean_interval_days": interval,
            "return_share": share,
        },
        index=index,
    ).astype("float64")

    categorical: list[str] = []
    kept = clean.loc[keep]
    kept_ids = ids[keep]
    for spec in contract.by_role(Role.CATEGORY):
        if spec.name in kept.columns and spec.name not in frame.columns:
            mode = _mode_per_customer(kept_ids, kept[spec.name])
            frame[spec.name] = mode.reindex(index).fillna(MISSING_CATEGORY).astype("string")
            categorical.append(spec.name)
    extras = pd.DataFrame(index=index)
    for spec in contract.by_role(Role.ATTRIBUTE):
        if spec.name in kept.columns:
            extras[spec.name] = _mode_per_customer(kept_ids, kept[spec.name]).reindex(index)
    for spec in contract.by_role(Role.OUTCOME):
        if spec.name in kept.columns:
            values = _outcome_values(spec, kept[spec.name])
            per = pd.Series(values.to_numpy(), index=kept_ids.to_numpy()).groupby(level=0).max()
            extras[spec.name] = per.reindex(index).astype("float64")
    numeric = list(TRANSACTION_FEATURES)
    if not has_amounts(contract) or not bool(amount.notna().any()):  # R and F only
        frame = frame.drop(columns=list(MONEY_FEATURES))
        numeric = [c for c in numeric if c not in MONEY_FEATURES]
    return frame, numeric, categorical, extras


def _customer_features(
    clean: pd.DataFrame, contract: Contract, as_of: dt.date
) -> tuple[pd.DataFrame, list[str], list[str], pd.DataFrame, pd.Series | None]:
    ids = _id_series(clean, contract)
    # ingest dedupes; keep the last row per customer all the same (one row per customer),
    # and put the rows in customer_id order here, once (no later sort or reindex)
    order = _sorted_unique_positions(ids)
    rows = clean.take(order)
    rows.index = pd.Index(ids.take(order).to_numpy(), dtype="string", name="customer_id")
    present = set(_feature_columns(rows))
    index = rows.index

    numeric: dict[str, pd.Series] = {}
    categorical: dict[str, pd.Series] = {}
    as_of_ts = pd.Timestamp(as_of)
    for spec in contract.columns:
        if spec.name not in present or spec.role not in (Role.NUMERIC, Role.CATEGORY):
            continue
        name, values, is_number = _feature_column(spec, rows[spec.name], as_of_ts)
        (numeric if is_number else categorical)[name] = values
    numeric = _grouped(numeric, contract)
    frame = pd.DataFrame({**numeric, **categorical}, index=index)
    extras = pd.DataFrame(index=index)
    for spec in contract.by_role(Role.ATTRIBUTE):
        if spec.name in present:
            name, values = _attribute_column(spec, rows[spec.name], as_of_ts)
            extras[name] = values
    for spec in contract.by_role(Role.OUTCOME):
        if spec.name in present:
            extras[spec.name] = _outcome_values(spec, rows[spec.name])
    value = _customer_value(frame, contract)
    if value is None:
        value = _customer_value(rows, contract)
    return frame, list(numeric), list(categorical), extras, value


def _days_since(values: pd.Series, as_of_ts: pd.Timestamp) -> pd.Series:
    """Whole days from each date to ``as_of`` (float64, NaN when unknown)."""
    times = pd.to_datetime(values, errors="coerce")
    days = (as_of_ts - times).dt.total_seconds() / 86400.0
    return (days // 1.0).astype("float64")


def _category_text(values: pd.Series) -> pd.Series:
    """A category column as trimmed lower-case text; empty or missing: MISSING_CATEGORY."""
    cat = values.astype("string").str.strip().str.lower()
    cat = cat.mask(cat == "", pd.NA)
    return cat.fillna(MISSING_CATEGORY).astype("string")


def _feature_column(
    spec: ColumnSpec, values: pd.Series, as_of_ts: pd.Timestamp
) -> tuple[str, pd.Series, bool]:
    """(feature name, feature values, numeric?) of one numeric or category column of a
    customer table (booleans as 0/1, dates as days before ``as_of``)."""
    if spec.type == ColumnType.BOOLEAN or pd.api.types.is_bool_dtype(values):
        return spec.name, values.astype("boolean").astype("Float64").astype("float64"), True
    if spec.type in _DATE_TYPES:
        return f"days_since_{spec.name}", _days_since(values, as_of_ts), True
    if spec.role == Role.NUMERIC or spec.type in _NUMBER_TYPES:
        return spec.name, pd.to_numeric(values, errors="coerce").astype("float64"), True
    return spec.name, _category_text(values), False


def _attribute_column(
    spec: ColumnSpec, values: pd.Series, as_of_ts: pd.Timestamp
) -> tuple[str, pd.Series]:
    """(extras name, values) of an attribute column (dates as days before ``as_of``)."""
    if spec.type in _DATE_TYPES:
        return f"days_since_{spec.name}", _days_since(values, as_of_ts)
    return spec.name, values


def _sorted_unique_positions(ids: pd.Series | pa.Array) -> np.ndarray:
    """Row positions of ``ids`` in ascending id order, without missing ids and with only
    the LAST row of a repeated id (what ``sort_index`` after ``duplicated(keep="last")``
    gives), computed in Arrow (a stable sort; repeats are then neighbours)."""
    if isinstance(ids, pa.Array):
        arr = ids if ids.type == pa.string() else ids.cast(pa.string())
    else:
        arr = pa.array(ids, type=pa.string(), from_pandas=True)
    return _sorted_unique(arr)[0]


def _sorted_unique(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(:func:`_sorted_unique_positions`, the ids at those positions) of a string array."""
    valid = len(arr) - arr.null_count
    order = pc.array_sort_indices(arr, null_placement="at_end").to_numpy()[:valid]
    ordered = arr.take(pa.array(order))
    if valid > 1:
        repeats = pc.equal(ordered[:-1], ordered[1:]).to_numpy(zero_copy_only=False)
        if repeats.any():  # in a stable sort the last row of a repeated id comes last
            last = np.append(~repeats, True)
            order, ordered = order[last], ordered.filter(pa.array(last))
    return np.asarray(order, dtype="int64"), ordered


def _customer_value(clean_frame: pd.DataFrame, contract: Contract) -> pd.Series | None:
    """The first of ``contract.value_columns`` present (a group name means its total)."""
    for listed in contract.value_columns:
        for name in (listed, f"{listed}_total"):
            if name in clean_frame.columns and pd.api.types.is_numeric_dtype(clean_frame[name]):
                return clean_frame[name].astype("float64").rename(name)
    return None


def _grouped(numeric: dict[str, Any], contract: Contract) -> dict[str, Any]:
    """Numeric features with each contract ``group`` of two or more present columns
    replaced by ``<group>_total`` (their sum; NaN when all are missing) and
    ``<name>_share`` per column (its part of the total; NaN when the total is not > 0).

    Twenty correlated spend columns then weigh as one total plus shares on a 0..1 scale
    in the clustering, instead of twenty standardised numbers."""
    groups: dict[str, list[str]] = {}
    for spec in contract.columns:
        if spec.group and spec.name in numeric:
            groups.setdefault(spec.group, []).append(spec.name)
    out: dict[str, Any] = {}
    done: set[str] = set()
    for name, values in numeric.items():
        group = next((g for g, cols in groups.items() if name in cols and len(cols) > 1), None)
        if group is None:
            out[name] = values
            continue
        if group in done:
            continue
        done.add(group)
        members = groups[group]
        matrix = np.column_stack([np.asarray(numeric[c], dtype="float64") for c in members])
        known = np.isfinite(matrix).any(axis=1)
        total = np.where(known, np.nansum(matrix, axis=1), np.nan)
        out[f"{group}_total"] = _like(values, total)
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, col in enumerate(members):
                share = np.where(total > 0, matrix[:, j] / total, np.nan)
                out[f"{col}_share"] = _like(values, share)
    return out


def _like(template: Any, values: np.ndarray) -> Any:
    """``values`` as a Series with ``template``'s index when it is one, else as numpy."""
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, dtype="float64")
    return values


def build_features(
    clean: pd.DataFrame,
    contract: Contract,
    as_of: dt.date | None = None,
    schema: FeatureSchema | None = None,
) -> Features:
    """Per-customer features of a clean frame, as of ``as_of`` (default: :func:`default_as_of`).

    With ``schema`` (from a trained model) the frame has exactly the schema's columns in its
    order: a numeric feature the data lacks is NaN (the model's imputer fills it), a missing
    categorical is :data:`MISSING_CATEGORY`; columns the schema does not know are dropped.
    Returns :class:`Features` with one row per customer (index ``customer_id``, sorted).
    """
    as_of_date = _as_date(as_of) if as_of is not None else default_as_of(clean, contract)
    if contract.is_transactions:
        frame, numeric, categorical, extras = _transaction_features(clean, contract, as_of_date)
        frame = frame.sort_index()
        extras = extras.reindex(frame.index)
        value: pd.Series | None = (
            frame["monetary"].rename("monetary") if "monetary" in frame.columns else None
        )
    else:
        # already in customer_id order, one row per customer, all aligned
        frame, numeric, categorical, extras, value = _customer_features(clean, contract, as_of_date)
    return _finish(frame, numeric, categorical, extras, value, as_of_date, schema, {})


def _finish(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    extras: pd.DataFrame,
    value: pd.Series | None,
    as_of_date: dt.date,
    schema: FeatureSchema | None,
    codes: dict[str, CategoryCodes],
) -> Features:
    """The common end of :func:`build_features` and :func:`build_features_arrow`."""
    if value is not None:
        value = value.astype("float64")
    if schema is not None:
        if not is_conformed(frame, schema):
            frame = conform(frame, schema)
        numeric, categorical = list(schema.numeric), list(schema.categorical)
    elif list(frame.columns) != [*numeric, *categorical]:
        frame = frame[[*numeric, *categorical]]
    if not (isinstance(frame.index.dtype, pd.StringDtype) and frame.index.name == "customer_id"):
        frame.index = pd.Index(frame.index.astype("string"), name="customer_id")
    extras.index = frame.index
    if value is not None:
        value.index = frame.index
    if codes:
        kept: dict[str, CategoryCodes] = {}
        for col in categorical:  # a schema column the data lacks is all MISSING_CATEGORY
            kept[col] = codes[col] if col in codes else CategoryCodes.from_values(frame[col])
        codes = kept
    return Features(
        frame=frame,
        numeric=numeric,
        categorical=categorical,
        as_of=as_of_date,
        value=value,
        extras=extras,
        codes=codes,
    )


def with_schema(features: Features, schema: FeatureSchema | None) -> Features:
    """``features`` with exactly ``schema``'s columns (as :func:`build_features` with
    ``schema`` gives them); ``None``: as they are. Codes are dropped; the history is kept."""
    finished = _finish(
        features.frame,
        list(features.numeric),
        list(features.categorical),
        features.extras,
        features.value,
        features.as_of,
        schema,
        {},
    )
    finished.history = features.history
    return finished


def _arrow_column(data: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    """One column as a single array, dictionaries decoded (pandas would see Categoricals)."""
    col = data.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col


def _arrow_numbers(
    spec: ColumnSpec, col: pa.Array | pa.ChunkedArray, order: np.ndarray
) -> np.ndarray | None:
    """What :func:`_feature_column` gives for a number or boolean column, as float64 numpy,
    rows taken in ``order`` (``None``: a type this fast path does not handle; use pandas)."""
    t = col.type
    if spec.type == ColumnType.BOOLEAN or pa.types.is_boolean(t):
        if pa.types.is_boolean(t) and (spec.type == ColumnType.BOOLEAN or col.null_count == 0):
            values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return np.asarray(values, dtype="float64")[order]
        return None
    if spec.type in _DATE_TYPES or not (spec.role == Role.NUMERIC or spec.type in _NUMBER_TYPES):
        return None
    if t in (pa.float64(), pa.float32()):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype="float64")[order]
    if pa.types.is_integer(t) and col.null_count == 0:
        return np.asarray(col.to_numpy()[order], dtype="float64")
    return None


def _arrow_category(
    spec: ColumnSpec, col: pa.Array | pa.ChunkedArray, order: np.ndarray
) -> tuple[pd.api.extensions.ExtensionArray, CategoryCodes] | None:
    """What :func:`_feature_column` gives for a category column (text and codes), rows
    taken in ``order``, normalising each distinct value once (``None``: not text). The
    chunks of a chunked column may each have their own dictionary."""
    if spec.type == ColumnType.BOOLEAN or spec.type in _DATE_TYPES:
        return None
    if spec.role == Role.NUMERIC or spec.type in _NUMBER_TYPES:
        return None
    t = col.type
    if pa.types.is_dictionary(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            return None
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    vocab: dict[str, int] = {}
    parts = []
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        indices, dictionary = chunk.indices, chunk.dictionary
        words = _category_text(pd.Series(dictionary.to_pandas())).tolist()
        remap = np.array([vocab.setdefault(str(w), len(vocab)) for w in words], dtype=np.intp)
        if indices.null_count:
            remap = np.append(remap, vocab.setdefault(MISSING_CATEGORY, len(vocab)))
            indices = pc.fill_null(indices, len(words))
        parts.append(remap[indices.to_numpy(zero_copy_only=False)])
    codes = (np.concatenate(parts) if len(parts) != 1 else parts[0])[order]
    values = list(vocab)
    text = pa.array(values, type=pa.large_string()).take(pa.array(codes))
    return pd.arrays.ArrowStringArray(text), CategoryCodes(codes, values)


def build_features_arrow(
    data: pa.Table | pa.RecordBatch,
    contract: Contract,
    as_of: dt.date | None = None,
    schema: FeatureSchema | None = None,
) -> Features:
    """:func:`build_features` of a clean Arrow table or batch, with :attr:`Features.codes`.

    The result equals ``build_features(data.to_pandas(), contract, as_of, schema)``. For a
    customer table it is computed in Arrow and numpy (ids sorted in Arrow, numbers read
    without copies, each distinct category value normalised once); columns of types this
    path does not handle (dates, text numbers...) and the extras go through the same
    pandas code as :func:`build_features`. Category columns may be dictionary-encoded.
    Transaction tables go through :func:`build_features`.
    """
    names = list(data.schema.names)
    id_col = contract.id_column.name if contract.id_column.name in names else "customer_id"
    ids = _arrow_column(data, id_col) if id_col in names else None
    if (
        contract.is_transactions
        or ids is None
        or not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type))
    ):
        clean = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        plain = pa.schema(
            [
                f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                for f in clean.schema
            ],
            metadata=clean.schema.metadata,
        )
        features = build_features(clean.cast(plain).to_pandas(), contract, as_of, schema)
        features.codes = {
            c: CategoryCodes.from_values(features.frame[c]) for c in features.categorical
        }
        return features
    as_of_date = _as_date(as_of) if as_of is not None else default_as_of(pd.DataFrame(), contract)
    as_of_ts = pd.Timestamp(as_of_date)
    positions, sorted_ids = _sorted_unique(
        ids if ids.type == pa.string() else ids.cast(pa.string())
    )
    order = pa.array(positions)
    index = pd.Index(pd.arrays.ArrowStringArray(sorted_ids), name="customer_id")
    present = {
        n
        for n in names
        if not n.startswith("_") and not n.endswith("__missing") and not n.endswith("__clipped")
    }

    def series(name: str) -> pd.Series:
        # converted as a one-column table with the data's schema metadata, so that pandas
        # gives the column the dtype ``data.to_pandas()`` would
        part = data.select([name]).take(order)
        field = part.schema.field(name)
        if pa.types.is_dictionary(field.type):
            plain = pa.schema(
                [field.with_type(field.type.value_type)], metadata=part.schema.metadata
            )
            part = part.cast(plain)
        out = part.to_pandas()[name]
        out.index = index
        return out

    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    codes: dict[str, CategoryCodes] = {}
    for spec in contract.columns:
        if spec.name not in present or spec.role not in (Role.NUMERIC, Role.CATEGORY):
            continue
        raw = data.column(spec.name)
        numbers = _arrow_numbers(spec, raw, positions)
        if numbers is not None:
            numeric[spec.name] = numbers
            continue
        category = _arrow_category(spec, raw, positions)
        if category is not None:
            categorical[spec.name], codes[spec.name] = category
            continue
        name, values, is_number = _feature_column(spec, series(spec.name), as_of_ts)
        (numeric if is_number else categorical)[name] = values
    numeric = _grouped(numeric, contract)
    frame = pd.DataFrame({**numeric, **categorical}, index=index)
    extras = pd.DataFrame(index=index)
    for spec in contract.by_role(Role.ATTRIBUTE):
        if spec.name in present:
            name, values = _attribute_column(spec, series(spec.name), as_of_ts)
            extras[name] = values
    for spec in contract.by_role(Role.OUTCOME):
        if spec.name in present:
            extras[spec.name] = _outcome_values(spec, series(spec.name))
    value = _customer_value(frame, contract)
    if value is None:
        candidates = [n for n in contract.value_columns if n in names]
        if candidates:
            value = _customer_value(
                pd.DataFrame({n: series(n) for n in candidates}, index=index), contract
            )
    return _finish(
        frame, list(numeric), list(categorical), extras, value, as_of_date, schema, codes
    )


def is_conformed(frame: pd.DataFrame, schema: FeatureSchema) -> bool:
    """True when ``frame`` already is what :func:`conform` would return (same columns in
    order, numbers float64, categories text without missing values): no copy needed."""
    if list(frame.columns) != schema.columns:
        return False
    for col in schema.numeric:
        if frame[col].dtype != np.float64:
            return False
    for col in schema.categorical:
        values = frame[col]
        if not isinstance(values.dtype, pd.StringDtype) or bool(values.isna().any()):
            return False
    return True


def conform(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """``frame`` with exactly the schema's columns and dtypes (see :func:`build_features`)."""
    out = pd.DataFrame(index=frame.index)
    for col in schema.numeric:
        if col in frame.columns:
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        else:
            out[col] = np.nan
    for col in schema.categorical:
        if col in frame.columns:
            out[col] = frame[col].astype("string").fillna(MISSING_CATEGORY)
        else:
            out[col] = pd.Series(MISSING_CATEGORY, index=frame.index, dtype="string")
    return out


def missing_features(frame: pd.DataFrame, schema: FeatureSchema) -> list[str]:
    """Schema features absent from ``frame`` or with no value at all."""
    out = []
    for col in schema.numeric:
        if col not in frame.columns or frame[col].notna().sum() == 0:
            out.append(col)
    for col in schema.categorical:
        if col not in frame.columns or (frame[col].astype("string") != MISSING_CATEGORY).sum() == 0:
            out.append(col)
    return out

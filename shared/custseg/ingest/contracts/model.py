"""Data contracts: the declarative description of one dataset kind.

A contract states, for each column a customer file may carry, its canonical name, the
header aliases it accepts, its type, its role, whether it is required, its allowed range
or values and how it is cleaned. Contracts are YAML files (see ``customers.yaml`` and
``transactions.yaml`` beside this module); a user can supply their own.

Header matching is case-, space-, underscore- and punctuation-insensitive:
``CustomerID``, ``customer_id``, ``Customer ID`` and ``customerID`` all normalise to
``customerid``. See :func:`normalise_header`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ColumnType(StrEnum):
    """Logical type of a column after cleaning."""

    ID = "id"  # text identifier; never parsed as a number (leading zeros survive)
    STRING = "string"  # free text (only personal data or ignored columns)
    CATEGORY = "category"  # normalised categorical text
    BOOLEAN = "boolean"  # yes/no, true/false, 1/0 and synonyms
    INTEGER = "integer"  # whole number, stored as float64 after cleaning
    FLOAT = "float"  # real number, float64
    DATE = "date"  # calendar date
    DATETIME = "datetime"  # timestamp (naive, UTC)


class Role(StrEnum):
    """What a column means to the pipeline."""

    CUSTOMER_ID = "customer_id"
    EVENT_TIME = "event_time"
    INVOICE_ID = "invoice_id"
    AMOUNT = "amount"
    QUANTITY = "quantity"
    UNIT_PRICE = "unit_price"
    CATEGORY = "category"  # categorical feature
    NUMERIC = "numeric"  # numeric feature
    OUTCOME = "outcome"  # observed outcome (churn, campaign response); never a feature
    PERSONAL = "personal"  # personal data: never computed on, logged or reported
    ATTRIBUTE = "attribute"  # kept for profiles but not a model feature (e.g. country)


class MissingPolicy(StrEnum):
    """What to do with a missing (blank) value."""

    MEDIAN = "median"  # impute the median of the file's valid values; flag the row
    MODE = "mode"  # impute the most frequent value; flag the row
    CONSTANT = "constant"  # impute ``fill_value``; flag the row
    FLAG = "flag"  # keep as missing, flag the row
    REJECT = "reject"  # reject the row (default for required columns)
    KEEP = "keep"  # keep as missing, no flag


class OutlierMethod(StrEnum):
    NONE = "none"
    IQR = "iqr"  # winsorise outside [Q1 - k*IQR, Q3 + k*IQR]
    QUANTILE = "quantile"  # winsorise outside [q_low, q_high]


class OutlierPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: OutlierMethod = OutlierMethod.NONE
    iqr_factor: float = 3.0
    lower_quantile: float = 0.001
    upper_quantile: float = 0.999


class ColumnSpec(BaseModel):
    """One column of a contract."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    role: Role
    aliases: list[str] = Field(default_factory=list)
    required: bool = False
    description: str = ""
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None  # canonical allowed values (after synonyms), lower-case
    synonyms: dict[str, str] = Field(default_factory=dict)  # raw (normalised) -> canonical
    missing: MissingPolicy | None = None  # default: REJECT if required else FLAG
    missing_tokens: list[str] = Field(default_factory=list)  # extra tokens meaning "missing"
    fill_value: Any = None
    outliers: OutlierPolicy = Field(default_factory=OutlierPolicy)
    out_of_range: str = "reject"  # "reject" the row, or "clip" to [min, max], or "null"
    date_format: str | None = None  # strftime format, or None to detect
    allow_future: bool = False  # dates after the upload time are plausible (e.g. renewals)
    decimal: Literal[".", ","] | None = None  # decimal separator of a number; None: detect
    true_values: list[str] = Field(default_factory=lambda: ["yes", "y", "true", "t", "1"])
    false_values: list[str] = Field(default_factory=lambda: ["no", "n", "false", "f", "0"])
    positive: str | None = None  # for outcome columns: which value counts as the event
    # a value computed from the column: "age_from_birth_year" (upload year - value)
    derive: Literal["age_from_birth_year"] | None = None

    @property
    def missing_policy(self) -> MissingPolicy:
        if self.missing is not None:
            return self.missing
        return MissingPolicy.REJECT if self.required else MissingPolicy.FLAG

    def header_keys(self) -> set[str]:
        """All normalised header spellings this column accepts."""
        return {normalise_header(h) for h in [self.name, *self.aliases]}


class DedupeRule(StrEnum):
    LATEST = "latest"  # keep the last occurrence in file order (or latest ``order_by``)
    MOST_COMPLETE = "most_complete"  # keep the row with the fewest missing values


class TransactionRules(BaseModel):
    """Rules specific to transaction (order / invoice) tables."""

    model_config = ConfigDict(extra="forbid")

    cancel_prefixes: list[str] = Field(default_factory=lambda: ["C"])
    # "net": keep cancellations/returns as negative amounts (they reduce monetary value);
    # "exclude": drop them from the cleaned data (counted in the report).
    returns: str = "net"
    # rows with unit price <= 0 (free samples, bad debt adjustments): "exclude" or "keep"
    non_positive_price: str = "exclude"
    # a non-cancellation row with quantity <= 0 (stock adjustment): "exclude" or "keep"
    non_positive_quantity: str = "exclude"
    # False: the log has no amounts (nor quantity and price): recency and frequency
    # features only, monetary value (M) unavailable
    amounts: bool = True


class Contract(BaseModel):
    """A data contract for one dataset kind."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # "customers" or "transactions" (or a user's own name)
    grain: str  # "customer" (one row per customer) or "transaction"
    version: str = "1"
    description: str = ""
    columns: list[ColumnSpec]
    dedupe: DedupeRule = DedupeRule.LATEST
    dedupe_order_by: str | None = None  # canonical column giving recency for LATEST
    # canonical names of columns that measure customer value, first present wins
    value_columns: list[str] = Field(default_factory=list)
    transactions: TransactionRules | None = None
    # True: only the columns listed here are read; False: headers not listed are inferred
    strict: bool = False

    @model_validator(mode="after")
    def _check(self) -> Contract:
        names = [c.name for c in self.columns]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"column names repeated in contract: {sorted(dupes)}")
        seen: dict[str, str] = {}
        for col in self.columns:
            for key in col.header_keys():
                if key in seen and seen[key] != col.name:
                    raise ValueError(
                        f"header alias {key!r} maps to both {seen[key]!r} and {col.name!r}"
                    )
                seen[key] = col.name
        if not any(c.role == Role.CUSTOMER_ID for c in self.columns):
            raise ValueError("a contract needs one column with role customer_id")
        if self.grain not in {"customer", "transaction"}:
            raise ValueError("grain must be 'customer' or 'transaction'")
        return self

    @property
    def is_transactions(self) -> bool:
        return self.grain == "transaction"

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def by_role(self, role: Role) -> list[ColumnSpec]:
        return [c for c in self.columns if c.role == role]

    @property
    def id_column(self) -> ColumnSpec:
        return self.by_role(Role.CUSTOMER_ID)[0]

    def header_map(self) -> dict[str, str]:
        """Normalised header spelling -> canonical column name."""
        return {key: col.name for col in self.columns for key in col.header_keys()}


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


@functools.lru_cache(maxsize=1 << 17)
def normalise_header(header: str) -> str:
    """Normalise a header for matching: NFKC, lower case, no spaces/underscores/punctuation.

    >>> normalise_header(" Customer ID ")
    'customerid'
    >>> normalise_header("customer_id") == normalise_header("CustomerID")
    True
    """
    text = unicodedata.normalize("NFKC", header).strip().lower()
    return _PUNCT.sub("", text)


def load_contract(source: str | Path | bytes) -> Contract:
    """Load a contract from a YAML (or JSON) file path or its bytes.

    Raises ``ValueError`` naming the file and the problem when the contract is invalid.
    """
    label = "<bytes>"
    if isinstance(source, bytes):
        text = source.decode("utf-8")
    else:
        label = str(source)
        text = Path(source).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # safe loader (C version when present)
        return Contract.model_validate(data)
    except Exception as exc:  # yaml.YAMLError or pydantic.ValidationError
        raise ValueError(f"invalid contract {label}: {exc}") from exc


BUILTIN_DIR = Path(__file__).parent


@functools.lru_cache(maxsize=8)
def _builtin(kind: str) -> Contract:
    path = BUILTIN_DIR / f"{kind}.yaml"
    if not path.exists():
        raise ValueError(f"no built-in contract {kind!r}; choose one of {', '.join(BUILTIN_KINDS)}")
    return load_contract(path)


def builtin_contract(kind: str) -> Contract:
    """One of the default contracts shipped with custseg: ``customers``, ``transactions``
    or ``campaign`` (campaign results, see :mod:`custseg.campaigns`).

    Parsed once per process; each call returns an independent (deep) copy.
    """
    return _builtin(kind).model_copy(deep=True)


BUILTIN_KINDS = ("customers", "transactions", "campaign")

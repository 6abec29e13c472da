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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class OutOfRange(StrEnum):
    """What to do with a number outside a column's ``[min, max]``."""

    REJECT = "reject"  # reject the row (default)
    CLIP = "clip"  # clip the value to [min, max]; the row is kept and flagged
    NULL = "null"  # set the value missing; the row is kept and flagged


class ReturnsPolicy(StrEnum):
    """What a transaction contract does with cancellations and returns."""

    NET = "net"  # keep them as negative amounts (they reduce monetary value)
    EXCLUDE = "exclude"  # drop them from the cleaned data (counted in the report)


class KeepOrExclude(StrEnum):
    """Whether rows a transaction rule flags are dropped or kept."""

    EXCLUDE = "exclude"
    KEEP = "keep"


class Grain(StrEnum):
    """What one row of a file is."""

    CUSTOMER = "customer"  # one row per customer
    TRANSACTION = "transaction"  # one row per order, invoice or order line


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
    out_of_range: OutOfRange = OutOfRange.REJECT
    date_format: str | None = None  # strftime format, or None to detect
    allow_future: bool = False  # dates after the upload time are plausible (e.g. renewals)
    decimal: Literal[".", ","] | None = None  # decimal separator of a number; None: detect
    true_values: list[str] = Field(default_factory=lambda: ["yes", "y", "true", "t", "1"])
    false_values: list[str] = Field(default_factory=lambda: ["no", "n", "false", "f", "0"])
    positive: str | None = None  # for outcome columns: which value counts as the event
    # a value computed from the column: "age_from_birth_year" (upload year - value)
    derive: Literal["age_from_birth_year"] | None = None
    # numeric columns sharing a group (e.g. spend per category) become one feature
    # ``<group>_total`` plus each column's share of it (``<name>_share``)
    group: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")

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
    returns: ReturnsPolicy = ReturnsPolicy.NET
    # rows with unit price <= 0 (free samples, bad debt adjustments)
    non_positive_price: KeepOrExclude = KeepOrExclude.EXCLUDE
    # a non-cancellation row with quantity <= 0 (stock adjustment)
    non_positive_quantity: KeepOrExclude = KeepOrExclude.EXCLUDE
    # False: the log has no amounts (nor quantity and price): recency and frequency
    # features only, monetary value (M) unavailable
    amounts: bool = True


class Contract(BaseModel):
    """A data contract for one dataset kind."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # "customers" or "transactions" (or a user's own name)
    grain: Grain
    version: str = "1"
    description: str = ""
    columns: list[ColumnSpec]
    dedupe: DedupeRule = DedupeRule.LATEST
    dedupe_order_by: str | None = None  # canonical column giving recency for LATEST
    # canonical names of columns that measure customer value, first present wins
    value_columns: list[str] = Field(default_factory=list)
    # transaction rules; a transaction contract without the block gets the defaults
    transactions: TransactionRules | None = None
    # True: only the columns listed here are read; False: headers not listed are inferred
    strict: bool = False

    @model_validator(mode="after")
    def _check(self) -> Contract:
        if not any(c.role == Role.CUSTOMER_ID for c in self.columns):
            raise ValueError("a contract needs one column with role customer_id")
        if self.grain == Grain.TRANSACTION:
            self._canonical_transaction_names()
            if self.transactions is None:
                self.transactions = TransactionRules()
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
        return self

    def _canonical_transaction_names(self) -> None:
        """Give each transaction role's column its canonical name (``amount``,
        ``quantity``, ...), its own name becoming an alias, so ``{name: spend_eur,
        role: amount}`` is the amount. Two columns with one of these roles, or a column
        holding a canonical name under another role, are contract errors."""
        for role in TRANSACTION_ROLES:
            cols = self.by_role(role)
            if len(cols) > 1:
                raise ValueError(
                    f"role {role.value} is given to {len(cols)} columns "
                    f"({', '.join(c.name for c in cols)}); a transaction contract takes one"
                )
            if not cols or cols[0].name == role.value:
                continue
            clash = [c for c in self.columns if c.name == role.value]
            if clash:
                raise ValueError(
                    f"column {cols[0].name!r} has role {role.value} but column "
                    f"{role.value!r} has role {clash[0].role.value}; rename one of them"
                )
            col, old = cols[0], cols[0].name
            col.aliases = [old, *col.aliases]
            col.name = role.value
            self.value_columns = [role.value if v == old else v for v in self.value_columns]
            if self.dedupe_order_by == old:
                self.dedupe_order_by = role.value

    @property
    def is_transactions(self) -> bool:
        return self.grain == Grain.TRANSACTION

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


TRANSACTION_ROLES = (
    Role.EVENT_TIME,
    Role.INVOICE_ID,
    Role.AMOUNT,
    Role.QUANTITY,
    Role.UNIT_PRICE,
)
"""Roles a transaction contract reads under their canonical column name (= the role)."""

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


class ContractError(ValueError):
    """An invalid contract: ``problems`` are one-line messages, each naming the YAML
    line and the field (``line 12: columns[3] (age).out_of_range: ...``)."""

    def __init__(self, label: str, problems: list[str]) -> None:
        self.label = label
        self.problems = problems
        super().__init__(f"invalid contract {label}: {'; '.join(problems)}")


def load_contract(source: str | Path | bytes) -> Contract:
    """Load a contract from a YAML (or JSON) file path or its bytes.

    Raises :class:`ContractError` (a ``ValueError``) naming the file, and for each
    problem the line and the field, when the contract is invalid.
    """
    label = "<bytes>"
    if isinstance(source, bytes):
        text = source.decode("utf-8")
    else:
        label = str(source)
        text = Path(source).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # safe loader (C version when present)
    except yaml.YAMLError as exc:
        raise ContractError(label, [_yaml_problem(exc)]) from exc
    if not isinstance(data, dict):
        raise ContractError(label, ["line 1: a contract is a mapping (kind:, grain:, columns:)"])
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        problems = [_field_problem(text, data, err) for err in exc.errors()]
        raise ContractError(label, problems) from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not YAML: line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return "not YAML: " + " ".join(str(exc).split())


def _field_problem(text: str, data: Any, error: Any) -> str:
    """``line N: field: message`` for one pydantic error."""
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if not loc:  # a whole-contract rule: point at the first column it names
        loc = _named_column(data, message)
    line = _yaml_line(text, loc)
    where = _field_name(data, loc)
    prefix = f"line {line}: " if line else ""
    return f"{prefix}{where}: {message}" if where else f"{prefix}{message}"


def _named_column(data: Any, message: str) -> tuple[Any, ...]:
    columns = data.get("columns") if isinstance(data, dict) else None
    for i, col in enumerate(columns if isinstance(columns, list) else []):
        if isinstance(col, dict) and f"'{col.get('name')}'" in message:
            return ("columns", i)
        if isinstance(col, dict) and f"({col.get('name')}," in message:
            return ("columns", i)
    return ("columns",) if "column" in message else ()


def _field_name(data: Any, loc: tuple[Any, ...]) -> str:
    """``columns[3] (age).out_of_range`` for the location ``("columns", 3, "out_of_range")``."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            name = ""
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    name = f" ({node['name']})"
            else:
                node = None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]{name}"]
            continue
        node = node.get(part) if isinstance(node, dict) else None
        parts.append(str(part))
    return ".".join(parts)


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (its key for a mapping field; the
    deepest existing parent when the field is absent)."""
    try:
        node: Any = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                break
            line = match[0][0].start_mark.line + 1
            node = match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


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

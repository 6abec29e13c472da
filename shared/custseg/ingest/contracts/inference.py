"""Schema inference: a contract for any customer file, from its headers and values.

Every column gets a role from its name and a sample of its values together:

- customer id: an id-like name (``customer_id``, ``CLIENTNUM``, ``member_number``...)
  whose values are near-unique (a customer table) or repeat (with a time column: an
  event log); a table without one gets a generated row id (``row_id``, with a warning);
- event time and other dates: the share of values each date family parses;
- money (name hints, decimals, currency symbols), counts (non-negative whole numbers),
  shares / rates (numbers in [0, 1] or rate-like names), birth years (-> ``age``);
- flags (two values in any spelling), categories (few distinct values), outcomes
  (churn / exited / attrition / response / accepted / converted... by name, two values);
- personal data by name and by value pattern (e-mail addresses, phone numbers, person
  names, street addresses, postcodes) and free text: never features, never clean data.

Columns a built-in contract knows (and whose values fit its type) keep the canonical
name and rules of that contract; the others keep their own (snake_case) name. The grain
(customer table vs event log) comes from the data: repeated ids plus a time column.

A user contract pins any part of the result: its columns are used as written and the
headers it does not list are still inferred, unless it says ``strict: true``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from custseg.ingest.cleaning import MISSING_TOKENS, to_np_bool
from custseg.ingest.contracts.model import (
    ColumnSpec,
    ColumnType,
    Contract,
    Grain,
    MissingPolicy,
    OutlierMethod,
    OutlierPolicy,
    Role,
    TransactionRules,
    builtin_contract,
    normalise_header,
)
from custseg.ingest.reading import DATE_FAMILIES, FileFormat, ReadError, iter_chunks, parse_dates

SAMPLE_ROWS = 20_000
"""Rows read from the start of a file to infer its contract."""

ROW_ID = "row_id"
"""The generated id column of a table without a customer id."""

_TRUE = {"yes", "y", "true", "t", "1", "1.0", "ja", "oui", "si", "sí"}
_FALSE = {"no", "n", "false", "f", "0", "0.0", "nein", "non"}
_POSITIVE_WORDS = re.compile(
    r"attrit|churn|exit|left|leav|cancel|clos|respon|accept|convert|buy|bought|"
    r"subscrib|default|yes|true|^y$|^1"
)
_OUTCOME_NAME = re.compile(
    r"(^|_)(churn|churned|exited|exit|attrition|attrited|attrition_flag|response|responded|"
    r"accepted|accepted_offer|converted|conversion|subscribed|default|defaulted|left|y|"
    r"target|label|outcome)($|_)"
)
_ID_NAME = re.compile(
    r"^(id|(cust(omer)?|client|member|user|account|acct|subscriber|consumer|buyer|shopper|"
    r"person|household|card|clientnum)(_?(id|no|nr|num|number|code|key|ref))?)$"
)
_ID_SUFFIX = re.compile(r"(^|_)(id|no|nr|num|number|code|key|ref)$")
_INVOICE_NAME = re.compile(r"(invoice|order|transaction|txn|receipt|basket|ticket|bill)")
_QTY_NAME = re.compile(r"(^|_)(qty|quantity|units?|items?|pieces?)($|_)")
_PRICE_NAME = re.compile(r"(^|_)(unit_?price|price|unit_?cost)($|_)")
_MONEY_NAME = re.compile(
    r"amount|amt|spend|spent|sales|revenue|price|cost|paid|payment|charge|income|salary|"
    r"balance|value|total|mnt|money|dollar|euro|fee|limit|purchases|gross|net|profit|"
    r"credit|debit|premium|claim_amount|clv|ltv|monetary"
)
_COUNT_NAME = re.compile(
    r"(^|_)(num|n|no|nr|count|cnt|number|visits?|purchases|orders|times|freq|frequency|kids?|"
    r"children|home)($|_)|^num|count$"
)
_SHARE_NAME = re.compile(r"rate|ratio|share|pct|percent|prc|proportion|frac|probability")
_DATE_NAME = re.compile(r"date|time|day|dt($|_)|timestamp|since|joined|created|enrol|enroll")
_BIRTH_YEAR = re.compile(r"(birth|born|yob)")
_PERSONAL_NAME = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|full_?name|forename|given_?name|e_?mail|"
    r"email_?address|mail|phone|phone_?number|telephone|tel|mobile|cell|address|street|"
    r"address_?line_?\d?|zip|zip_?code|postcode|postal_?code|ssn|passport|iban|dob|"
    r"date_?of_?birth|birth_?date|birthday|ip_?address)($|_)"
)
_EMAIL = re.compile(r"^[\w.+'-]+@[\w-]+(\.[\w-]+)+$")
_PHONE = re.compile(r"^(\+|00)?[\d\s().-]{7,20}$")
_PERSON = re.compile(r"^[A-Z][a-z'’-]+(?: [A-Z]\.?)?(?: [A-Z][a-z'’-]+){1,2}$")
_STREET = re.compile(
    r"^\d+[A-Za-z]?,? [\w .'-]+ (street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|court|ct|"
    r"boulevard|blvd|place|pl|terrace|close|crescent|square|sq|strasse|straße|weg|laan|"
    r"straat|rue|via|calle)\b",
    re.IGNORECASE,
)
_POSTCODE = re.compile(
    r"^([A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{4} ?[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{5}-\d{4})$"
)
_CURRENCY = re.compile(r"[$€£¥₹]|\b(?:usd|eur|gbp|chf)\b", re.IGNORECASE)
_NUMBER_STRIP = re.compile(r"[\s$€£¥₹%]|(?i:usd|eur|gbp|chf)")
_PLAIN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_COMMA_DECIMAL = re.compile(r"^[+-]?\d{1,3}(\.\d{3})*,\d+$|^[+-]?\d+,\d+$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")

# Cheap filters before the Python regexes above (RE2 over Arrow, of explicit ASCII
# characters only: ``\d``, ``\s``, ``\w`` and case folding mean other things in RE2). Each
# is true of every value its regex can match, so a value it rules out needs no test.
_HAS_AT, _HAS_SPACE = "@", " "  # e-mail; street and person (literal spaces)
_HAS_POSTCODE_CHAR = "[A-Z-]"  # every postcode shape has a capital or a hyphen
_HAS_NON_DIGIT_OR_00 = "[^0-9]|^00"  # a phone needs +, 00 or a separator
_HAS_NON_NUMBER_CHAR = "[^0-9.,+eE-]"  # a currency symbol or code
_PURE_NUMBER = "^[0-9.+eE-]*$"  # nothing to strip, no comma: only _PLAIN can match
_PLAIN_ASCII = _PLAIN.pattern  # same meaning as _PLAIN on ASCII digits
_PHONE_MIN_LEN = 7

_PARSE_SHARE = 0.95  # values a type must read for the column to take it
_CATEGORY_MAX = 50  # distinct values of a category (more: an attribute)
_FREE_TEXT_LEN = 30  # mean length of free text


# inference reads the values of the first columns only: a guess costs milliseconds, and a
# file of thousands of columns is a feature dump, not a customer table
MAX_INFERRED_COLUMNS = 250
MAX_HEADER_CHARS = 128  # a longer header is not a name (Glue and Athena allow 255)
NOT_INFERRED = "not_inferred"


@dataclass
class ColumnGuess:
    """What inference decided about one header, and why (names only, never values)."""

    header: str
    name: str
    type: ColumnType
    role: Role
    kind: str  # id, time, date, money, count, share, number, flag, category, outcome, ...
    why: str
    positive: str | None = None
    true_values: list[str] | None = None
    false_values: list[str] | None = None
    decimal: str | None = None
    date_format: str | None = None
    derive: str | None = None
    number_share: float = 0.0  # of the present values, the share that read as numbers
    whole: bool = False  # every number read is a whole number

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "name": self.name,
            "type": self.type.value,
            "role": self.role.value,
            "kind": self.kind,
            "why": self.why,
        }


@dataclass
class Inference:
    """An inferred contract and how it was reached."""

    contract: Contract
    columns: list[ColumnGuess]
    reason: str
    warnings: list[str] = field(default_factory=list)
    generated_id: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The grain and why, and per header the contract column it became (name, type,
        role) with the evidence (``kind``, ``why``; names only, never values)."""
        hmap = self.contract.header_map()
        columns = []
        for guess in self.columns:
            if guess.kind == NOT_INFERRED:
                continue  # counted in the warnings, not listed (a file may have 100,000)
            name = hmap.get(normalise_header(guess.header))
            spec = self.contract.column(name) if name else None
            entry = guess.to_dict()
            if spec is None:
                entry.update(name=None, role="ignored")
            else:
                entry.update(name=spec.name, type=spec.type.value, role=spec.role.value)
            columns.append(entry)
        return {
            "grain": self.contract.grain,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "generated_id": self.generated_id,
            "columns": columns,
        }


# --------------------------------------------------------------------------------------
# reading a sample


_SAMPLE_BLOCK = 1024 * 1024
"""Bytes the sample is read in (a file's own read block holds ~100,000 short rows)."""


def read_sample(path: Path, fmt: FileFormat, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first ``rows`` data rows of the file as text, one column per header position
    (named by position: "0", "1", ...). Read in small blocks (a record longer than one:
    again in the file's own)."""
    try:
        return _first_rows(path, replace(fmt, read_block=min(fmt.read_block, _SAMPLE_BLOCK)), rows)
    except ReadError:
        return _first_rows(path, fmt, rows)


def _first_rows(path: Path, fmt: FileFormat, rows: int) -> pd.DataFrame:
    for chunk in iter_chunks(path, fmt, chunk_rows=rows):
        sample: pd.DataFrame = chunk.table.slice(0, rows).to_pandas().astype("object")
        return sample
    return pd.DataFrame({str(i): pd.Series([], dtype=object) for i in range(len(fmt.headers))})


# --------------------------------------------------------------------------------------
# value evidence


def snake(header: str) -> str:
    """A header as a snake_case column name (``AcceptedCmp1`` -> ``accepted_cmp1``)."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", header.strip())
    text = re.sub(r"([A-Z]{2,})([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^\w]+", "_", text.lower(), flags=re.UNICODE).strip("_")
    return re.sub(r"_+", "_", text) or "column"


@dataclass
class _Values:
    """The present (non-missing) values of one sampled column and what they read as.

    Text tests run once per distinct value (``uniq``) and are spread back to every
    value by :meth:`each` (``codes``: each value's place in ``uniq``): the same result
    as testing every value, at the cost of the distinct ones.
    """

    text: pd.Series  # stripped, present
    n_rows: int
    numbers: pd.Series | None = None  # parsed numbers (NaN: did not parse)
    decimal: str | None = None
    currency: bool = False
    codes: np.ndarray = field(init=False, repr=False)
    uniq: pd.Series = field(init=False, repr=False)  # distinct values, first seen first
    arrow: pa.Array = field(init=False, repr=False)  # ``uniq`` as Arrow text
    _date_family: tuple[str | None, float] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        codes, uniq = pd.factorize(self.text.to_numpy(dtype=object))
        self.codes = codes
        self.uniq = pd.Series(uniq, dtype=object)
        self.arrow = pa.array(uniq, type=pa.string())

    @property
    def n(self) -> int:
        return len(self.text)

    @property
    def distinct(self) -> int:
        return len(self.uniq)

    def each(self, test: Callable[[pd.Series], pd.Series]) -> pd.Series:
        """``test`` (an elementwise function of a text Series) of every value."""
        return pd.Series(test(self.uniq).to_numpy()[self.codes], index=self.text.index)

    def share(self, mask: pd.Series | np.ndarray) -> float:
        return float(np.mean(np.asarray(mask, dtype=bool))) if self.n else 0.0

    def share_of(
        self, test: Callable[[pd.Series], pd.Series], among: np.ndarray | None = None
    ) -> float:
        """The share of the values for which ``test`` (elementwise) is true; ``among``
        (a mask of the distinct values): the only ones it can be true of, the others
        are not tested."""
        if among is None:
            return self.share(self.each(test))
        return self.share(self.test_among(test, among)[self.codes])

    def test_among(self, test: Callable[[pd.Series], pd.Series], among: np.ndarray) -> np.ndarray:
        """``test`` of the distinct values in ``among`` (a mask), False for the others."""
        hit = np.zeros(self.distinct, dtype=bool)
        if among.any():
            hit[among] = np.asarray(test(self.uniq[among]).to_numpy(), dtype=bool)
        return hit

    def having(self, pattern: str) -> np.ndarray:
        """Which distinct values contain a match of the RE2 ``pattern`` (a mask)."""
        return to_np_bool(pc.match_substring_regex(self.arrow, pattern))

    def date_family(self) -> tuple[str | None, float]:
        """:func:`_date_family` of the values (computed once)."""
        if self._date_family is None:
            self._date_family = _date_family(self.uniq)
        return self._date_family


def _present(raw: pd.Series) -> pd.Series:
    """The stripped values of ``raw`` that are not missing (blank or a missing token)."""
    codes, uniq = pd.factorize(raw.astype("string"))
    text = pd.Series(uniq, dtype="string").str.strip()
    missing = (text.isna() | text.str.lower().isin(MISSING_TOKENS)).fillna(True).to_numpy()
    keep = codes >= 0
    keep[keep] = ~missing[codes[keep]]
    stripped = text.to_numpy(dtype=object)
    return pd.Series(stripped[codes[keep]], index=raw.index[keep], dtype=object).astype(str)


def _parse_numbers(values: _Values) -> tuple[pd.Series, str | None, bool]:
    """Numbers read from the values (NaN where not), the decimal separator, and whether
    currency symbols were seen."""
    if not values.n:
        return pd.Series([], dtype=float, index=values.text.index), None, False
    has_currency = values.having(_HAS_NON_NUMBER_CHAR)
    currency = values.share_of(lambda u: u.str.contains(_CURRENCY), has_currency) > 0.5
    # a pure number (digits, sign, point, exponent) has nothing to strip and no comma
    rest = ~values.having(_PURE_NUMBER)
    bare = values.uniq.copy()
    bare[rest] = bare[rest].str.replace(_NUMBER_STRIP, "", regex=True)
    comma_at = values.test_among(lambda u: u.str.match(_COMMA_DECIMAL), rest)
    thousands_at = values.test_among(lambda u: u.str.match(_THOUSANDS), rest)
    at = values.codes
    comma, dot_thousands = float(comma_at[at].mean()), float(thousands_at[at].mean())
    decimal = None
    if comma > 0.5 and comma > dot_thousands:
        decimal = ","
        bare = bare.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        ok = bare.str.match(_PLAIN).to_numpy(dtype=bool)
    else:
        bare[thousands_at] = bare[thousands_at].str.replace(",", "", regex=False)
        ok = _plain_numbers(bare, rest)
    numbers = pd.to_numeric(bare.where(ok), errors="coerce")
    return pd.Series(numbers.to_numpy()[at], index=values.text.index), decimal, currency


def _plain_numbers(bare: pd.Series, rest: np.ndarray) -> np.ndarray:
    """Which of ``bare`` match :data:`_PLAIN`: by RE2 where only ASCII number characters
    are (``~rest``), by Python's ``re`` elsewhere."""
    ok = np.zeros(len(bare), dtype=bool)
    pure = ~rest
    if pure.any():
        text = pa.array(bare[pure].to_numpy(dtype=object), type=pa.string())
        ok[pure] = to_np_bool(pc.match_substring_regex(text, _PLAIN_ASCII))
    if rest.any():
        ok[rest] = bare[rest].str.match(_PLAIN).to_numpy(dtype=bool)
    return ok


# no date format reads a number of at most three integer digits (ISO needs a 4-digit year,
# the others two separators): such a column is not tried against every format
_SMALL_NUMBER = r"^[-+]?\d{1,3}(?:[.,]\d+)?$"
_EXTRA_DATE_FORMATS: list[str] = []  # formats beyond the families of DATE_FAMILIES


_DATE_SHAPE = (
    r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?:[ T].*)?$|^\d{8}$"
)


def _named_and_shaped_as_dates(name: str, values: _Values) -> bool:
    """A column named as a date whose values are shaped as dates, some not real ones
    (``2024-02-30``, ``0001-01-01``): a date column whose bad values are rejected by row,
    not a text column."""
    return (
        bool(_DATE_NAME.search(name)) and values.share_of(lambda u: u.str.match(_DATE_SHAPE)) >= 0.9
    )


def _date_family(distinct: pd.Series) -> tuple[str | None, float]:
    """The date family (or strftime format) parsing most of the ``distinct`` values (the
    first 500), and its share of them."""
    uniq = pd.Series(distinct.to_numpy()[:500], dtype="str")
    if uniq.empty or not uniq.str.contains(r"\d").all() or uniq.str.match(_SMALL_NUMBER).all():
        return None, 0.0
    best, best_share = None, 0.0
    for fam in [*DATE_FAMILIES, *_EXTRA_DATE_FORMATS]:
        share = float(parse_dates(uniq, fam).notna().mean())
        if share > best_share + 1e-9:
            best, best_share = fam, share
    return best, best_share


# --------------------------------------------------------------------------------------
# one column


def _personal_by_value(values: _Values) -> str | None:
    if values.n == 0:
        return None
    spaced = values.having(_HAS_SPACE)
    if values.share_of(lambda u: u.str.match(_EMAIL), values.having(_HAS_AT)) > 0.5:
        return "e-mail addresses"
    if values.share_of(lambda u: u.str.match(_STREET), spaced) > 0.5:
        return "street addresses"
    postcode_like = values.having(_HAS_POSTCODE_CHAR)
    if (
        values.share_of(lambda u: u.str.match(_POSTCODE), postcode_like) > 0.8
        and values.distinct > 5
    ):
        return "postcodes"
    if values.date_family()[1] >= 0.5 or values.share_of(lambda u: u.str.match(_DATE_SHAPE)) >= 0.5:
        return None  # dates (some maybe invalid), not phone numbers

    def phone(u: pd.Series) -> pd.Series:
        like = u.str.match(_PHONE) & u.str.contains(r"^\+|^00|[\s().-]")
        return like & (u.str.count(r"\d") >= 7)

    long_enough = to_np_bool(pc.greater_equal(pc.utf8_length(values.arrow), _PHONE_MIN_LEN))
    phone_like = long_enough & values.having(_HAS_NON_DIGIT_OR_00)
    if values.share_of(phone, phone_like) > 0.8 and values.distinct > 0.5 * values.n:
        return "phone numbers"
    if (
        values.share_of(lambda u: u.str.match(_PERSON), spaced) > 0.7
        and values.distinct > 0.5 * values.n
    ):
        return "person names"
    return None


def _flag_values(values: _Values, tolerance: float = 0.0) -> tuple[list[str], list[str]] | None:
    """(true spellings, false spellings) when the column holds yes/no in any spelling;
    ``tolerance``: the share of values that may be something else (an outcome's stray
    ``maybe``, read as missing and counted)."""
    lower = values.each(lambda u: u.str.lower())
    known = lower.isin(_TRUE | _FALSE)
    spelled = set(lower[known].unique())
    if not (spelled & _TRUE and spelled & _FALSE):
        return None
    if known.all() or (tolerance and (~known).mean() <= tolerance):
        return sorted(spelled & _TRUE), sorted(spelled & _FALSE)
    return None


def _guess_positive(distinct: list[str]) -> str:
    """Which of two outcome values is the event (churned, responded...)."""
    hits = [v for v in distinct if _POSITIVE_WORDS.search(v.lower())]
    if len(hits) == 1:
        return hits[0]
    return sorted(distinct)[-1]


def _guess_numeric(
    header: str, name: str, values: _Values, numbers: pd.Series
) -> tuple[ColumnType, str, str]:
    """(type, kind, why) of a numeric column."""
    finite = numbers.dropna()
    whole = bool((finite == np.floor(finite)).all())
    nonneg = bool((finite >= 0).all())
    if _BIRTH_YEAR.search(name) and whole and finite.between(1900, 2030).all():
        return ColumnType.INTEGER, "birth_year", "birth years (read as age)"
    if values.currency or (_MONEY_NAME.search(name) and not whole):
        return ColumnType.FLOAT, "money", "money (currency or a money name with decimals)"
    if _SHARE_NAME.search(name) or (not whole and finite.between(0, 1).all()):
        return ColumnType.FLOAT, "share", "a share or rate"
    if whole and nonneg and _COUNT_NAME.search(name):
        return ColumnType.INTEGER, "count", "a count (by name; whole numbers)"
    if _MONEY_NAME.search(name):
        return ColumnType.FLOAT, "money", "money (by name)"
    if whole and nonneg:
        return ColumnType.INTEGER, "count", "non-negative whole numbers"
    return ColumnType.FLOAT, "number", "numbers"


def guess_column(header: str, raw: pd.Series, n_rows: int) -> ColumnGuess:
    """The type, role and kind of one column from its header and sampled values."""
    name = snake(header)
    key = name.replace("_", "")
    values = _Values(text=_present(raw), n_rows=n_rows)

    def text(role: Role, kind: str, why: str) -> ColumnGuess:
        return ColumnGuess(header, name, ColumnType.STRING, role, kind, why)

    varied = values.distinct > 20 or values.distinct > 0.5 * values.n
    flag_like = values.distinct <= 3 and _flag_values(values) is not None
    if (
        _PERSONAL_NAME.search(name)
        and not _OUTCOME_NAME.search(name)
        and not flag_like
        and (varied or values.n == 0)
    ):
        return text(Role.PERSONAL, "personal", "personal data (by name)")
    if values.n == 0:
        return text(Role.ATTRIBUTE, "empty", "no values in the sample")
    pii = _personal_by_value(values)
    if pii:
        return text(Role.PERSONAL, "personal", f"personal data: {pii}")
    numbers, decimal, currency = _parse_numbers(values)
    values.currency = currency
    number_share = values.share(numbers.notna())
    is_number = number_share >= _PARSE_SHARE
    finite = numbers.dropna()
    whole = bool(len(finite)) and bool((finite == np.floor(finite)).all())

    def guess(ctype: ColumnType, role: Role, kind: str, why: str, **kw: Any) -> ColumnGuess:
        return ColumnGuess(
            header, name, ctype, role, kind, why, number_share=number_share, whole=whole, **kw
        )

    distinct = values.distinct
    outcome_name = bool(_OUTCOME_NAME.search(name)) and not re.search(r"\d$", name)
    flag = _flag_values(values, tolerance=0.2 if outcome_name else 0.0)
    counts = values.text.value_counts()
    two_values = distinct >= 2 and distinct <= 5 and counts.iloc[:2].sum() >= 0.95 * values.n
    if outcome_name and (flag or two_values):
        two = sorted(counts.index[:2])
        if flag:
            return guess(
                ColumnType.BOOLEAN, Role.OUTCOME, "outcome", "an outcome (by name; yes/no)",
                true_values=flag[0], false_values=flag[1],
            )  # fmt: skip
        positive = _guess_positive(two)
        other = [v for v in two if v != positive]
        return guess(
            ColumnType.BOOLEAN, Role.OUTCOME, "outcome", "an outcome (by name; two values)",
            positive=positive.lower(), true_values=[positive.lower()],
            false_values=[o.lower() for o in other],
        )  # fmt: skip
    if flag:
        return guess(
            ColumnType.BOOLEAN, Role.CATEGORY, "flag", "a flag (two values)",
            true_values=flag[0], false_values=flag[1],
        )  # fmt: skip
    if _ID_NAME.match(key) or _ID_NAME.match(name):
        return guess(ColumnType.ID, Role.ATTRIBUTE, "id", "an id (by name)")
    digits_only = bool(values.each(lambda u: u.str.fullmatch(r"\d{8}")).all())
    if not is_number or digits_only or _DATE_NAME.search(name):
        fam, share = values.date_family()
        if fam is not None and (share >= 0.9 or _named_and_shaped_as_dates(name, values)):
            if digits_only and not _DATE_NAME.search(name):
                years = pd.to_numeric(values.each(lambda u: u.str[:4]), errors="coerce")
                if not years.between(1950, 2100).all():
                    fam = None
            if fam is not None:
                has_time = (
                    values.share_of(lambda u: u.str.contains(r"\d[:T]\d|\d{1,2}:\d{2}")) > 0.5
                )
                ctype = ColumnType.DATETIME if has_time else ColumnType.DATE
                return guess(
                    ctype, Role.NUMERIC, "date", f"dates ({share:.0%} parse)",
                    date_format=fam if fam in _EXTRA_DATE_FORMATS else None,
                )  # fmt: skip
    if is_number:
        ctype, kind, why = _guess_numeric(header, name, values, numbers)
        if kind == "birth_year":
            return guess(ctype, Role.NUMERIC, kind, why, derive="age_from_birth_year")
        if _ID_SUFFIX.search(name) and ctype == ColumnType.INTEGER and distinct > 0.9 * values.n:
            return guess(ColumnType.ID, Role.ATTRIBUTE, "id", "an id (by name, unique)")
        return guess(ctype, Role.NUMERIC, kind, why, decimal=decimal)
    if _ID_SUFFIX.search(name):
        return guess(ColumnType.ID, Role.ATTRIBUTE, "id", "an id or code (by name)")
    mean_len = float(values.each(lambda u: u.str.len()).mean())
    if (distinct <= _CATEGORY_MAX and distinct < 0.5 * max(values.n, 1)) or distinct <= 2:
        return guess(ColumnType.CATEGORY, Role.CATEGORY, "category", f"{distinct} categories")
    if mean_len >= _FREE_TEXT_LEN or values.each(lambda u: u.str.count(" ")).mean() >= 3:
        return guess(ColumnType.STRING, Role.ATTRIBUTE, "text", "free text (never a feature)")
    return guess(
        ColumnType.CATEGORY, Role.ATTRIBUTE, "code", f"{distinct}+ distinct values (not a feature)"
    )


# --------------------------------------------------------------------------------------
# the table


def _id_share(raw: pd.Series) -> tuple[float, int]:
    """(distinct share of the present values, present values)."""
    text = _present(raw)
    return (text.nunique() / len(text) if len(text) else 0.0), len(text)


def _pick_id(guesses: list[ColumnGuess], sample: pd.DataFrame) -> tuple[int | None, float]:
    """Position of the customer id column (None: none) and its distinct share."""
    builtin_ids = builtin_contract("customers").id_column.header_keys()
    ranked: list[tuple[int, int]] = []
    for i, g in enumerate(guesses):
        key = normalise_header(g.header)
        if g.type != ColumnType.ID and g.kind not in ("count", "category", "code", "empty"):
            continue
        if key in builtin_ids and key != "id":
            ranked.append((0, i))
        elif _ID_NAME.match(key) or _ID_NAME.match(g.name):
            ranked.append((1, i))
        elif g.type == ColumnType.ID and not _INVOICE_NAME.search(g.name):
            ranked.append((2, i))
    for _, i in sorted(ranked):
        share, n = _id_share(sample.iloc[:, i])
        if n or len(sample) == 0:
            return i, share
    return None, 0.0


_TX_ROLE_FOR = {
    Role.INVOICE_ID: "invoice_id",
    Role.QUANTITY: "quantity",
    Role.UNIT_PRICE: "unit_price",
    Role.AMOUNT: "amount",
}


def _builtin_fit(spec: ColumnSpec, g: ColumnGuess) -> bool:
    """Whether the values' guess fits a built-in column's type."""
    if spec.role == Role.PERSONAL:
        return True
    if g.role == Role.PERSONAL or g.kind in ("text", "empty"):
        return False
    # mostly numbers: a built-in number column (its own rules reject the rest)
    if spec.type == ColumnType.INTEGER:
        return g.number_share >= 0.5 and g.whole and g.kind not in ("date", "flag", "outcome")
    if spec.type == ColumnType.FLOAT:
        return g.number_share >= 0.5 and g.kind not in ("date", "flag", "outcome")
    if spec.type == ColumnType.BOOLEAN:
        return g.type == ColumnType.BOOLEAN
    if spec.type in (ColumnType.DATE, ColumnType.DATETIME):
        return g.kind == "date"
    if spec.type == ColumnType.CATEGORY:
        return g.kind in ("category", "flag", "code")
    return True  # id / string


def _own_spec(g: ColumnGuess) -> ColumnSpec:
    """The contract column of a header no built-in column takes."""
    missing = MissingPolicy.FLAG
    if g.role == Role.NUMERIC and g.type in (ColumnType.INTEGER, ColumnType.FLOAT):
        missing = MissingPolicy.MEDIAN
    elif g.role == Role.ATTRIBUTE or g.type == ColumnType.ID:
        missing = MissingPolicy.KEEP
    outliers = OutlierPolicy()
    if g.kind in ("money", "count") and g.role == Role.NUMERIC:
        outliers = OutlierPolicy(method=OutlierMethod.IQR, iqr_factor=3.0)
    spec = ColumnSpec(
        name=g.name,
        type=g.type,
        role=g.role,
        aliases=[g.header] if normalise_header(g.header) != normalise_header(g.name) else [],
        description=f"inferred: {g.why}",
        missing=missing,
        outliers=outliers,
        positive=g.positive,
        date_format=g.date_format,
        derive="age_from_birth_year" if g.derive == "age_from_birth_year" else None,
    )
    if g.kind == "count":
        spec.min = 0
    if g.decimal:
        spec.decimal = "," if g.decimal == "," else "."
    if g.true_values is not None:
        spec.true_values = list(g.true_values)
    if g.false_values is not None:
        spec.false_values = list(g.false_values)
    if g.kind == "date":
        spec.allow_future = True
    return spec


def _adopt(builtin: ColumnSpec, g: ColumnGuess) -> ColumnSpec:
    """A built-in column taken for header ``g.header`` (its canonical name and rules)."""
    spec = builtin.model_copy(deep=True)
    spec.aliases = [g.header]
    spec.required = spec.role in (Role.CUSTOMER_ID, Role.EVENT_TIME)
    if g.true_values is not None and spec.type == ColumnType.BOOLEAN:
        spec.true_values = sorted({*spec.true_values, *g.true_values})
        spec.false_values = sorted({*spec.false_values, *(g.false_values or [])})
        if g.positive:
            spec.positive = g.positive
    if g.date_format and spec.type in (ColumnType.DATE, ColumnType.DATETIME):
        spec.date_format = g.date_format
    if g.decimal == "," and spec.type in (ColumnType.INTEGER, ColumnType.FLOAT):
        spec.decimal = ","
    return spec


def _tx_role(g: ColumnGuess, canonical: str | None) -> Role | None:
    """The event-log role of one column: by built-in alias first, then by name."""
    by_alias = {v: k for k, v in _TX_ROLE_FOR.items()}.get(canonical or "")
    # named as a built-in: mostly numbers suffice (the built-in's rules reject the rest)
    numeric = g.kind in ("money", "count", "number", "share") or (
        by_alias is not None and g.number_share >= 0.5 and g.kind not in ("date", "flag")
    )
    if by_alias == Role.INVOICE_ID or (
        by_alias is None and _INVOICE_NAME.search(g.name) and g.kind in ("id", "count", "code")
    ):
        return Role.INVOICE_ID
    if not numeric:
        return None
    if by_alias is not None:
        return by_alias
    if _PRICE_NAME.search(g.name):
        return Role.UNIT_PRICE
    if _QTY_NAME.search(g.name):
        return Role.QUANTITY
    return None


def _transaction_roles(guesses: list[ColumnGuess], time_i: int, id_i: int) -> dict[int, Role]:
    """Event-log roles by header position: invoice id, quantity, unit price, amount."""
    roles: dict[int, Role] = {time_i: Role.EVENT_TIME, id_i: Role.CUSTOMER_ID}
    tx = builtin_contract("transactions").header_map()
    for i, g in enumerate(guesses):
        if i in roles:
            continue
        role = _tx_role(g, tx.get(normalise_header(g.header)))
        if role is not None and role not in roles.values():
            roles[i] = role
    if Role.AMOUNT not in roles.values() and not (
        Role.QUANTITY in roles.values() and Role.UNIT_PRICE in roles.values()
    ):
        money = [i for i, g in enumerate(guesses) if i not in roles and g.kind == "money"]
        numbers = [
            i for i, g in enumerate(guesses) if i not in roles and g.kind in ("number", "share")
        ]
        pick = money or numbers
        if pick:
            roles[pick[0]] = Role.AMOUNT
    return roles


def _grain(
    guesses: list[ColumnGuess], sample: pd.DataFrame, id_i: int | None, id_share: float
) -> tuple[str, int | None, str]:
    """("customer" or "transaction", position of the event time, why)."""
    cust_keys = builtin_contract("customers").header_map()
    tx_keys = builtin_contract("transactions").header_map()

    def event_like(g: ColumnGuess) -> bool:  # not a customer-level date (signup, last purchase)
        key = normalise_header(g.header)
        return key not in cust_keys or tx_keys.get(key) == "event_time"

    dates = [i for i, g in enumerate(guesses) if g.kind == "date" and i != id_i and event_like(g)]
    if id_i is None or not dates or id_share >= 0.8:
        why = (
            "no customer id column"
            if id_i is None
            else f"one row per customer ({id_share:.0%} of the sampled ids distinct)"
        )
        return "customer", None, why
    named = [i for i in dates if tx_keys.get(normalise_header(guesses[i].header)) == "event_time"]
    time_i = (named or dates)[0]
    why = (
        f"an event log: ids repeat ({id_share:.0%} distinct in the sample) and "
        f"{guesses[time_i].header!r} holds the time"
    )
    return "transaction", time_i, why


def _unique_name(name: str, used: set[str]) -> str:
    if name not in used:
        return name
    k = 2
    while f"{name}_{k}" in used:
        k += 1
    return f"{name}_{k}"


def _base_contract(grain: str) -> Contract:
    return builtin_contract("transactions" if grain == "transaction" else "customers")


def _specs_for(
    guesses: list[ColumnGuess],
    base: Contract,
    roles: dict[int, Role],
    pinned: dict[str, ColumnSpec],
) -> list[ColumnSpec]:
    """One contract column per header (pinned ones as given); names unique."""
    hmap = base.header_map()
    header_keys = {normalise_header(g.header) for g in guesses}
    # the names the pipeline reads by role: only the column holding that role has one
    reserved = {"customer_id", "event_time"}
    if base.transactions is not None:
        reserved |= set(_TX_ROLE_FOR.values())
    specs: list[ColumnSpec] = []
    used: set[str] = set()
    keys: set[str] = set()
    seen: set[str] = set()
    for i, g in enumerate(guesses):
        key = normalise_header(g.header)
        if key in seen:  # the same header again: rejected as duplicate_header
            continue
        seen.add(key)
        if key in pinned:
            spec = pinned[key]
            if spec.name in used:
                continue
        elif g.kind == NOT_INFERRED:
            continue
        else:
            spec = _spec_for(i, g, base, hmap, roles, used, header_keys)
            if spec.name in reserved and i not in roles:  # a role's name, not its role
                spec = spec.model_copy(update={"name": _unique_name(spec.name, used | reserved)})
        if spec.name in used or normalise_header(spec.name) in keys - {key}:
            spec = spec.model_copy(update={"name": _unique_name(g.name, used)})
            spec.aliases = [g.header]
        used.add(spec.name)
        keys |= spec.header_keys()
        specs.append(spec)
    return specs


_CHURN_NAME = re.compile(r"churn|exit|attrit|left|cancel|leav")
_RESPONSE_NAME = re.compile(r"respon|accept|convert|subscrib|^y$")


def _outcome_canonical(name: str) -> str | None:
    """The built-in outcome (churn, campaign_response) an outcome's name means, if any."""
    if _CHURN_NAME.search(name):
        return "churn"
    if _RESPONSE_NAME.search(name):
        return "campaign_response"
    return None


def _spec_for(
    i: int,
    g: ColumnGuess,
    base: Contract,
    hmap: dict[str, str],
    roles: dict[int, Role],
    used: set[str],
    other_keys: set[str],
) -> ColumnSpec:
    role = roles.get(i)
    if role is not None:
        canonical = "customer_id" if role == Role.CUSTOMER_ID else None
        canonical = canonical or ("event_time" if role == Role.EVENT_TIME else None)
        canonical = canonical or _TX_ROLE_FOR.get(role)
        if canonical and canonical not in used:
            spec = _adopt(base.column(canonical), g)
            if role == Role.EVENT_TIME and g.date_format:
                spec.date_format = g.date_format
            if role in (Role.CUSTOMER_ID, Role.INVOICE_ID):
                spec.type = ColumnType.ID
            return spec
    canonical = hmap.get(normalise_header(g.header))
    if canonical is None and g.role == Role.OUTCOME:
        canonical = _outcome_canonical(g.name)
    if canonical and normalise_header(canonical) in other_keys - {normalise_header(g.header)}:
        canonical = None  # another header is spelled like this canonical name
    if canonical and canonical not in used and canonical not in _TX_ROLE_FOR.values():
        builtin = base.column(canonical)
        if builtin.role not in (Role.CUSTOMER_ID, Role.EVENT_TIME) and _builtin_fit(builtin, g):
            return _adopt(builtin, g)
    if g.derive == "age_from_birth_year" and "age" not in used:
        spec = _own_spec(g)
        spec.name = "age"
        spec.aliases = [g.header]
        return spec
    if g.role == Role.CUSTOMER_ID or (g.type == ColumnType.ID and g.role != Role.ATTRIBUTE):
        g = ColumnGuess(g.header, g.name, ColumnType.ID, Role.ATTRIBUTE, "id", g.why)
    return _own_spec(g)


def infer_contract(
    headers: list[str], sample: pd.DataFrame, given: Contract | None = None
) -> Inference:
    """The contract of a file with ``headers`` from a ``sample`` of its rows (text, one
    column per header position); ``given`` pins the columns it lists (see module docs).
    """
    guesses, warnings = _guess_columns(headers, sample)
    pinned = {k: c for c in (given.columns if given else []) for k in c.header_keys()}
    given_id = given.id_column if given else None
    id_i: int | None = None
    id_share = 0.0
    if given_id is not None:
        keys = given_id.header_keys()
        id_i = next((i for i, h in enumerate(headers) if normalise_header(h) in keys), None)
        if id_i is not None:
            id_share = _id_share(sample.iloc[:, id_i])[0]
    else:
        id_i, id_share = _pick_id(guesses, sample)
    if given is not None:
        grain = str(given.grain)
        time_i = _given_time(given, headers)
        reason = "given by the caller" + ("" if given.strict else "; other columns inferred")
    else:
        grain, time_i, reason = _grain(guesses, sample, id_i, id_share)
    roles: dict[int, Role] = {}
    no_amounts = False
    if id_i is not None:
        roles[id_i] = Role.CUSTOMER_ID
    if grain == "transaction" and time_i is not None and id_i is not None:
        roles = _transaction_roles(guesses, time_i, id_i)
        no_amounts = Role.AMOUNT not in roles.values() and not (
            Role.QUANTITY in roles.values() and Role.UNIT_PRICE in roles.values()
        )
        if no_amounts:
            warnings.append(
                "no amount column (nor quantity and unit price): recency and frequency "
                "only, monetary value (M) unavailable"
            )
    base = given if given is not None else _base_contract(grain)
    if given is not None and given.strict:
        specs = list(given.columns)
    else:
        specs = _specs_for(guesses, _base_contract(grain), roles, pinned)
        listed = {s.name for s in specs}
        specs += [c for c in (given.columns if given else []) if c.name not in listed]
    generated = False
    if not any(s.role == Role.CUSTOMER_ID for s in specs):
        generated = True
        used = {s.name for s in specs}
        specs = [
            s.model_copy(update={"name": _unique_name(s.name, used)})
            if s.name == "customer_id"
            else s
            for s in specs
        ]
        specs.insert(0, _row_id_spec())
        warnings.append(
            f"no customer id column: each row gets a generated id ({ROW_ID!r}, the row's "
            "number in the file); ids change if rows are added or reordered"
        )
        reason += "; rows numbered as customers"
    if grain == "transaction" and not any(s.name == "amount" for s in specs):
        specs.append(_base_contract("transaction").column("amount").model_copy(deep=True))
    contract = _assemble(base, grain, specs, given)
    if contract.transactions is not None and given is None and no_amounts:
        contract.transactions.amounts = False
    return Inference(contract, guesses, reason, warnings, generated)


def _guess_columns(headers: list[str], sample: pd.DataFrame) -> tuple[list[ColumnGuess], list[str]]:
    """A guess per header: the first :data:`MAX_INFERRED_COLUMNS` read from their values,
    the others not inferred (ignored unless a given contract pins them), with a warning."""
    guesses = [
        guess_column(h, sample.iloc[:, i], len(sample))
        if i < MAX_INFERRED_COLUMNS and _is_a_name(h)
        else ColumnGuess(h, "", ColumnType.STRING, Role.ATTRIBUTE, NOT_INFERRED, "")
        for i, h in enumerate(headers)
    ]
    warnings = []
    odd = sum(not _is_a_name(h) for h in headers[:MAX_INFERRED_COLUMNS])
    if odd:
        warnings.append(
            f"{odd} header(s) longer than {MAX_HEADER_CHARS} characters or holding an e-mail "
            "address: not a column name, the column is ignored"
        )
    if len(headers) > MAX_INFERRED_COLUMNS:
        warnings.append(
            f"the file has {len(headers):,} columns: the first {MAX_INFERRED_COLUMNS} are "
            f"inferred, the other {len(headers) - MAX_INFERRED_COLUMNS:,} ignored (a contract "
            "that lists them keeps them: custseg infer, then pin them)"
        )
    return guesses, warnings


def _is_a_name(header: str) -> bool:
    """A header that can name a column: short, and no personal data (a shifted row can put
    an e-mail address in the header; a column named after it would publish it)."""
    return len(header) <= MAX_HEADER_CHARS and "@" not in header


def known_contract(headers: list[str], known: Sequence[Contract]) -> Contract | None:
    """The first of ``known`` (the contracts of a dataset's earlier uploads) that reads a
    file with ``headers``: it names every header (by name or alias) and the file has each
    of its required columns. None when none does (the file's contract is inferred)."""
    keys = {normalise_header(h) for h in headers}
    for contract in known:
        names = contract.header_map()
        required = [c for c in contract.columns if c.required]
        if keys <= set(names) and all(keys & c.header_keys() for c in required):
            return contract
    return None


def _given_time(given: Contract, headers: list[str]) -> int | None:
    keys = {k for c in given.by_role(Role.EVENT_TIME) for k in c.header_keys()}
    return next((i for i, h in enumerate(headers) if normalise_header(h) in keys), None)


def _row_id_spec() -> ColumnSpec:
    return ColumnSpec(
        name="customer_id",
        type=ColumnType.ID,
        role=Role.CUSTOMER_ID,
        required=True,
        aliases=[ROW_ID],
        description="generated: the row's number in the file (no id column)",
    )


def _assemble(
    base: Contract, grain: str, specs: list[ColumnSpec], given: Contract | None
) -> Contract:
    value_columns = list(base.value_columns)
    names = {s.name for s in specs}
    own_money = [
        s.name
        for s in specs
        if s.role == Role.NUMERIC and s.description.startswith("inferred: money")
    ]
    if not any(v in names for v in value_columns) and own_money:
        value_columns = [*value_columns, *own_money]
    return Contract(
        kind=given.kind if given else ("transactions" if grain == "transaction" else "customers"),
        grain=Grain(grain),
        version=given.version if given else base.version,
        description=given.description if given else f"inferred from the file ({base.kind})",
        columns=specs,
        dedupe=base.dedupe,
        dedupe_order_by=base.dedupe_order_by if base.dedupe_order_by in names else None,
        value_columns=value_columns,
        transactions=(base.transactions or TransactionRules()) if grain == "transaction" else None,
        strict=given.strict if given else False,
    )


def infer_file(path: Path, given: Contract | None = None) -> Inference:
    """:func:`infer_contract` of a local file (raises ``ReadError`` when it cannot be read)."""
    from custseg.ingest.reading import sniff

    fmt = sniff(path)
    return infer_contract(fmt.headers, read_sample(path, fmt), given)


# --------------------------------------------------------------------------------------
# writing


def contract_yaml(contract: Contract, inference: Inference | None = None) -> str:
    """The contract as YAML a user can edit and pass back with ``--contract``."""
    data = contract.model_dump(mode="json", exclude_defaults=True)
    data["kind"], data["grain"] = contract.kind, str(contract.grain)
    head = [
        "# custseg data contract (inferred). Edit and pass back with --contract FILE:",
        "# the columns listed here are pinned; headers not listed are still inferred",
        "# unless strict: true. See docs/contracts.md.",
    ]
    if inference is not None:
        head.append(f"# grain: {inference.reason}")
        head += [f"# warning: {w}" for w in inference.warnings]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(head) + "\n" + body

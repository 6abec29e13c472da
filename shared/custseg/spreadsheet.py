"""Spreadsheet safety of text written to CSV files people open in a spreadsheet.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would
be run as a formula by Excel / LibreOffice / Google Sheets; such text is prefixed with an
apostrophe ``'`` (the usual OWASP advice; spreadsheets show it as plain text). Used by the
ingest (``rejected_rows.csv``) and the scoring (``assignments.csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^([=+\-@\t\r])"


def neutralise_formulas(series: pd.Series) -> pd.Series:
    """Prefix text values that a spreadsheet would run as a formula with ``'``.

    Only text is changed: a numeric series is returned unchanged (``-3.5`` stays a number).
    Missing values stay missing. Shape and index are preserved.

    >>> neutralise_formulas(pd.Series(["=cmd()", "ok", "-x"])).tolist()
    ["'=cmd()", 'ok', "'-x"]
    """
    if not (pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series)):
        return series
    text = series.astype("string")
    risky = text.str.match(_FORMULA_PATTERN).fillna(False).to_numpy(dtype=bool)
    if not risky.any():
        return text
    out = text.copy()
    out[risky] = "'" + text[risky]
    return out


_FORMULA_BYTES = np.array([ord(c) for c in FORMULA_PREFIXES], dtype=np.uint8)


def _may_be_risky(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether some string starts with a formula character, from the first byte of each
    value (the prefixes are ASCII, so a first byte equal to one of them is that first
    character). Arrays of other layouts answer True (the regex then decides)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        if chunk.type != pa.string():
            return True
        n = len(chunk)
        if n == 0:
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        if data_buf is None:
            continue
        offsets = np.frombuffer(offsets_buf, dtype=np.int32)[chunk.offset : chunk.offset + n + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8)
        starts = offsets[:-1]
        filled = offsets[1:] > starts
        if chunk.null_count:
            filled &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if np.isin(data[starts[filled]], _FORMULA_BYTES).any():
            return True
    return False


# a number as a file may write it (sign, digits, separators, exponent): never a formula
_NUMBER_TEXT = r"^[+-]?[0-9][0-9,.]*([eE][+-]?[0-9]+)?$"


def neutralise_array(
    values: pa.Array | pa.ChunkedArray, keep_numbers: bool = False
) -> pa.Array | pa.ChunkedArray:
    """Arrow version of :func:`neutralise_formulas` for a string array (vectorised).

    A cheap check of each value's first byte runs first; the regex rewrite only when some
    value needs it. A dictionary-encoded array has its dictionary neutralised.
    ``keep_numbers``: text that is a number (``-3.5``, ``+1,234.50``) is left as it is,
    as a number column would be (for files whose every column is text, such as
    ``rejected_rows.csv``).
    """
    if pa.types.is_dictionary(values.type):
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        safe = [
            pa.DictionaryArray.from_arrays(c.indices, neutralise_array(c.dictionary, keep_numbers))
            for c in chunks
        ]
        return (
            pa.chunked_array(safe, values.type) if isinstance(values, pa.ChunkedArray) else safe[0]
        )
    if not _may_be_risky(values):
        return values
    risky = pc.match_substring_regex(values, pattern=_FORMULA_PATTERN)
    if keep_numbers:
        risky = pc.and_(risky, pc.invert(pc.match_substring_regex(values, pattern=_NUMBER_TEXT)))
    if not pc.any(risky).as_py():
        return values
    fixed = pc.replace_substring_regex(values, pattern=_FORMULA_PATTERN, replacement=r"'\1")
    return pc.if_else(risky, fixed, values) if keep_numbers else fixed


def neutralise_table(table: pa.Table) -> pa.Table:
    """``table`` with every string column neutralised (numbers and dates untouched)."""
    columns = [neutralise_array(col) if is_text(col.type) else col for col in table.columns]
    return pa.table(columns, schema=table.schema)


def is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_))

"""A clean run's data on local disk: which Parquet files it is, and reading it whole.

The ingest writes the clean data as consecutive parts, ``data/part-00000.parquet``,
``data/part-00001.parquet`` (see :data:`custseg.ingest.pipeline.CLEAN_PARTS`): reading them in
name order gives the rows in the upload's order. Clean runs written before the parts
(2026-12-01) are one ``data.parquet`` file; every reader takes either.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custseg.layout import is_clean_part_name


def clean_files(path: Path) -> list[Path]:
    """The Parquet files of the clean data at ``path`` (a part directory or one file),
    in row order. Raises FileNotFoundError when there is none."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if is_clean_part_name(f.name))
    else:
        files = [path]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no clean Parquet data at {path}")
    return files


def read_clean(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The whole clean data at ``path`` (rows in order; the first part's schema, with
    its ``custseg.*`` metadata)."""
    tables = [pq.read_table(str(f), columns=columns) for f in clean_files(path)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def clean_schema(path: Path) -> pa.Schema:
    """The clean data's Arrow schema (its first part's)."""
    return pq.read_schema(str(clean_files(path)[0]))


def clean_parts(path: Path) -> list[tuple[Path, int]]:
    """Each file of the clean data at ``path`` with its row count (from its footer)."""
    return [(f, pq.read_metadata(str(f)).num_rows) for f in clean_files(path)]

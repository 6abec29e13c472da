"""A dataset's state: every clean part its uploads became, by source kind.

A dataset (an ``incoming/<dataset>/`` folder) receives uploads over time: a customer
table split into parts, a daily order file appended to history. Each accepted upload is a
committed clean run; registering it in the state makes it part of the dataset. Scoring
and training read the whole state:

- customer tables (``kind = "customers"``) upsert: the latest row of a customer wins
  (by upload order, then row order);
- order logs (``kind = "transactions"``) union: a row that an earlier part holds already
  (the same values in every column) is counted once;
- a part uploaded with ``mode = "replace"`` replaces every earlier part of its kind.

The state is one JSON document (``clean/<dataset>/_state.json``), moved forward by
conditional writes (the AWS adapter); this module is the pure part: the document, the
registration rule and the digest that names what a run was built from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any

APPEND = "append"
REPLACE = "replace"
MODES = (APPEND, REPLACE)


@dataclass(frozen=True)
class PartFile:
    """One Parquet file of a part's clean data (relative to the part's clean prefix)."""

    name: str
    sha256: str | None
    rows: int | None


@dataclass(frozen=True)
class Part:
    """One committed clean run registered in its dataset."""

    run_id: str
    kind: str  # the contract kind: "customers" or "transactions"
    manifest_key: str
    uploaded_at: str  # ISO time of the upload (the S3 object's LastModified)
    rows: int
    files: tuple[PartFile, ...] = ()
    mode: str = APPEND
    source_key: str = ""

    @property
    def prefix(self) -> str:
        return self.manifest_key.rsplit("/", 1)[0] + "/"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["files"] = [asdict(f) for f in self.files]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Part:
        files = tuple(PartFile(**f) for f in d.get("files", []))
        return cls(**{**d, "files": files})


@dataclass(frozen=True)
class DatasetState:
    """Every part of a dataset, in registration order. ``version`` counts registrations."""

    dataset: str
    version: int = 0
    parts: tuple[Part, ...] = ()
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "updated_at": self.updated_at,
            "digest": self.digest(),
            "parts": [p.to_dict() for p in self.parts],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetState:
        return cls(
            dataset=str(d["dataset"]),
            version=int(d.get("version", 0)),
            parts=tuple(Part.from_dict(p) for p in d.get("parts", [])),
            updated_at=str(d.get("updated_at", "")),
        )

    def has(self, run_id: str) -> bool:
        return any(p.run_id == run_id for p in self.parts)

    def kinds(self) -> list[str]:
        """The source kinds present, in the order they first arrived."""
        return list(dict.fromkeys(p.kind for p in self.parts))

    def parts_of(self, kind: str) -> list[Part]:
        return [p for p in self.parts if p.kind == kind]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def digest(self, kind: str | None = None) -> str:
        """A short hash of the parts (of ``kind``) the state holds: equal states name
        equal runs, so a redelivered trigger finds its run committed."""
        parts = self.parts if kind is None else tuple(self.parts_of(kind))
        text = "\x1f".join(p.run_id for p in parts)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def register(state: DatasetState, part: Part, now: dt.datetime) -> DatasetState:
    """``state`` with ``part`` registered (unchanged when it is registered already).

    A ``replace`` part drops every earlier part of its kind. Raises ValueError for an
    unknown mode or a part of another dataset's prefix.
    """
    if part.mode not in MODES:
        raise ValueError(f"mode {part.mode!r}: use one of {', '.join(MODES)}")
    if state.has(part.run_id):
        return state
    kept = tuple(p for p in state.parts if part.mode != REPLACE or p.kind != part.kind)
    return replace(
        state,
        version=state.version + 1,
        parts=(*kept, part),
        updated_at=now.astimezone(dt.UTC).isoformat(timespec="seconds"),
    )


@dataclass(frozen=True)
class Coalesce:
    """Whether a trigger for state ``version`` should score now (see :func:`decide`)."""

    score: bool
    wait_seconds: float = 0.0
    reason: str = ""


def decide(
    state: DatasetState,
    triggered_version: int,
    now: dt.datetime,
    quiet: dt.timedelta = dt.timedelta(0),
) -> Coalesce:
    """Parts arriving together (a split export) make one scoring run, not one per part.

    Each registration triggers scoring with the state's new version. A trigger whose
    version is older than the state's is superseded (the newer registration's trigger
    scores everything); the newest waits until the state has been quiet for ``quiet``.
    """
    if triggered_version < state.version:
        return Coalesce(
            False,
            reason=f"superseded: the state is at version {state.version}, "
            f"this trigger is for {triggered_version}; the newer trigger scores every part",
        )
    if state.updated_at and quiet > dt.timedelta(0):
        since = now - dt.datetime.fromisoformat(state.updated_at)
        if since < quiet:
            return Coalesce(True, wait_seconds=(quiet - since).total_seconds())
    return Coalesce(True)

"""The dataset state: registration, replacement, digests and coalescing."""

from __future__ import annotations

import datetime as dt

import pytest

from custseg.dataset.state import REPLACE, DatasetState, Part, decide, register

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def part(run_id: str, kind: str = "customers", mode: str = "append") -> Part:
    return Part(run_id, kind, f"clean/shop/{run_id}/_manifest.json", T0.isoformat(), 10, mode=mode)


def test_registration_appends_once_and_counts_versions() -> None:
    state = DatasetState("shop")
    state = register(state, part("r1"), T0)
    state = register(state, part("r2", "transactions"), T0)
    assert [p.run_id for p in state.parts] == ["r1", "r2"] and state.version == 2
    assert register(state, part("r1"), T0) is state  # a redelivered registration
    assert state.kinds() == ["customers", "transactions"]
    assert [p.run_id for p in state.parts_of("transactions")] == ["r2"]


def test_replace_drops_the_earlier_parts_of_its_kind_only() -> None:
    state = DatasetState("shop")
    for p in (part("r1"), part("r2"), part("o1", "transactions")):
        state = register(state, p, T0)
    state = register(state, part("r3", mode=REPLACE), T0)
    assert [p.run_id for p in state.parts] == ["o1", "r3"]
    with pytest.raises(ValueError, match="mode 'merge'"):
        register(state, part("r4", mode="merge"), T0)


def test_digest_names_the_parts_and_the_document_round_trips() -> None:
    a = register(register(DatasetState("shop"), part("r1"), T0), part("r2"), T0)
    b = register(register(DatasetState("shop"), part("r1"), T0), part("r3"), T0)
    assert a.digest() != b.digest() and a.digest("customers") == a.digest()
    assert DatasetState.from_dict(a.to_dict()) == a


def test_parts_arriving_together_make_one_run() -> None:
    state = DatasetState("shop")
    for i in range(3):
        state = register(state, part(f"r{i}"), T0)
    later = T0 + dt.timedelta(seconds=5)
    assert not decide(state, 1, later).score  # superseded by version 3
    assert "superseded" in decide(state, 2, later).reason
    assert decide(state, 3, later).score
    waiting = decide(state, 3, later, quiet=dt.timedelta(seconds=30))
    assert waiting.score and waiting.wait_seconds == 25

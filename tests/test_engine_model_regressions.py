"""Divergences the model-based test (``property_tests/test_engine_model.py``) found,
each replayed step by step from its shrunk failure on the in-memory and PostgreSQL
engines, which must give the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from reactive_entities import (
    Actor,
    ChangeEvent,
    Engine,
    InvalidArgumentError,
    StateValidationError,
    TransitionRecord,
    compose,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.testing.plugin import DictStorage

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@attrs.frozen
class Switch:
    """The state class of the shrunk failures."""

    on: bool
    count: int = 0
    tags: frozenset[str] = frozenset()
    note: str = ""


@pytest.fixture(params=["memory", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Each engine in turn, on a manual clock (PostgreSQL in this module's schema)."""
    clock = ManualClock(T0)
    if request.param == "memory":
        with compose.in_memory(clock=clock) as engine:
            yield engine
        return
    pg_dsn: str = request.getfixturevalue("pg_dsn")
    pg_schema: str = request.getfixturevalue("pg_schema")
    with compose.postgres(pg_dsn, schema=pg_schema, clock=clock) as engine:
        yield engine


def _rows(records: tuple[TransitionRecord, ...]) -> list[tuple[Any, ...]]:
    return [(r.field, r.from_value, r.to_value) for r in records]


def test_history_limit_above_the_row_count_returns_every_row(engine: Engine) -> None:
    """``history(limit=N)`` with fewer than N rows returns them all (the in-memory store
    sliced from ``len - N``, a negative index, and returned only the newest few)."""
    storage: DictStorage[Switch] = DictStorage()
    handle = engine.define_entity("switch", Switch, read=storage.read)
    entity_id = "history-limit"  # each test of this module uses its own entity
    storage.rows[entity_id] = Switch(on=False, tags=frozenset({""}))  # behind the engine
    handle.mutate(entity_id, storage.put(entity_id, Switch(on=False, tags=frozenset())))
    tags = frozenset({"", 'y\u2028"', "é7\u2028z'"})
    handle.mutate(entity_id, storage.put(entity_id, Switch(on=False, count=-154932, tags=tags)))
    engine.store.now()  # the shrunk run advanced the clock by zero here, twice

    every = handle.history(entity_id, field="tags")
    assert _rows(every) == [
        ("tags", [""], []),  # the first mutate saw the plugin's state: an update
        ("tags", [], ["", 'y\u2028"', "é7\u2028z'"]),
    ]
    for limit in (2, 3, 10):
        assert handle.history(entity_id, field="tags", limit=limit) == every
    assert handle.history(entity_id, field="tags", limit=1) == every[1:]
    assert len(handle.history(entity_id, limit=100)) == len(handle.history(entity_id))
    assert handle.transition_count(entity_id, "tags", window=timedelta(days=1)) == 2


def test_lone_surrogate_in_a_state_or_an_id_is_invalid_everywhere(engine: Engine) -> None:
    """A lone surrogate (no UTF-8 form) in a state's text, an entity id, an actor or a run
    id is rejected alike by every engine before anything is recorded (the in-memory engine
    recorded it while PostgreSQL failed with ``StoreError`` after the plugin's write)."""
    storage: DictStorage[Switch] = DictStorage()
    handle = engine.define_entity("surrogates", Switch, read=storage.read)
    events: list[ChangeEvent] = []
    engine.subscribe(events.append)
    with pytest.raises(StateValidationError, match="note: text contains a lone surrogate"):
        handle.mutate("A", lambda: {"on": False, "count": 0, "tags": [], "note": "\udc80"})
    with pytest.raises(StateValidationError, match="lone surrogate"):
        handle.mutate("A", lambda: Switch(on=True, tags=frozenset({"ok", "b\ud800d"})))
    ran: list[str] = []

    def apply() -> Switch:
        ran.append("apply")
        return Switch(on=True)

    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        handle.mutate("lone\udc80surrogate", apply)
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        handle.remove("lone\udc80surrogate", apply)
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        handle.mutate("A", apply, run_id="RUN\udc80")
    with pytest.raises(InvalidArgumentError, match="actor id must not contain a lone surrogate"):
        handle.mutate("A", apply, actor=Actor.user("user\udc80"))
    with pytest.raises(InvalidArgumentError, match="actor name must not contain a lone"):
        Actor.service("svc-1", name="name\udc80")
    assert ran == []
    assert events == []
    assert handle.history("A") == ()
    handle.mutate("Ωμέγα", storage.put("Ωμέγα", Switch(on=True, note="é😀")))  # real unicode
    assert [r.to_value for r in handle.history("Ωμέγα", field="note")] == ["é😀"]

"""SPEC §12 — bad input, row by row, and §13.2/§13.5 on error messages and ids."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from reactive_entities import (
    ChangeEvent,
    DefinitionError,
    Engine,
    EngineClosedError,
    EntityHandle,
    InvalidArgumentError,
    InvalidReadError,
    MissingStateError,
    ReactiveEntitiesError,
    StateValidationError,
    StoreError,
    UnknownFieldError,
    UnknownKindError,
    compose,
)
from reactive_entities.adapters.memory import InMemoryEntityStore, ManualClock
from reactive_entities.adapters.memory.store import MemoryTransaction
from reactive_entities.domain.events import Plan
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.plugin import DictStorage

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class FlakyStore(InMemoryEntityStore):
    """A memory store whose transactions fail at the step ``down`` names (an outage)."""

    down: str | None = None

    def begin(self, connection: Any = None) -> MemoryTransaction:
        return FlakyTransaction(self)


class FlakyTransaction(MemoryTransaction):
    """A memory transaction that fails ``lock``, ``record`` or ``commit`` on demand; a
    failed commit still ends the transaction, as the port asks."""

    def __init__(self, store: FlakyStore) -> None:
        super().__init__(store)
        self.flaky = store

    def _fail_at(self, step: str) -> None:
        if self.flaky.down == step:
            raise ConnectionRefusedError("store unreachable")

    def lock(self, kind: str, entity_id: str) -> datetime:
        self._fail_at("lock")
        return super().lock(kind, entity_id)

    def record(self, plan: Plan) -> datetime:
        self._fail_at("record")
        return super().record(plan)

    def commit(self, then: Callable[[], None] | None = None) -> None:
        try:
            self._fail_at("commit")
        except ConnectionRefusedError:
            self.rollback()
            raise
        super().commit(then)


@attrs.define
class World:
    """An engine over a flaky store with the incident kind and an event log."""

    engine: Engine
    handle: EntityHandle[Incident]
    storage: DictStorage[Incident]
    store: FlakyStore
    events: list[ChangeEvent]


@pytest.fixture
def world() -> Iterator[World]:
    """The world."""
    store = FlakyStore(ManualClock(T0), lock_timeout=timedelta(seconds=1))
    with compose.in_memory(store=store) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        yield World(engine, handle, storage, store, events)


BAD_IDS: list[object] = ["", "   ", "\t\n", None, 5, b"inc", ["inc"], "nul\x00byte"]

HANDLE_CALLS: dict[str, Callable[[EntityHandle[Incident], Any], object]] = {
    "mutate": lambda h, i: h.mutate(i, lambda: Incident("open", "low")),
    "remove": lambda h, i: h.remove(i, lambda: None),
    "get": lambda h, i: h.get(i),
    "get_many": lambda h, i: h.get_many([i]),
    "in_state_since": lambda h, i: h.in_state_since(i, "status"),
    "in_state_for": lambda h, i: h.in_state_for(i, "status"),
    "transition_count": lambda h, i: h.transition_count(i, "status", window=timedelta(1)),
    "value_at": lambda h, i: h.value_at(i, "status", T0),
    "history": lambda h, i: h.history(i),
}


@pytest.mark.parametrize("method", sorted(HANDLE_CALLS))
@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
def test_spec_12_bad_ids_in_every_method(world: World, method: str, bad_id: object) -> None:
    """SPEC §12/§13.5: an empty, blank or non-str id raises InvalidArgumentError everywhere."""
    with pytest.raises(InvalidArgumentError, match="entity id"):
        HANDLE_CALLS[method](world.handle, bad_id)
    assert world.store.changes_recorded == 0
    assert world.storage.writes == 0


@pytest.mark.parametrize("apply", [None, "apply", 42, Incident("open", "low")], ids=repr)
def test_spec_12_non_callable_apply(world: World, apply: object) -> None:
    """SPEC §12: a non-callable apply raises InvalidArgumentError; nothing else happens."""
    with pytest.raises(InvalidArgumentError, match="apply"):
        world.handle.mutate("inc-1", apply)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="apply"):
        world.handle.remove("inc-1", apply)  # type: ignore[arg-type]
    assert world.store.changes_recorded == 0


@pytest.mark.parametrize(
    "window", [timedelta(0), timedelta(seconds=-1), 0, 60, 60.0, None, "1m"], ids=repr
)
def test_spec_12_window_must_be_a_positive_timedelta(world: World, window: object) -> None:
    """SPEC §12/§13.5: 0, negatives, int, float and None are rejected."""
    with pytest.raises(InvalidArgumentError, match="window"):
        world.handle.transition_count("inc-1", "status", window=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("actor", ["user", {"type": "user"}, 1], ids=repr)
def test_bad_actor_is_rejected(world: World, actor: object) -> None:
    """An actor that is not an Actor is rejected before anything happens."""
    with pytest.raises(InvalidArgumentError, match="actor"):
        world.handle.mutate("inc-1", lambda: Incident("open", "low"), actor=actor)  # type: ignore[arg-type]
    assert world.storage.writes == 0


@pytest.mark.parametrize("run_id", ["", "  ", 5], ids=repr)
def test_bad_run_id_is_rejected(world: World, run_id: object) -> None:
    """A run_id must be a non-empty str or None."""
    with pytest.raises(InvalidArgumentError, match="run_id"):
        world.handle.mutate("inc-1", lambda: Incident("open", "low"), run_id=run_id)  # type: ignore[arg-type]


def test_spec_12_table_definition_rows(world: World) -> None:
    """SPEC §12: the definition rows of the table, each with its error class."""
    for kind in ("", " ", "a:b", "x" * 65):
        with pytest.raises(DefinitionError):
            world.engine.define_entity(kind, Incident, read=lambda ids: {})
    with pytest.raises(DefinitionError):
        world.engine.define_entity("incident", Incident, read=lambda ids: {})
    with pytest.raises(InvalidReadError):
        world.engine.define_entity("x", Incident, read=None)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"\(got dict\)"):
        world.engine.define_entity("x", dict, read=lambda ids: {})
    with pytest.raises(UnknownKindError):
        world.engine.handle("x")
    with pytest.raises(UnknownFieldError):
        world.engine.define_entity("x", Incident, read=lambda ids: {}, sensitive=["pin"])
    with pytest.raises(UnknownFieldError):
        world.handle.history("inc-1", field="pin")
    assert world.engine.kinds() == ("incident",)


def test_spec_12_invalid_state_and_none(world: World) -> None:
    """SPEC §12: invalid state / NaN / wrong type → StateValidationError; None → Missing."""
    for bad in ({"status": "nope", "severity": "low"}, {"status": float("nan")}, 3.5):
        with pytest.raises(StateValidationError):
            world.handle.mutate("inc-1", lambda bad=bad: bad)  # type: ignore[misc]
    with pytest.raises(MissingStateError):
        world.handle.mutate("inc-1", lambda: None)
    assert world.store.changes_recorded == 0
    assert world.events == []


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("lock", "could not lock incident:inc-1"),
        ("record", "could not record a change of incident:inc-1"),
        ("commit", "could not commit 1 change"),
    ],
)
def test_spec_12_store_unreachable(world: World, step: str, message: str) -> None:
    """SPEC §12: store unreachable → StoreError with the cause, nothing emitted, then recovery."""
    world.store.down = step
    with pytest.raises(StoreError, match=message) as caught:
        world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert world.events == []
    assert world.store.changes_recorded == 0
    world.store.down = None
    world.storage.rows.clear()
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    assert [e.op for e in world.events] == ["create"]


@pytest.mark.parametrize("step", ["lock", "record", "commit"])
def test_store_failure_releases_the_entity_lock(world: World, step: str) -> None:
    """After a failed lock, record or commit the entity is free again (store and thread)."""
    world.store.down = step
    with pytest.raises(StoreError):
        world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    world.store.down = None
    with world.store.begin() as tx:  # a held lock would time out (the fixture's 1 s)
        assert tx.lock("incident", "inc-1") == world.store.now()
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "low")))
    assert [e.entity_id for e in world.events] == ["inc-1"]


@pytest.mark.parametrize(
    "entity_id",
    ["quote'); DROP TABLE incidents; --", 'dq"', "ünïcödé 日本 🎉", "a:b:c", "x" * 10_240],
)
def test_spec_12_odd_ids_round_trip(world: World, entity_id: str) -> None:
    """SPEC §12: ids with quotes, SQL, unicode or 10 KB are stored and read back verbatim."""
    world.handle.mutate(entity_id, world.storage.put(entity_id, Incident("open", "low", entity_id)))
    rows = world.handle.history(entity_id)
    assert {r.entity_id for r in rows} == {entity_id}
    assert world.events[-1].entity_id == entity_id
    assert world.handle.get(entity_id) == Incident("open", "low", entity_id)


def test_errors_are_one_family_and_builtins() -> None:
    """DESIGN §5: every error derives from ReactiveEntitiesError and a fitting built-in."""
    pairs = [
        (DefinitionError, ValueError),
        (InvalidReadError, TypeError),
        (UnknownKindError, LookupError),
        (UnknownFieldError, LookupError),
        (InvalidArgumentError, ValueError),
        (StateValidationError, ValueError),
        (StoreError, RuntimeError),
        (EngineClosedError, RuntimeError),
    ]
    for cls, builtin in pairs:
        assert issubclass(cls, ReactiveEntitiesError)
        assert issubclass(cls, builtin)
    assert issubclass(MissingStateError, ReactiveEntitiesError)


def test_closed_engine_refuses_work(world: World) -> None:
    """After close(), calls raise EngineClosedError; close() again is harmless."""
    world.engine.close()
    world.engine.close()
    assert world.engine.closed
    with pytest.raises(EngineClosedError):
        world.handle.mutate("inc-1", lambda: Incident("open", "low"))
    with pytest.raises(EngineClosedError):
        world.handle.get("inc-1")
    with pytest.raises(EngineClosedError):
        world.engine.define_entity("other", Incident, read=lambda ids: {})

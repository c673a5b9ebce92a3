"""SPEC §5–§7 — the mutate/remove pipeline, the change event and the transition rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import attrs
import pytest

from reactive_entities import (
    ABSENT,
    SYSTEM_ACTOR,
    Actor,
    ChangeEvent,
    Engine,
    EntityHandle,
    MissingStateError,
    StateValidationError,
    compose,
)
from reactive_entities.adapters.memory import InMemoryEntityStore, ManualClock
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.plugin import DictStorage

T0 = datetime(2024, 1, 1, tzinfo=UTC)
V = TypeVar("V")


def _logged(log: list[Any], entry: Any, value: V) -> V:
    """Append ``entry`` to ``log`` and return ``value`` (to observe calls in lambdas)."""
    log.append(entry)
    return value


@attrs.define
class World:
    """One engine with the incident kind, its storage, clock and received events."""

    engine: Engine
    handle: EntityHandle[Incident]
    storage: DictStorage[Incident]
    clock: ManualClock
    store: InMemoryEntityStore
    events: list[ChangeEvent]


@pytest.fixture
def world() -> Iterator[World]:
    """An in-memory engine on a manual clock with a collecting subscriber."""
    clock = ManualClock(T0)
    store = InMemoryEntityStore(clock)
    with compose.in_memory(clock=clock, store=store) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        yield World(engine, handle, storage, clock, store, events)


def test_spec_5_create_returns_state_records_rows_and_emits(world: World) -> None:
    """SPEC §5: a create returns the validated state, records one row per field, emits once."""
    state = world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low", "t")))
    assert state == Incident("open", "low", "t")
    assert world.store.changes_recorded == 1
    rows = world.handle.history("inc-1")
    assert [r.field for r in rows] == ["severity", "status", "system_ids", "title", "token"]
    assert len(world.events) == 1
    assert world.events[0].op == "create"


def test_spec_5_update_records_only_changed_fields(world: World) -> None:
    """SPEC §3/§5: an update records rows for the fields that changed, in sorted order."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    world.clock.advance(timedelta(seconds=1))
    world.handle.mutate("inc-1", world.storage.patch("inc-1", status="resolved", title="x"))
    event = world.events[-1]
    assert event.op == "update"
    assert event.changed_fields == ("status", "title")
    assert event.delta == {"status": "resolved", "title": "x"}
    rows = world.handle.history("inc-1", since=event.occurred_at)
    assert [(r.field, r.from_value, r.to_value) for r in rows] == [
        ("status", "open", "resolved"),
        ("title", "", "x"),
    ]


def test_spec_5_no_op_returns_next_without_store_or_event(world: World) -> None:
    """SPEC §5.6: an unchanged write records nothing, emits nothing, and still returns next."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    same = world.handle.mutate("inc-1", lambda: {"status": "open", "severity": "low"})
    assert same == Incident("open", "low")
    assert world.store.changes_recorded == 1
    assert len(world.events) == 1


def test_spec_5_apply_may_return_a_mapping(world: World) -> None:
    """SPEC §2: a mapping from apply is structured by the converter (defaults filled)."""
    state = world.handle.mutate("inc-1", lambda: {"status": "open", "severity": "high"})
    assert state == Incident("open", "high", "", "", ())
    assert world.events[0].next == {
        "status": "open",
        "severity": "high",
        "title": "",
        "token": "****",
        "system_ids": [],
    }


def test_spec_5_read_happens_before_apply(world: World) -> None:
    """SPEC §5.3: prev is read before the plugin's write, so the diff sees the old value."""
    order: list[str] = []
    handle = world.engine.define_entity(
        "ordered",
        Incident,
        read=lambda ids: _logged(order, "read", world.storage.read(ids)),
    )
    world.storage.rows["x"] = Incident("open", "low")

    def apply() -> Incident:
        order.append("apply")
        return world.storage.patch("x", status="resolved")()

    handle.mutate("x", apply)
    assert order == ["read", "apply"]
    assert handle.history("x")[0].from_value == "open"


def test_spec_5_read_error_propagates_and_apply_is_not_called(world: World) -> None:
    """SPEC §5.3: if read raises, that error propagates and apply never runs."""
    called: list[int] = []

    def read(ids: Any) -> dict[str, Incident]:
        raise ConnectionError("plugin storage down")

    handle = world.engine.define_entity("broken", Incident, read=read)
    with pytest.raises(ConnectionError, match="plugin storage down"):
        handle.mutate("x", lambda: _logged(called, 1, Incident("open", "low")))
    assert called == []
    assert world.store.changes_recorded == 0


def test_spec_5_read_of_wrong_type_raises_before_apply(world: World) -> None:
    """SPEC §5.3: read returning a value of the wrong type → StateValidationError, no apply."""
    called: list[int] = []
    handle = world.engine.define_entity("wrong", Incident, read=lambda ids: {"x": 42})  # type: ignore[arg-type]
    with pytest.raises(StateValidationError, match="wrong:x"):
        handle.mutate("x", lambda: _logged(called, 1, Incident("open", "low")))
    assert called == []


def test_spec_5_apply_error_propagates_unchanged(world: World) -> None:
    """SPEC §5.4: an exception from apply propagates as is; nothing recorded or emitted."""
    error = KeyError("plugin says no")

    def apply() -> Incident:
        raise error

    with pytest.raises(KeyError) as caught:
        world.handle.mutate("inc-1", apply)
    assert caught.value is error
    assert world.store.changes_recorded == 0
    assert world.events == []


def test_spec_5_apply_returning_none_is_missing_state(world: World) -> None:
    """SPEC §5.5: mutate's apply returning None → MissingStateError naming kind and id."""
    with pytest.raises(MissingStateError, match="incident:inc-1"):
        world.handle.mutate("inc-1", lambda: None)
    assert world.store.changes_recorded == 0
    assert world.events == []


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "bogus", "severity": "low"},
        {"status": "open"},
        {"status": "open", "severity": "low", "unknown": 1},
        {"status": "open", "severity": "low", "title": 5},
        "a string",
        Incident("open", "low", title=float("nan")),  # type: ignore[arg-type]
    ],
)
def test_spec_5_invalid_state_raises_and_records_nothing(world: World, bad: object) -> None:
    """SPEC §5.5: anything that does not validate → StateValidationError, nothing recorded."""
    with pytest.raises(StateValidationError) as caught:
        world.handle.mutate("inc-1", lambda: bad)  # type: ignore[arg-type,return-value]
    assert caught.value.kind == "incident"
    assert caught.value.entity_id == "inc-1"
    assert caught.value.field_errors
    assert world.store.changes_recorded == 0
    assert world.events == []


def test_spec_5_validation_lists_each_bad_field(world: World) -> None:
    """SPEC §2: StateValidationError lists each bad field with a reason."""
    with pytest.raises(StateValidationError) as caught:
        world.handle.mutate("inc-1", lambda: {"status": "bogus", "severity": 3, "title": 1})
    assert set(caught.value.field_errors) >= {"status", "severity", "title"}


def test_spec_5_nan_is_invalid_in_any_position(world: World) -> None:
    """SPEC §2: non-finite floats are invalid, even nested."""
    from reactive_entities.testing.examples import Satellite

    sats = world.engine.define_entity("sat", Satellite, read=lambda ids: {})
    with pytest.raises(StateValidationError, match="telemetry"):
        sats.mutate("s-1", lambda: Satellite("nominal", "eu", None, {"temp": float("inf")}))


def test_spec_5_remove_records_a_remove_change_without_rows(world: World) -> None:
    """SPEC §5/§7: remove records an op=remove change with no rows and returns None."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    rows_before = len(world.handle.history("inc-1"))
    result = world.handle.remove("inc-1", world.storage.delete("inc-1"))  # type: ignore[func-returns-value]
    assert result is None
    assert len(world.handle.history("inc-1")) == rows_before
    event = world.events[-1]
    assert event.op == "remove"
    assert event.next is None
    assert event.delta == {}
    assert event.changed_fields == ("severity", "status", "system_ids", "title", "token")
    assert event.prev is not None
    assert event.prev["status"] == "open"
    assert world.store.latest_change("incident", "inc-1").op == "remove"  # type: ignore[union-attr]


def test_spec_5_remove_of_absent_entity_calls_apply_records_nothing(world: World) -> None:
    """SPEC §5: remove of an absent entity calls apply and records nothing."""
    called: list[int] = []
    world.handle.remove("ghost", lambda: called.append(1))
    assert called == [1]
    assert world.store.changes_recorded == 0
    assert world.events == []


def test_spec_5_remove_ignores_applys_return_value(world: World) -> None:
    """SPEC §5.5: remove ignores what apply returns (even an invalid value)."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    world.handle.remove("inc-1", lambda: {"not": "a state"})
    assert world.events[-1].op == "remove"


def test_spec_5_plugin_write_is_never_rolled_back(world: World) -> None:
    """SPEC §5: a write whose state fails validation stays in the plugin's storage."""

    def apply() -> dict[str, str]:
        world.storage.rows["inc-1"] = Incident("open", "low")
        return {"status": "bogus", "severity": "low"}

    with pytest.raises(StateValidationError):
        world.handle.mutate("inc-1", apply)
    assert world.storage.rows["inc-1"] == Incident("open", "low")


def test_spec_5_returned_state_is_not_masked(world: World) -> None:
    """SPEC §4: the value mutate returns is never masked."""
    world.engine.secrets.register("run-1", ["hunter2-secret"])
    state = world.handle.mutate(
        "inc-1",
        world.storage.put("inc-1", Incident("open", "low", "pw hunter2-secret", "tok")),
        run_id="run-1",
    )
    assert state.title == "pw hunter2-secret"
    assert state.token == "tok"
    assert world.events[0].next["title"] == "pw ****"  # type: ignore[index]


def test_spec_5_unknown_run_masks_nothing_but_sensitive(world: World) -> None:
    """SPEC §4: a run without secrets masks only sensitive fields."""
    world.handle.mutate(
        "inc-1", world.storage.put("inc-1", Incident("open", "low", "plain", "tok")), run_id="r"
    )
    assert world.events[0].next["title"] == "plain"  # type: ignore[index]
    assert world.events[0].next["token"] == "****"  # type: ignore[index]
    assert world.events[0].run_id == "r"


# -- §6 the change event -------------------------------------------------------------------


def test_spec_6_event_fields(world: World) -> None:
    """SPEC §6: the event carries kind, id, op, prev, next, delta, fields, actor, run, time, id."""
    actor = Actor.user("u-1", "Ada")
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")), actor=actor)
    world.clock.advance(timedelta(seconds=5))
    world.handle.mutate("inc-1", world.storage.patch("inc-1", severity="high"), run_id="run-9")
    created, updated = world.events
    assert (created.kind, created.entity_id, created.op) == ("incident", "inc-1", "create")
    assert created.prev is None
    assert created.actor == actor
    assert created.run_id is None
    assert created.occurred_at == T0
    assert updated.actor == SYSTEM_ACTOR
    assert updated.run_id == "run-9"
    assert updated.prev == created.next
    assert updated.occurred_at == T0 + timedelta(seconds=5)
    assert updated.occurred_at.tzinfo is not None
    assert updated.occurred_at.utcoffset() == timedelta(0)


def test_spec_6_change_ids_are_unique_uuid4(world: World) -> None:
    """SPEC §6: change_id is a UUID4 string, unique per recorded change."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    for status in ("investigating", "resolved", "open"):
        world.handle.mutate("inc-1", world.storage.patch("inc-1", status=status))
    ids = [e.change_id for e in world.events]
    assert len(set(ids)) == 4
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_spec_6_event_time_equals_row_time(world: World) -> None:
    """SPEC §5.8: the event's occurred_at equals the rows' timestamp and ids match."""
    world.clock.advance(timedelta(minutes=3))
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    event = world.events[0]
    rows = world.handle.history("inc-1")
    assert {r.transitioned_at for r in rows} == {event.occurred_at}
    assert {r.change_id for r in rows} == {event.change_id}


def test_spec_6_event_does_not_alias_returned_value(world: World) -> None:
    """SPEC §6: the event's documents are not the state returned to the caller."""

    @attrs.frozen
    class Bag:
        items: list[str]

    bags: DictStorage[Bag] = DictStorage()
    handle = world.engine.define_entity("bag", Bag, read=bags.read)
    state = handle.mutate("b", bags.put("b", Bag(["a"])))
    state.items.append("mutated-after")
    assert world.events[-1].next == {"items": ["a"]}
    assert handle.history("b")[0].to_value == ["a"]


def test_spec_6_event_serializes_with_z(world: World) -> None:
    """SPEC §6: occurred_at serializes as ISO-8601 with a Z."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    data = world.events[0].to_dict()
    assert data["occurred_at"] == "2024-01-01T00:00:00.000000Z"
    assert data["actor"] == {"type": "system", "id": "system", "name": "System"}


# -- §7 transition rows --------------------------------------------------------------------


def test_spec_7_rows_in_changed_fields_order_and_from_values(world: World) -> None:
    """SPEC §7: one row per changed field, in changed_fields order; ABSENT for a create."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low")))
    created = world.handle.history("inc-1")
    assert [r.field for r in created] == list(world.events[0].changed_fields)
    assert all(r.from_value is ABSENT for r in created)
    assert not ABSENT
    assert repr(ABSENT) == "ABSENT"
    world.handle.mutate("inc-1", world.storage.patch("inc-1", title="now set"))
    (row,) = world.handle.history("inc-1", field="title")[1:]
    assert row.from_value == ""
    assert row.to_value == "now set"


def test_spec_7_null_from_value_is_none_not_absent(world: World) -> None:
    """SPEC §7: from_value is None when the field was null (not ABSENT)."""
    from reactive_entities.testing.examples import Satellite

    sats: DictStorage[Satellite] = DictStorage()
    handle = world.engine.define_entity("sat", Satellite, read=sats.read)
    handle.mutate("s", sats.put("s", Satellite("nominal", "eu")))
    handle.mutate("s", sats.patch("s", launched_at=T0))
    created, updated = handle.history("s", field="launched_at")
    assert created.from_value is ABSENT
    assert created.to_value is None
    assert updated.from_value is None
    assert updated.to_value == "2024-01-01T00:00:00.000000Z"


def test_spec_7_masked_flag(world: World) -> None:
    """SPEC §13.3: masked is true when masking changed a row's from or to value."""
    world.engine.secrets.register("run-1", ["swordfish"])
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low", "swordfish")))
    world.clock.advance(timedelta(seconds=1))
    world.handle.mutate(
        "inc-1", world.storage.patch("inc-1", title="x", status="resolved"), run_id="run-1"
    )
    rows = {r.field: r for r in world.handle.history("inc-1", since=world.events[-1].occurred_at)}
    assert rows["title"].from_value == "****"
    assert rows["title"].masked is True
    assert rows["status"].masked is False


def test_spec_4_secret_to_secret_is_a_recorded_change(world: World) -> None:
    """SPEC §4: a change from one secret to another is recorded (both sides ****)."""
    world.engine.secrets.register("run-1", ["first-secret", "second-secret"])
    world.handle.mutate(
        "inc-1", world.storage.put("inc-1", Incident("open", "low", "first-secret")), run_id="run-1"
    )
    world.handle.mutate(
        "inc-1", world.storage.patch("inc-1", title="second-secret"), run_id="run-1"
    )
    assert len(world.events) == 2
    row = world.handle.history("inc-1", field="title")[-1]
    assert (row.from_value, row.to_value, row.masked) == ("****", "****", True)


def test_spec_4_sensitive_field_change_is_recorded_masked(world: World) -> None:
    """SPEC §4/§13.4: a sensitive field is replaced whole by **** whatever its length."""
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("open", "low", token="a")))
    world.handle.mutate("inc-1", world.storage.patch("inc-1", token="b"))
    event = world.events[-1]
    assert event.changed_fields == ("token",)
    assert event.delta == {"token": "****"}
    assert event.prev["token"] == "****"  # type: ignore[index]
    row = world.handle.history("inc-1", field="token")[-1]
    assert (row.from_value, row.to_value, row.masked) == ("****", "****", True)


def test_spec_13_8_same_instant_other_zone_is_a_no_op(world: World) -> None:
    """SPEC §13.8: a datetime equal as an instant in another zone is structurally equal."""
    from reactive_entities.testing.examples import Satellite

    sats: DictStorage[Satellite] = DictStorage()
    handle = world.engine.define_entity("sat", Satellite, read=sats.read)
    handle.mutate("s", sats.put("s", Satellite("nominal", "eu", T0)))
    plus_two = T0.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    handle.mutate("s", sats.put("s", Satellite("nominal", "eu", plus_two)))
    assert [e.op for e in world.events] == ["create"]

"""The asyncio twins of the blocking engine's behaviour tests that tests/test_aio_*.py
did not already assert one for (docs/aio-test-map.md maps every blocking test to its
twin): each test here is named as its blocking original and makes the same assertions,
awaited — on the in-memory store where the original ran on it only, on both stores
(``aio_backend``) where the original ran on both."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import traceback
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reactive_entities import (
    ABSENT,
    SYSTEM_ACTOR,
    Actor,
    ChangeEvent,
    DefinitionError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidReadError,
    MissingStateError,
    NonReactiveDeclaration,
    StateValidationError,
    StoreError,
    TransitionRecord,
    UnknownFieldError,
    UnknownKindError,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.adapters.memory.async_feed import AsyncMemoryFeed
from reactive_entities.adapters.memory.async_store import (
    AsyncInMemoryEntityStore,
    AsyncMemoryTransaction,
)
from reactive_entities.adapters.memory.feed import MemoryFeed
from reactive_entities.aio import (
    AsyncEngine,
    AsyncEntityHandle,
    compose,
    remove_through,
    write_through,
)
from reactive_entities.domain.events import Plan
from reactive_entities.domain.secret_set import MIN_SECRET_LENGTH
from reactive_entities.testing import AsyncChangeFeedContract, AsyncEntityStoreContract
from reactive_entities.testing.aio_world import fresh_id, open_engine, open_world
from reactive_entities.testing.async_feed_contract import AsyncFeedWorld, OpenWorld
from reactive_entities.testing.async_store_contract import OpenStore
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.examples import Incident, Satellite, Status
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.secrecy import (
    ALPHABET,
    LOCALS_ALPHABET,
    PLACEHOLDER,
    incidents_and_secrets,
    invalid_incident_states,
    leaks,
    texts,
    without_generated,
)

Backend = tuple[str, str | None, str | None]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
OPEN = Incident("open", "low")


def _define_incidents(
    engine: AsyncEngine, storage: DictStorage[Incident] | None = None
) -> tuple[AsyncEntityHandle[Incident], DictStorage[Incident]]:
    """``testing.examples.define_incidents`` for the asyncio engine."""
    storage = storage if storage is not None else DictStorage()
    return engine.define_entity("incident", Incident, read=storage.read, sensitive=("token",)), (
        storage
    )


@attrs.define
class World:
    """An in-memory asyncio engine on a manual clock: incident, storage, store, events."""

    engine: AsyncEngine
    handle: AsyncEntityHandle[Incident]
    storage: DictStorage[Incident]
    clock: ManualClock
    store: AsyncInMemoryEntityStore
    events: list[ChangeEvent]


@asynccontextmanager
async def memory_world(store: AsyncInMemoryEntityStore | None = None) -> AsyncIterator[World]:
    """The blocking tests' ``world`` fixture: a manual clock and a collecting subscriber."""
    clock = ManualClock(T0)
    store = store if store is not None else AsyncInMemoryEntityStore(clock)
    async with compose.in_memory(clock=clock, store=store) as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        yield World(engine, handle, storage, clock, store, events)


# == test_engine_mutate ===================================================================


async def test_spec_5_update_records_only_changed_fields() -> None:
    """SPEC §3/§5: an update records rows for the fields that changed, in sorted order."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        world.clock.advance(timedelta(seconds=1))
        await world.handle.mutate(
            "inc-1", world.storage.patch("inc-1", status="resolved", title="x")
        )
        event = world.events[-1]
        assert event.op == "update"
        assert event.changed_fields == ("status", "title")
        assert event.delta == {"status": "resolved", "title": "x"}
        rows = await world.handle.history("inc-1", since=event.occurred_at)
        assert [(r.field, r.from_value, r.to_value) for r in rows] == [
            ("status", "open", "resolved"),
            ("title", "", "x"),
        ]


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
async def test_spec_5_invalid_state_raises_and_records_nothing(bad: object) -> None:
    """SPEC §5.5: anything that does not validate → StateValidationError, nothing recorded."""
    async with memory_world() as world:
        with pytest.raises(StateValidationError) as caught:
            await world.handle.mutate("inc-1", lambda: bad)  # type: ignore[arg-type,return-value]
        assert caught.value.kind == "incident"
        assert caught.value.entity_id == "inc-1"
        assert caught.value.field_errors
        assert world.store.changes_recorded == 0
        assert world.events == []


async def test_spec_5_nan_is_invalid_in_any_position() -> None:
    """SPEC §2: non-finite floats are invalid, even nested."""
    async with memory_world() as world:
        sats = world.engine.define_entity("sat", Satellite, read=lambda ids: {})
        with pytest.raises(StateValidationError, match="telemetry"):
            await sats.mutate(
                "s-1", lambda: Satellite("nominal", "eu", None, {"temp": float("inf")})
            )


async def test_spec_5_remove_records_a_remove_change_without_rows() -> None:
    """SPEC §5/§7: remove records an op=remove change with no rows and returns None."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        rows_before = len(await world.handle.history("inc-1"))
        result = await world.handle.remove("inc-1", world.storage.delete("inc-1"))  # type: ignore[func-returns-value]
        assert result is None
        assert len(await world.handle.history("inc-1")) == rows_before
        event = world.events[-1]
        assert event.op == "remove"
        assert event.next is None
        assert event.delta == {}
        assert event.changed_fields == ("severity", "status", "system_ids", "title", "token")
        assert event.prev is not None
        assert event.prev["status"] == "open"
        latest = await world.store.latest_change("incident", "inc-1")
        assert latest is not None
        assert latest.op == "remove"


async def test_spec_5_remove_of_absent_entity_calls_apply_records_nothing() -> None:
    """SPEC §5: remove of an absent entity calls apply and records nothing."""
    async with memory_world() as world:
        called: list[int] = []
        await world.handle.remove("ghost", lambda: called.append(1))
        assert called == [1]
        assert world.store.changes_recorded == 0
        assert world.events == []


async def test_spec_5_plugin_write_is_never_rolled_back() -> None:
    """SPEC §5: a write whose state fails validation stays in the plugin's storage."""
    async with memory_world() as world:

        def apply() -> dict[str, str]:
            world.storage.rows["inc-1"] = OPEN
            return {"status": "bogus", "severity": "low"}

        with pytest.raises(StateValidationError):
            await world.handle.mutate("inc-1", apply)
        assert world.storage.rows["inc-1"] == OPEN


async def test_spec_5_unknown_run_masks_nothing_but_sensitive() -> None:
    """SPEC §4: a run without secrets masks only sensitive fields."""
    async with memory_world() as world:
        state = Incident("open", "low", "plain", "tok")
        await world.handle.mutate("inc-1", world.storage.put("inc-1", state), run_id="r")
        assert world.events[0].next is not None
        assert world.events[0].next["title"] == "plain"
        assert world.events[0].next["token"] == "****"
        assert world.events[0].run_id == "r"


async def test_spec_6_event_fields() -> None:
    """SPEC §6: the event carries kind, id, op, prev, next, delta, fields, actor, run, time, id."""
    async with memory_world() as world:
        actor = Actor.user("u-1", "Ada")
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN), actor=actor)
        world.clock.advance(timedelta(seconds=5))
        await world.handle.mutate(
            "inc-1", world.storage.patch("inc-1", severity="high"), run_id="run-9"
        )
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


async def test_spec_6_change_ids_are_unique_uuid4() -> None:
    """SPEC §6: change_id is a UUID4 string, unique per recorded change."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        for status in ("investigating", "resolved", "open"):
            await world.handle.mutate("inc-1", world.storage.patch("inc-1", status=status))
        ids = [e.change_id for e in world.events]
        assert len(set(ids)) == 4
        assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


async def test_spec_6_event_time_equals_row_time() -> None:
    """SPEC §5.8: the event's occurred_at equals the rows' timestamp and ids match."""
    async with memory_world() as world:
        world.clock.advance(timedelta(minutes=3))
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        event = world.events[0]
        rows = await world.handle.history("inc-1")
        assert {r.transitioned_at for r in rows} == {event.occurred_at}
        assert {r.change_id for r in rows} == {event.change_id}


@attrs.frozen
class Bag:
    """A state holding a mutable list."""

    items: list[str]


async def test_spec_6_event_does_not_alias_returned_value() -> None:
    """SPEC §6: the event's documents are not the state returned to the caller."""
    async with memory_world() as world:
        bags: DictStorage[Bag] = DictStorage()
        handle = world.engine.define_entity("bag", Bag, read=bags.read)
        state = await handle.mutate("b", bags.put("b", Bag(["a"])))
        state.items.append("mutated-after")
        assert world.events[-1].next == {"items": ["a"]}
        assert (await handle.history("b"))[0].to_value == ["a"]


async def test_spec_6_event_serializes_with_z() -> None:
    """SPEC §6: occurred_at serializes as ISO-8601 with a Z."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        data = world.events[0].to_dict()
        assert data["occurred_at"] == "2024-01-01T00:00:00.000000Z"
        assert data["actor"] == {"type": "system", "id": "system", "name": "System"}


async def test_spec_7_rows_in_changed_fields_order_and_from_values() -> None:
    """SPEC §7: one row per changed field, in changed_fields order; ABSENT for a create."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        created = await world.handle.history("inc-1")
        assert [r.field for r in created] == list(world.events[0].changed_fields)
        assert all(r.from_value is ABSENT for r in created)
        assert not ABSENT
        assert repr(ABSENT) == "ABSENT"
        await world.handle.mutate("inc-1", world.storage.patch("inc-1", title="now set"))
        (row,) = (await world.handle.history("inc-1", field="title"))[1:]
        assert row.from_value == ""
        assert row.to_value == "now set"


async def test_spec_7_null_from_value_is_none_not_absent() -> None:
    """SPEC §7: from_value is None when the field was null (not ABSENT)."""
    async with memory_world() as world:
        sats: DictStorage[Satellite] = DictStorage()
        handle = world.engine.define_entity("sat", Satellite, read=sats.read)
        await handle.mutate("s", sats.put("s", Satellite("nominal", "eu")))
        await handle.mutate("s", sats.patch("s", launched_at=T0))
        created, updated = await handle.history("s", field="launched_at")
        assert created.from_value is ABSENT
        assert created.to_value is None
        assert updated.from_value is None
        assert updated.to_value == "2024-01-01T00:00:00.000000Z"


async def test_spec_7_masked_flag() -> None:
    """SPEC §13.3: masked is true when masking changed a row's from or to value."""
    async with memory_world() as world:
        await world.engine.secrets.register("run-1", ["swordfish"])
        await world.handle.mutate(
            "inc-1", world.storage.put("inc-1", Incident("open", "low", "swordfish"))
        )
        world.clock.advance(timedelta(seconds=1))
        await world.handle.mutate(
            "inc-1", world.storage.patch("inc-1", title="x", status="resolved"), run_id="run-1"
        )
        since = world.events[-1].occurred_at
        rows = {r.field: r for r in await world.handle.history("inc-1", since=since)}
        assert rows["title"].from_value == "****"
        assert rows["title"].masked is True
        assert rows["status"].masked is False


async def test_spec_4_secret_to_secret_is_a_recorded_change() -> None:
    """SPEC §4: a change from one secret to another is recorded (both sides ****)."""
    async with memory_world() as world:
        await world.engine.secrets.register("run-1", ["first-secret", "second-secret"])
        await world.handle.mutate(
            "inc-1",
            world.storage.put("inc-1", Incident("open", "low", "first-secret")),
            run_id="run-1",
        )
        await world.handle.mutate(
            "inc-1", world.storage.patch("inc-1", title="second-secret"), run_id="run-1"
        )
        assert len(world.events) == 2
        row = (await world.handle.history("inc-1", field="title"))[-1]
        assert (row.from_value, row.to_value, row.masked) == ("****", "****", True)


async def test_spec_4_sensitive_field_change_is_recorded_masked() -> None:
    """SPEC §4/§13.4: a sensitive field is replaced whole by **** whatever its length."""
    async with memory_world() as world:
        await world.handle.mutate(
            "inc-1", world.storage.put("inc-1", Incident("open", "low", token="a"))
        )
        await world.handle.mutate("inc-1", world.storage.patch("inc-1", token="b"))
        event = world.events[-1]
        assert event.changed_fields == ("token",)
        assert event.delta == {"token": "****"}
        assert event.prev is not None
        assert event.prev["token"] == "****"
        row = (await world.handle.history("inc-1", field="token"))[-1]
        assert (row.from_value, row.to_value, row.masked) == ("****", "****", True)


async def test_spec_13_8_same_instant_other_zone_is_a_no_op() -> None:
    """SPEC §13.8: a datetime equal as an instant in another zone is structurally equal."""
    async with memory_world() as world:
        sats: DictStorage[Satellite] = DictStorage()
        handle = world.engine.define_entity("sat", Satellite, read=sats.read)
        await handle.mutate("s", sats.put("s", Satellite("nominal", "eu", T0)))
        plus_two = T0.astimezone(timezone(timedelta(hours=2)))
        await handle.mutate("s", sats.put("s", Satellite("nominal", "eu", plus_two)))
        assert [e.op for e in world.events] == ["create"]


# == test_engine_queries ==================================================================


@asynccontextmanager
async def flapped_world() -> AsyncIterator[World]:
    """inc-1 created at T0 and flapped open→investigating→open at +1, +2 min."""
    async with memory_world() as world:
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        for status in ("investigating", "open"):
            world.clock.advance(MINUTE)
            await world.handle.mutate("inc-1", world.storage.patch("inc-1", status=status))
        yield world


class Exploding(AsyncInMemoryEntityStore):
    """A store whose ``latest_transition`` must not be consulted."""

    async def latest_transition(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("store consulted")


async def test_spec_8_in_state_since_absent_entity_does_not_consult_store() -> None:
    """SPEC §8: an absent entity answers None without asking the store."""
    async with compose.in_memory(store=Exploding()) as engine:
        handle, _ = _define_incidents(engine)
        assert await handle.in_state_since("ghost", "status") is None
        assert await handle.in_state_for("ghost", "status") is None


async def test_spec_8_in_state_since_none_without_rows() -> None:
    """SPEC §8: an entity the plugin has but the log never saw answers None."""
    async with flapped_world() as world:
        world.storage.rows["legacy"] = OPEN
        assert await world.handle.in_state_since("legacy", "status") is None


async def test_spec_8_masked_row_is_trusted() -> None:
    """SPEC §8: a masked newest row counts as matching the current value."""
    async with flapped_world() as world:
        world.clock.advance(MINUTE)
        await world.handle.mutate("inc-1", world.storage.patch("inc-1", token="new"))
        assert await world.handle.in_state_since("inc-1", "token") == T0 + 3 * MINUTE


async def test_spec_8_in_state_for() -> None:
    """SPEC §8: in_state_for is now − since, never negative."""
    async with flapped_world() as world:
        world.clock.advance(timedelta(seconds=90))
        assert await world.handle.in_state_for("inc-1", "status") == timedelta(seconds=90)
        assert await world.handle.in_state_for("inc-1", "severity") == 2 * MINUTE + timedelta(
            seconds=90
        )


class Lagging(AsyncInMemoryEntityStore):
    """A store whose clock is a day behind the rows' stamps."""

    async def now(self) -> datetime:
        return T0 - timedelta(days=1)


async def test_spec_8_in_state_for_never_negative() -> None:
    """SPEC §8: a store clock behind the row stamp still yields a non-negative duration."""
    clock = ManualClock(T0)
    async with compose.in_memory(clock=clock, store=Lagging(clock)) as engine:
        handle, storage = _define_incidents(engine)
        await handle.mutate("x", storage.put("x", OPEN))
        assert await handle.in_state_for("x", "status") == timedelta(0)


async def test_spec_8_transition_count_window_is_inclusive() -> None:
    """SPEC §8: rows with now − window ≤ t ≤ now count, create rows included."""
    async with flapped_world() as world:
        h = world.handle
        assert await h.transition_count("inc-1", "status", window=2 * MINUTE) == 3
        assert await h.transition_count("inc-1", "status", window=MINUTE) == 2
        assert await h.transition_count("inc-1", "status", window=timedelta(seconds=59)) == 1
        world.clock.advance(timedelta(seconds=30))
        assert await h.transition_count("inc-1", "status", window=MINUTE) == 1


@pytest.mark.parametrize("field", ["status", "severity", "title"])
async def test_spec_8_value_at(field: str) -> None:
    """SPEC §8: value_at is the newest row's to_value at or before the instant."""
    expected = {
        "status": ["open", "open", "investigating", "open"],
        "severity": ["low", "low", "low", "low"],
        "title": ["", "", "", ""],
    }[field]
    async with flapped_world() as world:
        instants = [T0, T0 + timedelta(seconds=59), T0 + MINUTE, T0 + 2 * MINUTE]
        assert [await world.handle.value_at("inc-1", field, at) for at in instants] == expected
        before = T0 - timedelta(microseconds=1)
        assert await world.handle.value_at("inc-1", field, before) is None


async def test_spec_8_value_at_after_remove_and_recreate() -> None:
    """SPEC §8: value_at is None after a remove, and the new value after a re-create."""
    async with flapped_world() as world:
        world.clock.advance(MINUTE)
        removed_at = world.clock.now()
        await world.handle.remove("inc-1", world.storage.delete("inc-1"))
        world.clock.advance(MINUTE)
        await world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "high")))
        assert await world.handle.value_at("inc-1", "status", removed_at - MINUTE) == "open"
        assert await world.handle.value_at("inc-1", "status", removed_at) is None
        assert await world.handle.value_at("inc-1", "status", world.clock.now()) == "resolved"


async def test_spec_8_value_at_same_instant_remove_then_create() -> None:
    """SPEC §8: with equal stamps, recording order decides (remove then create = exists)."""
    async with flapped_world() as world:
        await world.handle.remove("inc-1", world.storage.delete("inc-1"))
        await world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "low")))
        assert await world.handle.value_at("inc-1", "status", world.clock.now()) == "resolved"


async def test_spec_8_history_order_since_and_limit() -> None:
    """SPEC §8/§13.11: history is oldest first; since inclusive; limit keeps the newest N."""
    async with flapped_world() as world:
        h = world.handle
        statuses = [r.to_value for r in await h.history("inc-1", field="status")]
        assert statuses == ["open", "investigating", "open"]
        since = await h.history("inc-1", field="status", since=T0 + MINUTE)
        assert [r.to_value for r in since] == ["investigating", "open"]
        newest = [r.to_value for r in await h.history("inc-1", field="status", limit=2)]
        assert newest == ["investigating", "open"]
        assert await h.history("inc-1", field="status", limit=0) == ()
        everything = await h.history("inc-1")
        assert len(everything) == 5 + 2
        assert [r.transitioned_at for r in everything] == sorted(
            r.transitioned_at for r in everything
        )


async def test_spec_8_history_returns_records() -> None:
    """SPEC §7: history rows are TransitionRecord values with aware UTC timestamps."""
    async with flapped_world() as world:
        row = (await world.handle.history("inc-1", field="status"))[-1]
        assert isinstance(row, TransitionRecord)
        assert row.kind == "incident"
        assert row.entity_id == "inc-1"
        assert row.field == "status"
        assert (row.from_value, row.to_value, row.masked) == ("investigating", "open", False)
        assert row.transitioned_at == T0 + 2 * MINUTE
        assert row.transitioned_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.in_state_since("inc-1", "nope"),
        lambda h: h.in_state_for("inc-1", "nope"),
        lambda h: h.transition_count("inc-1", "nope", window=MINUTE),
        lambda h: h.value_at("inc-1", "nope", T0),
        lambda h: h.history("inc-1", field="nope"),
    ],
)
async def test_spec_8_unknown_field_raises(call: Callable[[Any], Awaitable[object]]) -> None:
    """SPEC §8: a field that is not a field of the kind raises UnknownFieldError."""
    async with flapped_world() as world:
        with pytest.raises(UnknownFieldError, match=r'"nope".*incident'):
            await call(world.handle)


# == test_engine_subscriptions ============================================================


@asynccontextmanager
async def two_kinds() -> AsyncIterator[tuple[AsyncEngine, DictStorage[Incident]]]:
    """An engine with the incident and satellite kinds."""
    async with compose.in_memory() as engine:
        _, storage = _define_incidents(engine)
        engine.define_entity("sat", Satellite, read=DictStorage[Satellite]().read)
        yield engine, storage


async def _write_incident(
    engine: AsyncEngine, storage: DictStorage[Incident], entity_id: str, **changes: Any
) -> None:
    if entity_id not in storage.rows:
        storage.rows[entity_id] = OPEN
        apply = storage.put(entity_id, attrs.evolve(storage.rows.pop(entity_id), **changes))
    else:
        apply = storage.patch(entity_id, **changes)
    await engine.handle("incident").mutate(entity_id, apply)


async def test_spec_9_all_kinds_all_fields() -> None:
    """SPEC §9: no filters → every event of every kind."""
    async with two_kinds() as (engine, storage):
        got: list[ChangeEvent] = []
        await engine.subscribe(got.append)
        await _write_incident(engine, storage, "i")
        await engine.handle("sat").mutate("s", lambda: Satellite("nominal", "eu"))
        assert [(e.kind, e.op) for e in got] == [("incident", "create"), ("sat", "create")]


async def test_spec_9_kind_filter() -> None:
    """SPEC §9: a kind filter delivers only that kind's events."""
    async with two_kinds() as (engine, storage):
        got: list[ChangeEvent] = []
        await engine.subscribe(got.append, kind="sat")
        await _write_incident(engine, storage, "i")
        await engine.handle("sat").mutate("s", lambda: Satellite("nominal", "eu"))
        assert [e.kind for e in got] == ["sat"]


async def test_spec_9_single_field_name_string() -> None:
    """A lone field name given as a str means that one field."""
    async with two_kinds() as (engine, storage):
        got: list[ChangeEvent] = []
        await engine.subscribe(got.append, kind="incident", fields="severity")
        await _write_incident(engine, storage, "i")
        await _write_incident(engine, storage, "i", status="resolved")
        assert len(got) == 1


async def test_spec_9_handlers_get_events_after_recording_in_order() -> None:
    """SPEC §9: a handler (here async, querying the log) runs after the change is
    recorded, in recording order."""
    async with two_kinds() as (engine, storage):
        seen: list[tuple[str, int]] = []
        handle = engine.handle("incident")

        async def handler(event: ChangeEvent) -> None:
            rows = await handle.history(event.entity_id)
            assert event.change_id in {r.change_id for r in rows}
            seen.append((str(event.delta.get("title")), len(rows)))

        await engine.subscribe(handler, kind="incident")
        for title in ("1", "2", "3"):
            await _write_incident(engine, storage, "i", title=title)
        assert seen == [("1", 5), ("2", 6), ("3", 7)]


async def test_spec_9_failing_handler_is_logged_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SPEC §9/§13.1: a raising handler is logged at WARNING; others and the caller go on."""
    async with two_kinds() as (engine, storage):
        got: list[ChangeEvent] = []

        def bad(event: ChangeEvent) -> None:
            raise RuntimeError("handler broke")

        await engine.subscribe(bad)
        await engine.subscribe(got.append)
        with caplog.at_level(logging.WARNING):
            await _write_incident(engine, storage, "i")
        assert len(got) == 1
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert records
        assert "handler broke" in records[0].getMessage()
        assert records[0].exc_info is None


async def test_spec_9_handler_may_cancel_itself_during_delivery() -> None:
    """Cancelling inside a handler is safe and other handlers still get the event."""
    async with two_kinds() as (engine, storage):
        got: list[ChangeEvent] = []
        holder: dict[str, Any] = {}

        def once(event: ChangeEvent) -> None:
            holder["sub"].cancel()

        holder["sub"] = await engine.subscribe(once)
        await engine.subscribe(got.append)
        await _write_incident(engine, storage, "i")
        await _write_incident(engine, storage, "i", status="resolved")
        assert len(got) == 2


# == test_engine_secrecy ==================================================================


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incidents_and_secrets())
def test_no_secret_in_events_rows_or_logs(
    caplog: pytest.LogCaptureFixture, case: tuple[list[Incident], list[str]]
) -> None:
    """Random writes of a run: events, history, log lines and handler failures are masked."""
    states, secrets = case
    caplog.clear()

    async def run() -> None:
        async with compose.in_memory(log_events=True) as engine:
            handle, storage = _define_incidents(engine)
            await engine.secrets.register("run-1", secrets)
            events: list[ChangeEvent] = []
            await engine.subscribe(events.append)

            async def failing(event: ChangeEvent) -> None:
                quoted = [json.dumps(secrets), repr(secrets), repr(repr(secrets))]
                raise RuntimeError(f"handler saw {quoted} and {event.to_dict()}")

            def deriver(event: ChangeEvent) -> list[str]:
                raise ValueError(str(secrets))

            await engine.subscribe(failing)
            engine.register_deriver("incident", deriver)
            for state in states:
                await handle.mutate("inc-1", storage.put("inc-1", state), run_id="run-1")
            for event in events:
                await engine.derive(event)
            await handle.remove("inc-1", storage.delete("inc-1"), run_id="run-1")

            # Change ids and stamps are generated, not data: a secret spelling part of one
            # ("0000" in a random change id) is no leak.
            dumped = without_generated(
                json.dumps([e.to_dict() for e in events], ensure_ascii=False), events
            )
            assert not leaks(dumped, secrets)
            for row in await handle.history("inc-1"):
                assert not leaks(json.dumps([repr(row.from_value), row.to_value]), secrets)
            for record in caplog.records:
                judged = [s for s in secrets if s not in str(record.msg)]
                assert not leaks(without_generated(record.getMessage(), events), judged)
                assert record.exc_info is None
            assert all(e.next is None or e.next["token"] == "****" for e in events)
            assert all(e.prev is None or e.prev["token"] == "****" for e in events)
            token_rows = await handle.history("inc-1", field="token")
            assert all(r.to_value == "****" and r.masked for r in token_rows)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())


@settings(max_examples=60)
@given(secret=st.text(ALPHABET, min_size=MIN_SECRET_LENGTH, max_size=12), pin=texts)
def test_no_secret_or_sensitive_value_in_validation_errors(secret: str, pin: str) -> None:
    """SPEC §13.2: StateValidationError never quotes a run secret or a sensitive value."""

    async def error_texts(handle: Any, value: str, pin: str, run_id: str | None) -> str:
        seen: list[str] = []
        for bad in invalid_incident_states(value, pin):
            with pytest.raises(StateValidationError) as caught:
                await handle.mutate("inc-1", lambda bad=bad: bad, run_id=run_id)
            error = caught.value
            assert error.__cause__ is None
            assert error.__context__ is None
            seen += [str(error), repr(error), *error.field_errors, *error.field_errors.values()]
        return "\n".join(seen)

    async def run() -> bool:
        async with compose.in_memory() as engine:
            handle, _ = _define_incidents(engine)
            # A secret that is part of what the messages say besides data (wording, kind,
            # id, allowed values) is not data that leaked.
            if secret in await error_texts(handle, PLACEHOLDER, PLACEHOLDER, None):
                return False
            await engine.secrets.register("run-1", [secret])
            assert secret not in await error_texts(handle, secret, pin, "run-1")
            return True

    assume(asyncio.run(run()))


@settings(max_examples=40)
@given(st.lists(st.text(LOCALS_ALPHABET, min_size=MIN_SECRET_LENGTH, max_size=12), max_size=80))
def test_no_secret_in_captured_locals_of_failing_calls(values: list[str]) -> None:
    """SPEC §16.3: tracebacks of a failing mutate or register, locals captured, hold no
    run secret in any escaped form (small sets and automaton-sized ones alike)."""

    def formatted(error: BaseException) -> str:
        exception = traceback.TracebackException.from_exception(error, capture_locals=True)
        return "".join(
            f"{frame.filename}: {frame.locals}\n"
            for frame in exception.stack
            if frame.locals is not None and "test_aio_engine_more" not in frame.filename
        )

    async def run() -> list[str]:
        engine = compose.in_memory()
        handle, _ = _define_incidents(engine)
        await engine.secrets.register("run-1", values)

        def apply() -> Incident:
            raise RuntimeError("plugin failed")

        found = []
        try:
            await handle.mutate("inc-1", apply, run_id="run-1")
        except RuntimeError as error:
            found.append(formatted(error))
        await engine.close()
        try:
            await engine.secrets.register("run-1", values)
        except Exception as error:
            found.append(formatted(error))
        return found

    found = asyncio.run(run())
    assert len(found) == 2
    assert not leaks("\n".join(found), values)


# == test_engine_bad_input ================================================================


class FlakyStore(AsyncInMemoryEntityStore):
    """An asyncio memory store whose transactions fail at the step ``down`` names."""

    down: str | None = None

    async def begin(self, connection: Any = None) -> AsyncMemoryTransaction:
        return FlakyTransaction(self)


class FlakyTransaction(AsyncMemoryTransaction):
    """Fails ``lock``, ``record`` or ``commit`` on demand; a failed commit still ends
    the transaction, as the port asks."""

    def __init__(self, store: FlakyStore) -> None:
        super().__init__(store)
        self.flaky = store

    def _fail_at(self, step: str) -> None:
        if self.flaky.down == step:
            raise ConnectionRefusedError("store unreachable")

    async def lock(self, kind: str, entity_id: str) -> datetime:
        self._fail_at("lock")
        return await super().lock(kind, entity_id)

    async def record(self, plan: Plan) -> datetime:
        self._fail_at("record")
        return await super().record(plan)

    async def commit(self, then: Callable[[], None] | None = None) -> None:
        try:
            self._fail_at("commit")
        except ConnectionRefusedError:
            await self.rollback()
            raise
        await super().commit(then)


@attrs.define
class FlakyWorld:
    """An engine over a flaky store with the incident kind and an event log."""

    engine: AsyncEngine
    handle: AsyncEntityHandle[Incident]
    storage: DictStorage[Incident]
    store: FlakyStore
    events: list[ChangeEvent]


@asynccontextmanager
async def flaky_world() -> AsyncIterator[FlakyWorld]:
    """The blocking tests' bad-input world."""
    store = FlakyStore(ManualClock(T0), lock_timeout=timedelta(seconds=1))
    async with compose.in_memory(store=store) as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        yield FlakyWorld(engine, handle, storage, store, events)


BAD_IDS: list[object] = ["", "   ", "\t\n", None, 5, b"inc", ["inc"], "nul\x00byte"]

HANDLE_CALLS: dict[str, Callable[[AsyncEntityHandle[Incident], Any], Awaitable[object]]] = {
    "mutate": lambda h, i: h.mutate(i, lambda: OPEN),
    "remove": lambda h, i: h.remove(i, lambda: None),
    "get": lambda h, i: h.get(i),
    "get_many": lambda h, i: h.get_many([i]),
    "in_state_since": lambda h, i: h.in_state_since(i, "status"),
    "in_state_for": lambda h, i: h.in_state_for(i, "status"),
    "transition_count": lambda h, i: h.transition_count(i, "status", window=timedelta(1)),
    "value_at": lambda h, i: h.value_at(i, "status", T0),
    "history": lambda h, i: h.history(i),
    "changes": lambda h, i: h.changes(i),
}


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
async def test_spec_12_bad_ids_in_every_method(bad_id: object) -> None:
    """SPEC §12/§13.5: an empty, blank or non-str id raises InvalidArgumentError everywhere
    (every method in one engine per id: the methods are the blocking test's other axis)."""
    async with flaky_world() as world:
        for method in sorted(HANDLE_CALLS):
            with pytest.raises(InvalidArgumentError, match="entity id"):
                await HANDLE_CALLS[method](world.handle, bad_id)
        assert world.store.changes_recorded == 0
        assert world.storage.writes == 0


@pytest.mark.parametrize("apply", [None, "apply", 42, Incident("open", "low")], ids=repr)
async def test_spec_12_non_callable_apply(apply: object) -> None:
    """SPEC §12: a non-callable apply raises InvalidArgumentError; nothing else happens."""
    async with flaky_world() as world:
        with pytest.raises(InvalidArgumentError, match="apply"):
            await world.handle.mutate("inc-1", apply)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="apply"):
            await world.handle.remove("inc-1", apply)  # type: ignore[arg-type]
        assert world.store.changes_recorded == 0


@pytest.mark.parametrize(
    "window", [timedelta(0), timedelta(seconds=-1), 0, 60, 60.0, None, "1m"], ids=repr
)
async def test_spec_12_window_must_be_a_positive_timedelta(window: object) -> None:
    """SPEC §12/§13.5: 0, negatives, int, float and None are rejected."""
    async with flaky_world() as world:
        with pytest.raises(InvalidArgumentError, match="window"):
            await world.handle.transition_count("inc-1", "status", window=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("actor", ["user", {"type": "user"}, 1], ids=repr)
async def test_bad_actor_is_rejected(actor: object) -> None:
    """An actor that is not an Actor is rejected before anything happens."""
    async with flaky_world() as world:
        with pytest.raises(InvalidArgumentError, match="actor"):
            await world.handle.mutate("inc-1", lambda: OPEN, actor=actor)  # type: ignore[arg-type]
        assert world.storage.writes == 0


@pytest.mark.parametrize("run_id", ["", "  ", 5], ids=repr)
async def test_bad_run_id_is_rejected(run_id: object) -> None:
    """A run_id must be a non-empty str or None."""
    async with flaky_world() as world:
        with pytest.raises(InvalidArgumentError, match="run_id"):
            await world.handle.mutate("inc-1", lambda: OPEN, run_id=run_id)  # type: ignore[arg-type]


async def test_spec_12_table_definition_rows() -> None:
    """SPEC §12: the definition rows of the table, each with its error class."""
    async with flaky_world() as world:
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
            await world.handle.history("inc-1", field="pin")
        assert world.engine.kinds() == ("incident",)


async def test_spec_12_invalid_state_and_none() -> None:
    """SPEC §12: invalid state / NaN / wrong type → StateValidationError; None → Missing."""
    async with flaky_world() as world:
        for bad in ({"status": "nope", "severity": "low"}, {"status": float("nan")}, 3.5):
            with pytest.raises(StateValidationError):
                await world.handle.mutate("inc-1", lambda bad=bad: bad)  # type: ignore[misc]
        with pytest.raises(MissingStateError):
            await world.handle.mutate("inc-1", lambda: None)
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
async def test_spec_12_store_unreachable(step: str, message: str) -> None:
    """SPEC §12: store unreachable → StoreError with the cause, nothing emitted, then recovery."""
    async with flaky_world() as world:
        world.store.down = step
        with pytest.raises(StoreError, match=message) as caught:
            await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        assert world.events == []
        assert world.store.changes_recorded == 0
        world.store.down = None
        world.storage.rows.clear()
        await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        assert [e.op for e in world.events] == ["create"]


@pytest.mark.parametrize("step", ["lock", "record", "commit"])
async def test_store_failure_releases_the_entity_lock(step: str) -> None:
    """After a failed lock, record or commit the entity is free again (store and task)."""
    async with flaky_world() as world:
        world.store.down = step
        with pytest.raises(StoreError):
            await world.handle.mutate("inc-1", world.storage.put("inc-1", OPEN))
        world.store.down = None
        async with await world.store.begin() as tx:  # a held lock would time out (1 s)
            assert await tx.lock("incident", "inc-1") == await world.store.now()
        await world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "low")))
        assert [e.entity_id for e in world.events] == ["inc-1"]


@pytest.mark.parametrize(
    "entity_id",
    ["quote'); DROP TABLE incidents; --", 'dq"', "ünïcödé 日本 🎉", "a:b:c", "x" * 10_240],
)
async def test_spec_12_odd_ids_round_trip(entity_id: str) -> None:
    """SPEC §12: ids with quotes, SQL, unicode or 10 KB are stored and read back verbatim."""
    async with flaky_world() as world:
        state = Incident("open", "low", entity_id)
        await world.handle.mutate(entity_id, world.storage.put(entity_id, state))
        rows = await world.handle.history(entity_id)
        assert {r.entity_id for r in rows} == {entity_id}
        assert world.events[-1].entity_id == entity_id
        assert await world.handle.get(entity_id) == state


# == test_engine_define ===================================================================


def _read(ids: Any) -> dict[str, Incident]:
    return {}


@asynccontextmanager
async def fresh_engine() -> AsyncIterator[AsyncEngine]:
    """A fresh in-memory asyncio engine."""
    async with compose.in_memory() as engine:
        yield engine


@pytest.mark.parametrize(
    "kind",
    ["", " ", "in cident", "a:b", "-lead", "_lead", ".lead", "x" * 65, "tab\t", "é", "new\nline"],
)
async def test_spec_1_bad_kind_names_raise_definition_error(kind: str) -> None:
    """SPEC §1.1: a kind must match [A-Za-z0-9][A-Za-z0-9_.-]* within 64 characters."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError):
            engine.define_entity(kind, Incident, read=_read)
        assert engine.kinds() == ()


@pytest.mark.parametrize("kind", [None, 5, b"incident", ("incident",)])
async def test_spec_1_non_str_kind_raises_definition_error(kind: object) -> None:
    """SPEC §1.1: a non-str kind is a DefinitionError (also a ValueError)."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError) as caught:
            engine.define_entity(kind, Incident, read=_read)  # type: ignore[arg-type]
        assert isinstance(caught.value, ValueError)
        assert engine.kinds() == ()


@pytest.mark.parametrize("kind", ["a", "A1", "incident", "it.v2", "x-y_z", "9", "x" * 64])
async def test_spec_1_good_kind_names_are_accepted(kind: str) -> None:
    """SPEC §1.1: names of 1–64 allowed characters are accepted."""
    async with fresh_engine() as engine:
        handle = engine.define_entity(kind, Incident, read=_read)
        assert handle.kind == kind
        assert engine.kinds() == (kind,)


async def test_spec_1_duplicate_kind_message() -> None:
    """SPEC §1.2: a second definition raises with `duplicate kind "<kind>"`, keeps the first."""
    async with fresh_engine() as engine:
        first = engine.define_entity("incident", Incident, read=_read)
        with pytest.raises(DefinitionError, match='duplicate kind "incident"'):
            engine.define_entity("incident", Incident, read=_read)
        assert engine.handle("incident") is first


async def test_spec_1_kinds_compare_exactly() -> None:
    """SPEC §13.6: `incident` and `Incident` are different kinds."""
    async with fresh_engine() as engine:
        engine.define_entity("incident", Incident, read=_read)
        engine.define_entity("Incident", Incident, read=_read)
        assert engine.kinds() == ("incident", "Incident")


async def test_spec_1_read_not_callable() -> None:
    """SPEC §1.3: a non-callable read raises InvalidReadError, a TypeError and DefinitionError."""
    async with fresh_engine() as engine:
        with pytest.raises(InvalidReadError) as caught:
            engine.define_entity("incident", Incident, read={"a": 1})  # type: ignore[arg-type]
        assert isinstance(caught.value, TypeError)
        assert isinstance(caught.value, DefinitionError)
        assert engine.kinds() == ()


@pytest.mark.parametrize(("state", "name"), [(dict, "dict"), (int, "int"), ("Incident", "str")])
async def test_spec_1_state_must_be_an_attrs_class(state: object, name: str) -> None:
    """SPEC §1.4: a state that is not an attrs class: DefinitionError ending in (got <type>)."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError) as caught:
            engine.define_entity("incident", state, read=_read)  # type: ignore[arg-type]
        assert str(caught.value).endswith(f"(got {name})")
        assert engine.kinds() == ()


async def test_spec_1_attrs_instance_is_not_a_class() -> None:
    """SPEC §1.4: an attrs *instance* is rejected naming its type."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError, match=r"\(got Incident\)$"):
            engine.define_entity("incident", OPEN, read=_read)  # type: ignore[arg-type]


async def test_spec_1_unknown_sensitive_field() -> None:
    """SPEC §1.5: a sensitive name that is not a field raises UnknownFieldError naming it."""
    async with fresh_engine() as engine:
        with pytest.raises(UnknownFieldError, match="'password'") as caught:
            engine.define_entity("incident", Incident, read=_read, sensitive=["token", "password"])
        assert isinstance(caught.value, LookupError)
        assert engine.kinds() == ()


async def test_spec_1_checks_run_in_order() -> None:
    """SPEC §1: with several problems, the earliest check in SPEC order wins."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError) as bad_kind:
            engine.define_entity("bad kind", int, read=None, sensitive=["nope"])  # type: ignore[arg-type]
        assert not isinstance(bad_kind.value, InvalidReadError)
        engine.define_entity("incident", Incident, read=_read)
        with pytest.raises(DefinitionError, match="duplicate"):
            engine.define_entity("incident", int, read=None)  # type: ignore[arg-type]
        with pytest.raises(InvalidReadError):
            engine.define_entity("other", int, read=None)  # type: ignore[arg-type]
        with pytest.raises(DefinitionError, match=r"\(got int\)"):
            engine.define_entity("other", int, read=_read, sensitive=["nope"])  # type: ignore[arg-type]
        assert engine.kinds() == ("incident",)


async def test_spec_1_kinds_returns_a_new_tuple_in_order() -> None:
    """SPEC §1: kinds() lists kinds in registration order, a new tuple each call."""
    async with fresh_engine() as engine:
        for kind in ("c", "a", "b"):
            engine.define_entity(kind, Incident, read=_read)
        first = engine.kinds()
        assert first == ("c", "a", "b")
        assert isinstance(first, tuple)
        engine.define_entity("d", Incident, read=_read)
        assert first == ("c", "a", "b")
        assert engine.kinds() == ("c", "a", "b", "d")


async def test_spec_1_handle_unknown_kind() -> None:
    """SPEC §1: handle() of an undefined kind raises UnknownKindError (a LookupError)."""
    async with fresh_engine() as engine:
        engine.define_entity("incident", Incident, read=_read)
        with pytest.raises(UnknownKindError, match='"Incident"') as caught:
            engine.handle("Incident")
        assert isinstance(caught.value, LookupError)


async def test_spec_1_handle_metadata() -> None:
    """A handle exposes its kind, state class, fields and sensitive fields."""
    async with fresh_engine() as engine:
        handle = engine.define_entity("incident", Incident, read=_read, sensitive=("token",))
        assert engine.handle("incident") is handle
        assert handle.state_class is Incident
        assert handle.fields == tuple(a.name for a in attrs.fields(Incident))
        assert handle.sensitive == frozenset({"token"})


# == test_engine_helpers ==================================================================


def _event(kind: str = "incident", run_id: str | None = None) -> ChangeEvent:
    return make_plan(kind, "inc-1", None, {"status": "open"}, run_id=run_id).event(T0)


async def test_spec_10_derive_dedupes_in_first_seen_order() -> None:
    """SPEC §10: ids from each deriver in registration order, de-duplicated, non-empty str."""
    async with fresh_engine() as engine:
        engine.register_deriver("incident", lambda e: ["sys-2", "sys-1", "sys-2"])
        engine.register_deriver("incident", lambda e: ["", "sys-3", "sys-1", 7])  # type: ignore[list-item]
        engine.register_deriver("other", lambda e: ["never"])
        assert await engine.derive(_event()) == ("sys-2", "sys-1", "sys-3")


async def test_spec_10_same_deriver_twice_is_one_registration() -> None:
    """SPEC §10: registering the same function twice registers it once."""
    async with fresh_engine() as engine:

        def derive(event: ChangeEvent) -> list[str]:
            return ["a", "b"]

        engine.register_deriver("incident", derive)
        engine.register_deriver("incident", derive)
        calls: list[str] = []

        def counting(event: ChangeEvent) -> list[str]:
            calls.append("x")
            return []

        engine.register_deriver("incident", counting)
        assert await engine.derive(_event()) == ("a", "b")
        assert calls == ["x"]


async def test_spec_10_failing_deriver_is_skipped_and_logged_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SPEC §10/§13.1: a raising deriver is skipped and logged, masked with run secrets."""
    async with fresh_engine() as engine:
        await engine.secrets.register("run-1", ["deriver-secret"])

        def broken(event: ChangeEvent) -> list[str]:
            raise ValueError("leaked deriver-secret in message")

        engine.register_deriver("incident", broken)
        engine.register_deriver("incident", lambda e: ["ok"])
        with caplog.at_level(logging.WARNING):
            assert await engine.derive(_event(run_id="run-1")) == ("ok",)
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "leaked ****" in text
        assert "deriver-secret" not in text
        assert all(r.levelno >= logging.WARNING for r in caplog.records)


async def test_spec_10_payload_mapper() -> None:
    """SPEC §10: payload() maps through the kind's mapper, None without one."""
    async with fresh_engine() as engine:

        def to_payload(event: ChangeEvent) -> dict[str, object]:
            return {"id": event.entity_id, "op": event.op}

        engine.register_deriver("incident", lambda e: [], to_payload)
        engine.register_deriver("incident", lambda e: ["x"], to_payload)  # same mapper: fine
        assert engine.payload(_event()) == {"id": "inc-1", "op": "create"}
        assert engine.payload(_event("other")) is None


async def test_spec_10_second_different_payload_mapper_registers_nothing() -> None:
    """SPEC §10: a second different mapper raises DefinitionError and registers nothing."""
    async with fresh_engine() as engine:
        engine.register_deriver("incident", lambda e: ["a"], lambda e: {"v": 1})

        def new_deriver(event: ChangeEvent) -> list[str]:
            return ["b"]

        with pytest.raises(DefinitionError, match="payload mapper"):
            engine.register_deriver("incident", new_deriver, lambda e: {"v": 2})
        assert await engine.derive(_event()) == ("a",)
        assert engine.payload(_event()) == {"v": 1}


async def test_spec_10_register_deriver_validates() -> None:
    """register_deriver checks the kind name and that the functions are callable."""
    async with fresh_engine() as engine:
        with pytest.raises(DefinitionError):
            engine.register_deriver("bad kind", lambda e: [])
        with pytest.raises(InvalidArgumentError):
            engine.register_deriver("incident", "nope")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            engine.register_deriver("incident", lambda e: [], 5)  # type: ignore[arg-type]


async def test_spec_10_write_through_without_handle_runs_apply() -> None:
    """SPEC §10: with no handle, write_through/remove_through just run apply, return None."""
    calls: list[str] = []
    assert await write_through(None, "x", lambda: calls.append("w")) is None  # type: ignore[func-returns-value]
    assert await remove_through(None, "x", lambda: calls.append("r")) is None  # type: ignore[func-returns-value]
    assert calls == ["w", "r"]


async def test_spec_10_write_through_with_handle_delegates() -> None:
    """SPEC §10: with a handle, write_through/remove_through delegate and return None."""
    async with fresh_engine() as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        result = await write_through(  # type: ignore[func-returns-value]
            handle, "i", storage.put("i", OPEN), run_id="r-1"
        )
        assert result is None
        assert await remove_through(handle, "i", storage.delete("i")) is None  # type: ignore[func-returns-value]
        assert [(e.op, e.run_id) for e in events] == [("create", "r-1"), ("remove", None)]


@pytest.mark.parametrize("reason", ["raw-sample", "sensitive", "externally-owned", "bookkeeping"])
async def test_spec_10_declare_non_reactive_state(reason: str) -> None:
    """SPEC §10: each allowed reason is recorded and listed as a tuple."""
    async with fresh_engine() as engine:
        declared = engine.declare_non_reactive_state(table="samples", reason=reason, note="why")
        assert declared == NonReactiveDeclaration("samples", reason, "why")  # type: ignore[arg-type]
        assert engine.non_reactive_declarations() == (declared,)


@pytest.mark.parametrize(
    ("table", "reason"),
    [("samples", "because"), ("samples", ""), ("", "raw-sample"), (5, "raw-sample")],
)
async def test_spec_10_bad_declaration(table: object, reason: str) -> None:
    """SPEC §10: an unknown reason (or a bad table) raises InvalidArgumentError."""
    async with fresh_engine() as engine:
        with pytest.raises(InvalidArgumentError):
            engine.declare_non_reactive_state(table=table, reason=reason)  # type: ignore[arg-type]
        assert engine.non_reactive_declarations() == ()


async def test_spec_10_declarations_keep_order_and_dedupe() -> None:
    """Declarations keep their order; declaring the same thing twice keeps one."""
    async with fresh_engine() as engine:
        a = engine.declare_non_reactive_state(table="a", reason="bookkeeping")
        b = engine.declare_non_reactive_state(table="b", reason="sensitive", note=None)
        engine.declare_non_reactive_state(table="a", reason="bookkeeping")
        assert engine.non_reactive_declarations() == (a, b)


# == test_engine_concurrency ==============================================================

STATUSES: tuple[Status, ...] = ("open", "investigating", "resolved")


@pytest.mark.parametrize("run", range(20))
async def test_spec_11_eight_tasks_one_entity_keep_a_chain(run: int) -> None:
    """8 tasks × 25 writes on one entity (an await between the engine's read and the
    write): every row's from_value is the previous to_value, and the event count equals
    the number of recorded changes (run 20 times)."""
    store = AsyncInMemoryEntityStore()
    async with compose.in_memory(store=store) as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)

        async def writer(n: int) -> None:
            for i in range(25):
                status, title = STATUSES[(n + i) % 3], f"t{n}-{i % 2}"

                async def apply(status: Status = status, title: str = title) -> Incident:
                    await asyncio.sleep(0)  # where an unlocked writer would interleave
                    current = storage.rows.get("inc-1", OPEN)
                    return storage.put("inc-1", attrs.evolve(current, status=status, title=title))()

                await handle.mutate("inc-1", apply)

        await asyncio.gather(*(writer(n) for n in range(8)))
        by_field: dict[str, list[object]] = defaultdict(list)
        for row in await handle.history("inc-1"):
            previous = by_field[row.field]
            if previous:
                assert row.from_value == previous[-1], f"broken chain on {row.field}"
            else:
                assert row.from_value is ABSENT
            previous.append(row.to_value)
        assert len(events) == store.changes_recorded
        assert len({e.change_id for e in events}) == len(events)
        assert [e.change_id for e in events] == [
            c.change_id for c in store.changes("incident", "inc-1")
        ]
        final = await handle.get("inc-1")
        assert final is not None
        assert by_field["status"][-1] == final.status
        assert by_field["title"][-1] == final.title


# == test_engine_model_regressions ========================================================


@attrs.frozen
class Switch:
    """The state class of the shrunk failures."""

    on: bool
    count: int = 0
    tags: frozenset[str] = frozenset()
    note: str = ""


def _rows(records: tuple[TransitionRecord, ...]) -> list[tuple[Any, ...]]:
    return [(r.field, r.from_value, r.to_value) for r in records]


async def test_history_limit_above_the_row_count_returns_every_row(aio_backend: Backend) -> None:
    """``history(limit=N)`` with fewer than N rows returns them all."""
    async with open_engine(*aio_backend, clock=ManualClock(T0)) as engine:
        storage: DictStorage[Switch] = DictStorage()
        handle = engine.define_entity("switch", Switch, read=storage.read)
        entity_id = fresh_id("history-limit")
        storage.rows[entity_id] = Switch(on=False, tags=frozenset({""}))  # behind the engine
        await handle.mutate(entity_id, storage.put(entity_id, Switch(on=False, tags=frozenset())))
        tags = frozenset({"", 'y\u2028"', "é7\u2028z'"})
        await handle.mutate(
            entity_id, storage.put(entity_id, Switch(on=False, count=-154932, tags=tags))
        )
        await engine.store.now()

        every = await handle.history(entity_id, field="tags")
        assert _rows(every) == [
            ("tags", [""], []),
            ("tags", [], ["", 'y\u2028"', "é7\u2028z'"]),
        ]
        for limit in (2, 3, 10):
            assert await handle.history(entity_id, field="tags", limit=limit) == every
        assert await handle.history(entity_id, field="tags", limit=1) == every[1:]
        assert len(await handle.history(entity_id, limit=100)) == len(
            await handle.history(entity_id)
        )
        assert await handle.transition_count(entity_id, "tags", window=timedelta(days=1)) == 2


async def test_lone_surrogate_in_a_state_or_an_id_is_invalid_everywhere(
    aio_backend: Backend,
) -> None:
    """A lone surrogate in a state's text, an entity id, an actor or a run id is rejected
    alike by every engine before anything is recorded."""
    async with open_engine(*aio_backend, clock=ManualClock(T0)) as engine:
        storage: DictStorage[Switch] = DictStorage()
        handle = engine.define_entity("surrogates", Switch, read=storage.read)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        a = fresh_id("A")
        with pytest.raises(StateValidationError, match="note: text contains a lone surrogate"):
            await handle.mutate(a, lambda: {"on": False, "count": 0, "tags": [], "note": "\udc80"})
        with pytest.raises(StateValidationError, match="lone surrogate"):
            await handle.mutate(a, lambda: Switch(on=True, tags=frozenset({"ok", "b\ud800d"})))
        ran: list[str] = []

        def apply() -> Switch:
            ran.append("apply")
            return Switch(on=True)

        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            await handle.mutate("lone\udc80surrogate", apply)
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            await handle.remove("lone\udc80surrogate", apply)
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            await handle.mutate(a, apply, run_id="RUN\udc80")
        with pytest.raises(InvalidArgumentError, match="actor id must not contain a lone"):
            await handle.mutate(a, apply, actor=Actor.user("user\udc80"))
        assert ran == []
        assert events == []
        assert await handle.history(a) == ()
        unicode_id = fresh_id("Ωμέγα")
        await handle.mutate(unicode_id, storage.put(unicode_id, Switch(on=True, note="é😀")))
        assert [r.to_value for r in await handle.history(unicode_id, field="note")] == ["é😀"]


# == test_transactions (the assertions tests/test_aio_transactions.py leaves out) ==========


async def test_events_follow_commit_never_precede_it(aio_backend: Backend) -> None:
    """Inside the block nothing is delivered; at commit every change is, in recording
    order, the same entity twice included."""
    async with open_world(*aio_backend) as w:
        first, second = fresh_id(), fresh_id()
        async with w.engine.transaction() as tx:
            await w.handle.mutate(first, w.storage.put(first, OPEN), tx=tx)
            await w.handle.mutate(second, w.storage.put(second, OPEN), tx=tx)
            await w.handle.mutate(first, w.storage.put(first, Incident("resolved", "low")), tx=tx)
            assert w.events == []
            assert await w.handle.history(first) == ()  # not visible before commit
        assert [(e.entity_id, e.op) for e in w.events] == [
            (first, "create"),
            (second, "create"),
            (first, "update"),
        ]
        assert await w.statuses(first) == ["open", "resolved"]
        assert len({e.change_id for e in w.events}) == 3


async def test_an_exception_rolls_everything_back(aio_backend: Backend) -> None:
    """An exception in the block: nothing recorded, no event, the exception propagates
    unchanged; the entity is free again. (The app's own PostgreSQL write rolling back
    too is test_aio_postgres_engine::test_app_writes_and_log_commit_or_roll_back_together.)"""
    async with open_world(*aio_backend) as w:
        entity_id = fresh_id()
        error = KeyError("boom")
        with pytest.raises(KeyError, match="boom") as caught:  # noqa: PT012 (the block under test)
            async with w.engine.transaction() as tx:
                await w.handle.mutate(entity_id, w.storage.put(entity_id, OPEN), tx=tx)
                raise error
        assert caught.value is error
        assert w.events == []
        assert await w.handle.history(entity_id) == ()
        await w.handle.mutate(entity_id, w.storage.put(entity_id, Incident("resolved", "low")))
        assert await w.statuses(entity_id) == ["resolved"]


async def test_a_caught_validation_error_leaves_the_transaction_usable(
    aio_backend: Backend,
) -> None:
    """StateValidationError rolls back only if it leaves the block: caught inside, the
    other changes still commit."""
    async with open_world(*aio_backend) as w:
        good, bad = fresh_id(), fresh_id()
        async with w.engine.transaction() as tx:
            await w.handle.mutate(good, w.storage.put(good, OPEN), tx=tx)
            with pytest.raises(StateValidationError):
                await w.handle.mutate(bad, lambda: {"status": "nope", "severity": "low"}, tx=tx)
        assert await w.statuses(good) == ["open"]
        assert await w.handle.history(bad) == ()
        assert [e.entity_id for e in w.events] == [good]


async def test_remove_in_a_transaction(aio_backend: Backend) -> None:
    """``remove(tx=)`` records its change at commit, like ``mutate``."""
    async with open_world(*aio_backend) as w:
        entity_id = fresh_id()
        await w.handle.mutate(entity_id, w.storage.put(entity_id, OPEN))
        async with w.engine.transaction() as tx:
            await w.handle.remove(entity_id, lambda: None, tx=tx)
            assert w.events[-1].op == "create"
        assert [e.op for e in w.events] == ["create", "remove"]


async def test_a_handler_changing_an_event_changes_nothing_recorded(aio_backend: Backend) -> None:
    """Documents handed to handlers and history rows are the receiver's to change: the
    log, later events and later history reads are unaffected."""
    async with open_world(*aio_backend) as w:
        entity_id = fresh_id()

        def vandal(event: ChangeEvent) -> None:
            assert event.next is not None
            event.next["system_ids"].append("x")  # type: ignore[union-attr]
            event.delta.get("system_ids", []).append("y")  # type: ignore[union-attr]

        await w.engine.subscribe(vandal)
        state = Incident("open", "low", system_ids=("a",))
        await w.handle.mutate(entity_id, w.storage.put(entity_id, state))
        rows = await w.handle.history(entity_id, field="system_ids")
        assert [r.to_value for r in rows] == [["a"]]
        rows[0].to_value.append("z")  # type: ignore[union-attr]
        again = await w.handle.history(entity_id, field="system_ids")
        assert [r.to_value for r in again] == [["a"]]
        later = await w.handle.history(entity_id, field="system_ids")
        assert later[0].to_value == ["a"]


# == test_hardening (engine-level items) ==================================================


@attrs.frozen
class Order:
    """A state with a Literal, an int, a sensitive token and an in_-validated field."""

    status: Literal["open", "paid", "closed"]
    total_cents: int
    stage: str = attrs.field(default="new", validator=attrs.validators.in_(["new", "done"]))
    token: str | None = None
    note: str = ""
    amount: int = 0


@attrs.frozen
class Loose:
    """Any JSON document."""

    data: Any


_KINDS = itertools.count()


def _orders(engine: AsyncEngine) -> tuple[AsyncEntityHandle[Order], DictStorage[Order]]:
    storage: DictStorage[Order] = DictStorage()
    name = f"order{next(_KINDS)}"  # PostgreSQL schemas are shared by the module's tests
    return engine.define_entity(name, Order, read=storage.read, sensitive={"token"}), storage


def _escapes(secret: str) -> list[str]:
    return [
        secret,
        repr(secret)[1:-1],
        repr("'\"" + secret)[4:-1],
        json.dumps(secret)[1:-1],
        secret.replace("\\", "\\\\"),
    ]


def _recording(called: list[int]) -> Callable[[], Order]:
    def apply() -> Order:
        called.append(1)
        return Order("open", 1)

    return apply


async def test_repr_escaped_secret_is_masked_in_validation_errors(aio_backend: Backend) -> None:
    """Item 1: ``ab'cd-Sekret-42`` quoted by ``repr`` as ``ab\\'cd-Sekret-42`` is masked."""
    async with open_engine(*aio_backend) as engine:
        handle, _ = _orders(engine)
        secret = "ab'cd-Sekret-42"
        await engine.secrets.register("run-1", [secret])
        bad = {"status": "open", "total_cents": 1, "stage": f'x" {secret}'}
        with pytest.raises(StateValidationError) as caught:
            await handle.mutate("o-1", lambda: bad, run_id="run-1")
        text = f"{caught.value}\n{caught.value!r}\n{dict(caught.value.field_errors)}"
        assert "stage" in caught.value.field_errors
        for form in _escapes(secret):
            assert form not in text


async def test_backslash_doubled_secret_is_masked_in_handler_failure_log(
    aio_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 2: a handler's ``KeyError`` quoting ``C:\\vault\\key-7f3a`` logs it masked."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        secret = "C:\\vault\\key-7f3a"
        await engine.secrets.register("run-1", [secret])

        async def failing(event: ChangeEvent) -> None:
            raise KeyError(f"copy from {secret}")

        await engine.subscribe(failing)
        with caplog.at_level(logging.WARNING):
            await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="run-1")
        messages = [r.getMessage() for r in caplog.records if "failed for" in r.getMessage()]
        assert messages, "the handler failure was logged"
        for message in messages:
            assert "KeyError" in message
            for form in _escapes(secret):
                assert form not in message


def _many_secrets() -> list[str]:
    return ["s3cr3t-alpha-1", "s3cr3t-beta-22", *(f"bulk-secret-{i:03}" for i in range(100))]


async def test_no_secret_in_captured_locals_of_a_failing_mutate(aio_backend: Backend) -> None:
    """Item 3: a failing mutate's traceback with captured locals holds no run secret."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        await engine.secrets.register("run-1", _many_secrets())
        await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="run-1")

        def apply() -> Order:
            raise RuntimeError("plugin write failed")

        with pytest.raises(RuntimeError) as caught:
            await handle.mutate("o-1", apply, run_id="run-1")
        formatted = "".join(
            traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
        )
        assert "secrets = <SecretSet: 102 values, 102 maskable>" in formatted
        assert not [s for s in _many_secrets() if s in formatted]


async def test_no_secret_in_captured_locals_of_a_failing_register() -> None:
    """Item 3: ``register`` after close fails without its values in captured locals."""
    engine = compose.in_memory()
    await engine.close()
    with pytest.raises(EngineClosedError) as caught:
        await engine.secrets.register("run-1", ["never-shown-secret"])
    formatted = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "values = <hidden>" in formatted
    assert "never-shown-secret" not in formatted.replace('"never-shown-secret"', "")


@pytest.mark.parametrize("kind", ["instance", "mapping", "nested"])
async def test_huge_ints_are_refused_up_front_by_every_store(
    aio_backend: Backend, kind: str
) -> None:
    """Item 5: an int over 4,300 digits is a StateValidationError, nothing recorded."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        huge = 10**5000
        loose_storage: DictStorage[Loose] = DictStorage()
        loose = engine.define_entity(f"loose{next(_KINDS)}", Loose, read=loose_storage.read)
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "instance": lambda: handle.mutate("o-1", storage.put("o-1", Order("open", huge))),
            "mapping": lambda: handle.mutate(
                "o-1", lambda: {"status": "open", "total_cents": huge}
            ),
            "nested": lambda: loose.mutate(
                "l-1", loose_storage.put("l-1", Loose({"d": [1, -huge]}))
            ),
        }
        with pytest.raises(StateValidationError) as caught:
            await writes[kind]()
        assert "4300 digits" in str(caught.value)
        assert await handle.history("o-1") == ()
        assert await loose.history("l-1") == ()


async def test_deep_nesting_is_refused_up_front_by_every_store(aio_backend: Backend) -> None:
    """Item 5 (etc.): documents nested deeper than 256 levels are refused alike."""
    async with open_engine(*aio_backend) as engine:
        storage: DictStorage[Loose] = DictStorage()
        handle = engine.define_entity(f"deep{next(_KINDS)}", Loose, read=storage.read)
        value: Any = "leaf"
        for _ in range(300):
            value = [value]
        with pytest.raises(StateValidationError, match="nested deeper than 256"):
            await handle.mutate("d-1", storage.put("d-1", Loose(value)))
        assert await handle.history("d-1") == ()


async def test_instances_are_type_checked_like_mappings(aio_backend: Backend) -> None:
    """Item 7: ``Order(status="closed", total_cents="100")`` is refused like its dict."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        bad = Order(status="nope", total_cents="100")  # type: ignore[arg-type]
        with pytest.raises(StateValidationError) as from_instance:
            await handle.mutate("o-1", storage.put("o-1", bad))
        with pytest.raises(StateValidationError) as from_mapping:
            await handle.mutate("o-1", lambda: {"status": "nope", "total_cents": "100"})
        assert set(from_instance.value.field_errors) == {"status", "total_cents"}
        assert set(from_mapping.value.field_errors) == {"status", "total_cents"}
        assert await handle.history("o-1") == ()


async def test_instances_from_read_are_type_checked(aio_backend: Backend) -> None:
    """Item 7: a wrongly typed instance returned by ``read`` is refused before ``apply``."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        storage.rows["o-1"] = Order(status="open", total_cents=True)  # bool is not int
        called: list[int] = []
        with pytest.raises(StateValidationError, match="total_cents"):
            await handle.mutate("o-1", _recording(called))
        assert called == []


async def test_sensitive_null_stays_null(aio_backend: Backend) -> None:
    """Item 8: a null sensitive field is recorded as null; setting it reads null → ****."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        for token in (None, "tok-1", None):
            await handle.mutate("o-1", storage.put("o-1", Order("open", 1, token=token)))
        history = await handle.history("o-1", field="token")
        rows = [(r.from_value, r.to_value, r.masked) for r in history]
        assert [r[1:] for r in rows] == [(None, False), ("****", True), (None, True)]
        assert rows[1][0] is None
        assert rows[2][0] == "****"
        assert events[0].next is not None
        assert events[0].next["token"] is None


async def test_subscribe_fields_without_kind_must_name_a_field_of_some_kind() -> None:
    """Item 9: ``subscribe(fields={"colour"})`` without kind raises unless some kind has it."""
    async with compose.in_memory() as engine:
        with pytest.raises(InvalidArgumentError, match="colour"):
            await engine.subscribe(print, fields={"colour"})
        _orders(engine)
        with pytest.raises(InvalidArgumentError, match="colour"):
            await engine.subscribe(print, fields={"status", "colour"})
        subscription = await engine.subscribe(print, fields={"status"})
        subscription.cancel()


async def test_every_call_on_a_closed_engine_raises() -> None:
    """Item 9: after ``close()``, every engine call — ``secrets.register`` too — raises."""
    engine = compose.in_memory()
    handle, _ = _orders(engine)
    await engine.close()
    awaited: list[Callable[[], Awaitable[object]]] = [
        lambda: engine.secrets.register("run-1", ["abcd-secret"]),
        lambda: engine.secrets.secrets_for("run-1"),
        lambda: engine.secrets.drop("run-1"),
        lambda: engine.subscribe(print),
        lambda: handle.get("o-1"),
        lambda: handle.mutate("o-1", lambda: Order("open", 1)),
        lambda: handle.history("o-1"),
    ]
    for call in awaited:
        with pytest.raises(EngineClosedError):
            await call()
    plain: list[Callable[[], object]] = [
        engine.kinds,
        lambda: engine.handle(handle.kind),
        lambda: engine.register_deriver(handle.kind, lambda e: ()),
        lambda: engine.declare_non_reactive_state(table="t", reason="bookkeeping"),
        engine.non_reactive_declarations,
        lambda: engine.define_entity("other", Order, read=lambda ids: {}),
    ]
    for plain_call in plain:
        with pytest.raises(EngineClosedError):
            plain_call()
    await engine.close()  # still idempotent


async def test_bad_id_message_says_got_once() -> None:
    """Item 9: ``entity id must be a str (got int)`` — not followed by a second "(got …)"."""
    async with compose.in_memory() as engine:
        handle, _ = _orders(engine)
        with pytest.raises(InvalidArgumentError) as caught:
            await handle.get(5)  # type: ignore[arg-type]
        assert str(caught.value) == "entity id must be a str (got int)"
        with pytest.raises(InvalidArgumentError, match=r"blank \(got ' '\)"):
            await handle.get(" ")


async def test_unknown_run_warns_once_per_run_id_by_default(
    aio_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: a write naming an unknown run logs one WARNING per run id and records."""
    async with open_engine(*aio_backend) as engine:
        handle, storage = _orders(engine)
        typo, other = fresh_id("typo-run"), fresh_id("other-run")  # the registry is shared
        with caplog.at_level(logging.WARNING):
            await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id=typo)
            await handle.mutate("o-1", storage.put("o-1", Order("paid", 1)), run_id=typo)
            await handle.mutate("o-1", storage.put("o-1", Order("closed", 1)), run_id=other)
        warnings = [
            r.getMessage() for r in caplog.records if "no registered secrets" in r.getMessage()
        ]
        assert len(warnings) == 2
        assert f'"{typo}"' in warnings[0]
        assert f'"{other}"' in warnings[1]
        assert len(await handle.history("o-1", field="status")) == 3


async def test_unknown_run_error_refuses_before_apply(aio_backend: Backend) -> None:
    """Item 10: ``unknown_run="error"`` raises ``InvalidArgumentError`` before ``apply``."""
    async with open_engine(*aio_backend, unknown_run="error") as engine:
        handle, storage = _orders(engine)
        called: list[int] = []
        with pytest.raises(InvalidArgumentError, match="typo-run"):
            await handle.mutate("o-1", _recording(called), run_id=fresh_id("typo-run"))
        assert called == []
        assert await handle.history("o-1") == ()
        empty = fresh_id("empty-run")
        await engine.secrets.register(empty, [])  # known, without secrets
        await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id=empty)
        assert len(await handle.history("o-1", field="status")) == 1


@pytest.mark.parametrize("policy", ["error", "warn", "allow"])
async def test_compose_takes_the_unknown_run_policy(
    policy: Literal["error", "warn", "allow"], caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: ``compose.in_memory(unknown_run=...)`` sets the policy; others are refused."""
    async with compose.in_memory(unknown_run=policy) as engine:
        handle, storage = _orders(engine)
        assert engine.secrets.unknown_run == policy
        with caplog.at_level(logging.WARNING):
            if policy == "error":
                with pytest.raises(InvalidArgumentError):
                    await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="r")
            else:
                await handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="r")
        logged = [r for r in caplog.records if "no registered secrets" in r.getMessage()]
        assert len(logged) == (1 if policy == "warn" else 0)
    with pytest.raises(InvalidArgumentError, match="unknown_run"):
        compose.in_memory(unknown_run="strict")  # type: ignore[arg-type]


# == the in-memory asyncio adapters against the async contract suites =====================
# (test_adapter_contracts::TestInMemoryStore and test_memory_feed::TestMemoryFeed run the
# blocking memory adapters through their contracts; only the PostgreSQL asyncio adapters
# were run through the async twins.)


class TestAsyncInMemoryStore(AsyncEntityStoreContract):
    """``AsyncInMemoryEntityStore`` honours the async store contract."""

    @pytest.fixture
    def open_store(self, clock: ManualClock) -> OpenStore:
        """A fresh store on the suite's clock."""

        @asynccontextmanager
        async def opened() -> AsyncIterator[AsyncInMemoryEntityStore]:
            store = AsyncInMemoryEntityStore(clock)
            try:
                yield store
            finally:
                await store.close()

        return opened


class TestAsyncMemoryFeed(AsyncChangeFeedContract):
    """``AsyncMemoryFeed`` fed by ``AsyncInMemoryEntityStore`` honours the async feed
    contract."""

    @pytest.fixture
    def open_world(self, clock: ManualClock) -> OpenWorld:
        """The store committing into a memory feed, on one manual clock."""

        @asynccontextmanager
        async def opened() -> AsyncIterator[AsyncFeedWorld]:
            memory = MemoryFeed(clock)
            store = AsyncInMemoryEntityStore(clock, on_commit=memory.record)
            feed = AsyncMemoryFeed(memory)
            try:
                yield AsyncFeedWorld(store=store, feed=feed)
            finally:
                await feed.close()
                await store.close()

        return opened

"""SPEC §8 — temporal queries through the handle: since when, for how long, how often, when."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from reactive_entities import Engine, EntityHandle, UnknownFieldError, compose
from reactive_entities.adapters.memory import InMemoryEntityStore, ManualClock
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.plugin import DictStorage

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@attrs.define
class World:
    """An engine on a manual clock with the incident kind."""

    engine: Engine
    handle: EntityHandle[Incident]
    storage: DictStorage[Incident]
    clock: ManualClock
    store: InMemoryEntityStore


@pytest.fixture
def world() -> Iterator[World]:
    """The world, with inc-1 created at T0 and flapped open→investigating→open at +1, +2 min."""
    clock = ManualClock(T0)
    store = InMemoryEntityStore(clock)
    with compose.in_memory(clock=clock, store=store) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("inc-1", storage.put("inc-1", Incident("open", "low")))
        for status in ("investigating", "open"):
            clock.advance(MINUTE)
            handle.mutate("inc-1", storage.patch("inc-1", status=status))
        yield World(engine, handle, storage, clock, store)


def test_spec_8_in_state_since_is_the_newest_rows_time(world: World) -> None:
    """SPEC §8: in_state_since is the time of the field's newest row when it matches."""
    assert world.handle.in_state_since("inc-1", "status") == T0 + 2 * MINUTE
    assert world.handle.in_state_since("inc-1", "severity") == T0


def test_spec_8_in_state_since_absent_entity_does_not_consult_store(world: World) -> None:
    """SPEC §8: an absent entity answers None without asking the store."""

    class Exploding(InMemoryEntityStore):
        def latest_transition(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("store consulted")

    with compose.in_memory(store=Exploding()) as engine:
        handle, _ = define_incidents(engine)
        assert handle.in_state_since("ghost", "status") is None
        assert handle.in_state_for("ghost", "status") is None


def test_spec_8_in_state_since_none_without_rows(world: World) -> None:
    """SPEC §8: an entity the plugin has but the log never saw answers None."""
    world.storage.rows["legacy"] = Incident("open", "low")
    assert world.handle.in_state_since("legacy", "status") is None


def test_spec_8_in_state_since_none_when_log_and_state_disagree(world: World) -> None:
    """SPEC §8: if the plugin's value differs from the newest row, the answer is None."""
    world.storage.rows["inc-1"] = Incident("resolved", "low")  # written behind our back
    assert world.handle.in_state_since("inc-1", "status") is None


def test_spec_8_masked_row_is_trusted(world: World) -> None:
    """SPEC §8: a masked newest row counts as matching the current value."""
    world.clock.advance(MINUTE)
    world.handle.mutate("inc-1", world.storage.patch("inc-1", token="new"))
    assert world.handle.in_state_since("inc-1", "token") == T0 + 3 * MINUTE


def test_spec_8_in_state_for(world: World) -> None:
    """SPEC §8: in_state_for is now − since, never negative."""
    world.clock.advance(timedelta(seconds=90))
    assert world.handle.in_state_for("inc-1", "status") == timedelta(seconds=90)
    assert world.handle.in_state_for("inc-1", "severity") == 2 * MINUTE + timedelta(seconds=90)


def test_spec_8_in_state_for_never_negative(world: World) -> None:
    """SPEC §8: a store clock behind the row stamp still yields a non-negative duration."""

    class Lagging(InMemoryEntityStore):
        def now(self) -> datetime:
            return T0 - timedelta(days=1)

    with compose.in_memory(clock=world.clock, store=Lagging(world.clock)) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("x", storage.put("x", Incident("open", "low")))
        assert handle.in_state_for("x", "status") == timedelta(0)


def test_spec_8_transition_count_window_is_inclusive(world: World) -> None:
    """SPEC §8: rows with now − window ≤ t ≤ now count, create rows included."""
    assert world.handle.transition_count("inc-1", "status", window=2 * MINUTE) == 3
    assert world.handle.transition_count("inc-1", "status", window=MINUTE) == 2
    assert world.handle.transition_count("inc-1", "status", window=timedelta(seconds=59)) == 1
    world.clock.advance(timedelta(seconds=30))
    assert world.handle.transition_count("inc-1", "status", window=MINUTE) == 1


def test_spec_8_transition_count_works_after_remove(world: World) -> None:
    """SPEC §8: transition_count still answers for a removed entity."""
    world.handle.remove("inc-1", world.storage.delete("inc-1"))
    assert world.handle.transition_count("inc-1", "status", window=timedelta(hours=1)) == 3


@pytest.mark.parametrize("field", ["status", "severity", "title"])
def test_spec_8_value_at(world: World, field: str) -> None:
    """SPEC §8: value_at is the newest row's to_value at or before the instant."""
    expected = {
        "status": ["open", "open", "investigating", "open"],
        "severity": ["low", "low", "low", "low"],
        "title": ["", "", "", ""],
    }[field]
    instants = [T0, T0 + timedelta(seconds=59), T0 + MINUTE, T0 + 2 * MINUTE]
    assert [world.handle.value_at("inc-1", field, at) for at in instants] == expected
    assert world.handle.value_at("inc-1", field, T0 - timedelta(microseconds=1)) is None


def test_spec_8_value_at_after_remove_and_recreate(world: World) -> None:
    """SPEC §8: value_at is None after a remove, and the new value after a re-create."""
    world.clock.advance(MINUTE)
    removed_at = world.clock.now()
    world.handle.remove("inc-1", world.storage.delete("inc-1"))
    world.clock.advance(MINUTE)
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "high")))
    assert world.handle.value_at("inc-1", "status", removed_at - MINUTE) == "open"
    assert world.handle.value_at("inc-1", "status", removed_at) is None
    assert world.handle.value_at("inc-1", "status", world.clock.now()) == "resolved"


def test_spec_8_value_at_same_instant_remove_then_create(world: World) -> None:
    """SPEC §8: with equal stamps, recording order decides (remove then create = exists)."""
    world.handle.remove("inc-1", world.storage.delete("inc-1"))
    world.handle.mutate("inc-1", world.storage.put("inc-1", Incident("resolved", "low")))
    assert world.handle.value_at("inc-1", "status", world.clock.now()) == "resolved"


def test_spec_8_history_order_since_and_limit(world: World) -> None:
    """SPEC §8/§13.11: history is oldest first; since inclusive; limit keeps the newest N."""
    statuses = [r.to_value for r in world.handle.history("inc-1", field="status")]
    assert statuses == ["open", "investigating", "open"]
    since = [r.to_value for r in world.handle.history("inc-1", field="status", since=T0 + MINUTE)]
    assert since == ["investigating", "open"]
    newest = [r.to_value for r in world.handle.history("inc-1", field="status", limit=2)]
    assert newest == ["investigating", "open"]
    assert world.handle.history("inc-1", field="status", limit=0) == ()
    everything = world.handle.history("inc-1")
    assert len(everything) == 5 + 2
    assert [r.transitioned_at for r in everything] == sorted(r.transitioned_at for r in everything)


def test_spec_8_history_returns_records(world: World) -> None:
    """SPEC §7: history rows are TransitionRecord values with aware UTC timestamps."""
    row = world.handle.history("inc-1", field="status")[-1]
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
def test_spec_8_unknown_field_raises(world: World, call: object) -> None:
    """SPEC §8: a field that is not a field of the kind raises UnknownFieldError."""
    with pytest.raises(UnknownFieldError, match=r'"nope".*incident'):
        call(world.handle)  # type: ignore[operator]


def test_get_and_get_many(world: World) -> None:
    """get reads one entity through read; get_many the present ones, absent left out."""
    world.handle.mutate("inc-2", world.storage.put("inc-2", Incident("resolved", "high")))
    assert world.handle.get("inc-1") == Incident("open", "low")
    assert world.handle.get("ghost") is None
    many = world.handle.get_many(["inc-2", "ghost", "inc-1", "inc-2"])
    assert many == {"inc-2": Incident("resolved", "high"), "inc-1": Incident("open", "low")}
    assert list(many) == ["inc-2", "inc-1"]

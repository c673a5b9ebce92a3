"""SPEC §9 — subscriptions: filters, order, isolation of failing handlers, cancel."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from reactive_entities import (
    ChangeEvent,
    Engine,
    InvalidArgumentError,
    UnknownFieldError,
    UnknownKindError,
    compose,
)
from reactive_entities.testing.examples import Incident, Satellite, define_incidents
from reactive_entities.testing.plugin import DictStorage

_STORAGES: dict[int, DictStorage[Incident]] = {}


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An engine with the incident and satellite kinds."""
    with compose.in_memory() as engine:
        _, storage = define_incidents(engine)
        _STORAGES[id(engine)] = storage
        engine.define_entity("sat", Satellite, read=DictStorage[Satellite]().read)
        yield engine
        del _STORAGES[id(engine)]


def _write_incident(engine: Engine, entity_id: str, **changes: Any) -> None:
    storage = _STORAGES[id(engine)]
    if entity_id not in storage.rows:
        storage.rows[entity_id] = Incident("open", "low")
        apply = storage.put(entity_id, attrs.evolve(storage.rows.pop(entity_id), **changes))
    else:
        apply = storage.patch(entity_id, **changes)
    engine.handle("incident").mutate(entity_id, apply)


def test_spec_9_all_kinds_all_fields(engine: Engine) -> None:
    """SPEC §9: no filters → every event of every kind."""
    got: list[ChangeEvent] = []
    engine.subscribe(got.append)
    _write_incident(engine, "i")
    engine.handle("sat").mutate("s", lambda: Satellite("nominal", "eu"))
    assert [(e.kind, e.op) for e in got] == [("incident", "create"), ("sat", "create")]


def test_spec_9_kind_filter(engine: Engine) -> None:
    """SPEC §9: a kind filter delivers only that kind's events."""
    got: list[ChangeEvent] = []
    engine.subscribe(got.append, kind="sat")
    _write_incident(engine, "i")
    engine.handle("sat").mutate("s", lambda: Satellite("nominal", "eu"))
    assert [e.kind for e in got] == ["sat"]


def test_spec_9_fields_filter_matches_any_changed_field(engine: Engine) -> None:
    """SPEC §9: a fields filter delivers events touching any of the fields."""
    got: list[ChangeEvent] = []
    engine.subscribe(got.append, kind="incident", fields={"status"})
    _write_incident(engine, "i")  # create touches every field
    _write_incident(engine, "i", severity="high")  # not status
    _write_incident(engine, "i", status="resolved", title="t")
    assert [e.changed_fields for e in got] == [
        ("severity", "status", "system_ids", "title", "token"),
        ("status", "title"),
    ]


def test_spec_9_single_field_name_string(engine: Engine) -> None:
    """A lone field name given as a str means that one field."""
    got: list[ChangeEvent] = []
    engine.subscribe(got.append, kind="incident", fields="severity")
    _write_incident(engine, "i")
    _write_incident(engine, "i", status="resolved")
    assert len(got) == 1


def test_spec_9_handlers_get_events_after_recording_in_order(engine: Engine) -> None:
    """SPEC §9: a handler runs after the change is recorded, in recording order."""
    seen: list[tuple[str, int]] = []
    handle = engine.handle("incident")

    def handler(event: ChangeEvent) -> None:
        rows = handle.history(event.entity_id)
        assert event.change_id in {r.change_id for r in rows}
        seen.append((str(event.delta.get("title")), len(rows)))

    engine.subscribe(handler, kind="incident")
    _write_incident(engine, "i", title="1")
    _write_incident(engine, "i", title="2")
    _write_incident(engine, "i", title="3")
    assert seen == [("1", 5), ("2", 6), ("3", 7)]


def test_spec_9_failing_handler_is_logged_and_isolated(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC §9/§13.1: a raising handler is logged at WARNING; others and the caller go on."""
    got: list[ChangeEvent] = []

    def bad(event: ChangeEvent) -> None:
        raise RuntimeError("handler broke")

    engine.subscribe(bad)
    engine.subscribe(got.append)
    with caplog.at_level(logging.WARNING):
        _write_incident(engine, "i")
    assert len(got) == 1
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert records
    assert "handler broke" in records[0].getMessage()
    assert records[0].exc_info is None


def test_spec_9_cancel_is_idempotent(engine: Engine) -> None:
    """SPEC §9: cancel stops delivery; cancel/close again does nothing."""
    got: list[ChangeEvent] = []
    subscription = engine.subscribe(got.append)
    _write_incident(engine, "i")
    subscription.cancel()
    subscription.cancel()
    subscription.close()
    _write_incident(engine, "i", status="resolved")
    assert len(got) == 1


def test_spec_9_subscription_as_context_manager(engine: Engine) -> None:
    """SPEC §9: leaving the with-block cancels the subscription."""
    got: list[ChangeEvent] = []
    with engine.subscribe(got.append):
        _write_incident(engine, "i")
    _write_incident(engine, "i", status="resolved")
    assert len(got) == 1


def test_spec_9_handler_may_cancel_itself_during_delivery(engine: Engine) -> None:
    """Cancelling inside a handler is safe and other handlers still get the event."""
    got: list[ChangeEvent] = []
    holder: dict[str, object] = {}

    def once(event: ChangeEvent) -> None:
        holder["sub"].cancel()  # type: ignore[attr-defined]

    holder["sub"] = engine.subscribe(once)
    engine.subscribe(got.append)
    _write_incident(engine, "i")
    _write_incident(engine, "i", status="resolved")
    assert len(got) == 2


def test_spec_9_subscribe_validates(engine: Engine) -> None:
    """Subscribing checks the handler, the kind and the fields."""
    with pytest.raises(InvalidArgumentError):
        engine.subscribe("not callable")  # type: ignore[arg-type]
    with pytest.raises(UnknownKindError):
        engine.subscribe(print, kind="nope")
    with pytest.raises(UnknownFieldError):
        engine.subscribe(print, kind="incident", fields={"nope"})
    with pytest.raises(InvalidArgumentError):
        engine.subscribe(print, fields=set())

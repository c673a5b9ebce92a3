"""Events, plans, transitions, records and the ``ABSENT`` sentinel (SPEC §6, §7)."""

from __future__ import annotations

import copy
import importlib
import pickle
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

import reactive_entities
from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.events import (
    ABSENT,
    Absent,
    ChangeEvent,
    ChangeRecord,
    Plan,
    Transition,
    TransitionRecord,
    iso_utc,
)

AT = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def event(occurred_at: datetime = AT) -> ChangeEvent:
    """An update event with every field set."""
    return ChangeEvent(
        kind="incident",
        entity_id="inc-1",
        op="update",
        prev={"status": "open"},
        next={"status": "resolved"},
        delta={"status": "resolved"},
        changed_fields=("status",),
        actor=Actor.user("u-1", "Ada"),
        run_id="run-1",
        occurred_at=occurred_at,
        change_id="c-1",
    )


def test_absent_is_falsy_with_repr_absent() -> None:
    """``ABSENT`` is falsy and reads ``ABSENT``."""
    assert not ABSENT
    assert repr(ABSENT) == "ABSENT"
    assert ABSENT is not None


def test_absent_survives_pickle_and_copy() -> None:
    """Pickling, copying and deep-copying ``ABSENT`` give ``ABSENT`` itself."""
    assert pickle.loads(pickle.dumps(ABSENT)) is ABSENT
    assert copy.copy(ABSENT) is ABSENT
    assert copy.deepcopy(ABSENT) is ABSENT
    assert copy.deepcopy([ABSENT])[0] is ABSENT


def test_absent_is_exported_and_its_type_importable() -> None:
    """``ABSENT`` is exported, and its type lives where pickle looks for it (regression)."""
    assert reactive_entities.ABSENT is ABSENT
    module = importlib.import_module(Absent.__module__)
    assert getattr(module, Absent.__qualname__) is Absent


def test_a_create_row_round_trips_through_pickle() -> None:
    """A transition record from ``ABSENT`` keeps the sentinel through pickle."""
    record = TransitionRecord("k", "i", "f", ABSENT, 1, False, "c", AT)
    assert pickle.loads(pickle.dumps(record)).from_value is ABSENT


def test_iso_utc_has_six_fraction_digits_and_z() -> None:
    """``iso_utc`` writes UTC with microseconds and ``Z``, converting other zones."""
    assert iso_utc(AT) == "2024-01-02T03:04:05.000006Z"
    assert iso_utc(datetime(2024, 1, 2, 0, 0, tzinfo=timezone(timedelta(hours=-3)))) == (
        "2024-01-02T03:00:00.000000Z"
    )
    assert iso_utc(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)) == "0999-12-31T23:59:59.000000Z"


def test_event_to_dict_is_json_ready() -> None:
    """``to_dict`` gives plain JSON values, with the time as ISO UTC ending in ``Z``."""
    assert event().to_dict() == {
        "kind": "incident",
        "entity_id": "inc-1",
        "op": "update",
        "prev": {"status": "open"},
        "next": {"status": "resolved"},
        "delta": {"status": "resolved"},
        "changed_fields": ["status"],
        "actor": {"type": "user", "id": "u-1", "name": "Ada"},
        "run_id": "run-1",
        "occurred_at": "2024-01-02T03:04:05.000006Z",
        "change_id": "c-1",
        "position": None,
    }


def plan_of(change: ChangeEvent) -> Plan:
    """The plan holding every field of ``change`` but its time, with one row."""
    return Plan(
        kind=change.kind,
        entity_id=change.entity_id,
        op=change.op,
        prev=change.prev,
        next=change.next,
        delta=change.delta,
        changed_fields=change.changed_fields,
        actor=change.actor,
        run_id=change.run_id,
        change_id=change.change_id,
        transitions=(Transition("status", "open", "resolved", False),),
    )


def test_plan_event_carries_the_plan_and_the_stamp() -> None:
    """``Plan.event(at)`` is the plan's change, stamped with the store's time ``at``."""
    assert plan_of(event()).event(AT) == event()


def test_plan_event_takes_whatever_time_the_store_stamped() -> None:
    """The plan carries no time: each stamp gives an event at that time, the rest equal."""
    plan = plan_of(event())
    later = AT + timedelta(seconds=1)
    stamped = plan.event(later)
    assert stamped.occurred_at == later
    assert attrs.evolve(stamped, occurred_at=AT) == plan.event(AT)
    assert "occurred_at" not in attrs.fields_dict(Plan)


@pytest.mark.parametrize(
    "value",
    [
        event(),
        plan_of(event()),
        Transition("f", ABSENT, 1, False),
        TransitionRecord("k", "i", "f", None, 1, True, "c", AT),
        ChangeRecord("k", "i", "remove", "c", AT, ("f",), SYSTEM_ACTOR, None),
    ],
)
def test_values_are_frozen(value: object) -> None:
    """Events, plans, transitions and records cannot be changed after creation."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        value.kind = "other"  # type: ignore[attr-defined]


def test_records_compare_by_value() -> None:
    """Two records with the same fields are equal."""
    a = ChangeRecord("k", "i", "create", "c", AT, ("f",), SYSTEM_ACTOR, None)
    b = ChangeRecord("k", "i", "create", "c", AT, ("f",), SYSTEM_ACTOR, None)
    assert a == b

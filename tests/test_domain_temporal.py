"""Temporal arithmetic over a log, with ``now`` passed in (SPEC §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reactive_entities.domain.actor import SYSTEM_ACTOR
from reactive_entities.domain.events import ChangeRecord, Op, TransitionRecord
from reactive_entities.domain.json import JSONValue
from reactive_entities.domain.temporal import (
    first_at_or_after,
    in_state_for,
    in_state_since,
    newest_at_or_before,
    transition_count,
    value_at,
    window_start,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    """The instant ``seconds`` after ``T0``."""
    return T0 + timedelta(seconds=seconds)


def row(seconds: int, to_value: JSONValue = "open", *, masked: bool = False) -> TransitionRecord:
    """A status row stamped ``seconds`` after ``T0``."""
    return TransitionRecord(
        kind="incident",
        entity_id="inc-1",
        field="status",
        from_value=None,
        to_value=to_value,
        masked=masked,
        change_id=f"c-{seconds}",
        transitioned_at=at(seconds),
    )


def change(seconds: int, op: Op) -> ChangeRecord:
    """A change record stamped ``seconds`` after ``T0``."""
    return ChangeRecord(
        kind="incident",
        entity_id="inc-1",
        op=op,
        change_id=f"c-{seconds}",
        occurred_at=at(seconds),
        changed_fields=("status",),
        actor=SYSTEM_ACTOR,
        run_id=None,
    )


ROWS = (row(0), row(10), row(10), row(20), row(30))


def test_window_start_is_now_minus_window() -> None:
    """The window's inclusive lower bound is ``now − window``."""
    assert window_start(at(60), timedelta(seconds=15)) == at(45)


def test_in_state_since_is_none_without_a_row() -> None:
    """No row: the field has no known start."""
    assert in_state_since(None, "open") is None


def test_in_state_since_is_the_rows_time_when_values_agree() -> None:
    """The newest row's time when its value is structurally equal to the current one."""
    assert in_state_since(row(10, 1), 1.0) == at(10)
    assert in_state_since(row(10, {"a": 1, "b": 2}), {"b": 2, "a": 1}) == at(10)


def test_in_state_since_is_none_when_log_and_state_disagree() -> None:
    """A row whose value differs from the current value gives None (``true`` ≠ ``1``)."""
    assert in_state_since(row(10, "open"), "resolved") is None
    assert in_state_since(row(10, 1), True) is None


def test_in_state_since_trusts_a_masked_row() -> None:
    """A masked row cannot be compared and is trusted."""
    assert in_state_since(row(10, "****", masked=True), "hunter22") == at(10)


def test_in_state_for_is_the_elapsed_time() -> None:
    """``now − since``, never negative, None without ``since``."""
    assert in_state_for(at(10), at(70)) == timedelta(minutes=1)
    assert in_state_for(at(70), at(10)) == timedelta(0)
    assert in_state_for(None, at(10)) is None


def test_transition_count_bounds_are_inclusive() -> None:
    """Rows stamped exactly at either bound count."""
    assert transition_count(ROWS, at(10), at(20)) == 3
    assert transition_count(ROWS, at(0), at(30)) == 5
    assert transition_count(ROWS, at(11), at(19)) == 0
    assert transition_count(ROWS, at(30), at(30)) == 1


def test_transition_count_of_an_empty_or_inverted_window_is_zero() -> None:
    """No rows, or ``since`` after ``until``, counts nothing."""
    assert transition_count((), at(0), at(30)) == 0
    assert transition_count(ROWS, at(20), at(10)) == 0


def test_transition_count_compares_instants_across_time_zones() -> None:
    """Bounds in another time zone are compared as instants."""
    minus_five = timezone(timedelta(hours=-5))
    assert transition_count(ROWS, at(10).astimezone(minus_five), at(20)) == 3


def test_transition_count_reads_compact_rows_with_a_stamp_function() -> None:
    """``stamp=`` lets a store keep rows in its own compact form."""
    compact = [(r.transitioned_at, r.to_value) for r in ROWS]
    assert transition_count(compact, at(10), at(20), stamp=lambda pair: pair[0]) == 3


def test_rows_of_unknown_shape_need_a_stamp_function() -> None:
    """Without ``stamp=``, a row that is not a record raises ``TypeError``."""
    with pytest.raises(TypeError, match="stamp="):
        transition_count([("x", 1)], at(0), at(1))


def test_newest_at_or_before() -> None:
    """The newest row at or before the instant; of equal stamps the last recorded."""
    assert newest_at_or_before(ROWS, at(15)) is ROWS[2]
    assert newest_at_or_before(ROWS, at(10)) is ROWS[2]
    assert newest_at_or_before(ROWS, at(0)) is ROWS[0]
    assert newest_at_or_before(ROWS, at(-1)) is None
    assert newest_at_or_before(ROWS, None) is ROWS[-1]
    assert newest_at_or_before((), None) is None


def test_newest_at_or_before_reads_change_records() -> None:
    """Change records are stamped by ``occurred_at``."""
    changes = (change(0, "create"), change(20, "remove"))
    assert newest_at_or_before(changes, at(19)) is changes[0]


def test_first_at_or_after() -> None:
    """The index of the first row at or after ``since`` (``len`` when none is)."""
    assert first_at_or_after(ROWS, at(10)) == 1
    assert first_at_or_after(ROWS, at(11)) == 3
    assert first_at_or_after(ROWS, at(31)) == len(ROWS)


def test_value_at() -> None:
    """The newest row's value while the entity exists; None before or after a remove."""
    assert value_at(change(0, "create"), row(0, "open")) == "open"
    assert value_at(change(5, "update"), row(5, None)) is None
    assert value_at(None, None) is None
    assert value_at(change(20, "remove"), row(10, "open")) is None
    assert value_at(change(0, "create"), None) is None

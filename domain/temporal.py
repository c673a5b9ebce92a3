"""Temporal answers computed from a log (SPEC §8), with ``now`` passed in.

The functions take one field's rows **in recording order** with non-decreasing
``transitioned_at`` (every store keeps its log that way), so windows are binary searches.

>>> from datetime import datetime, timedelta, UTC
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> in_state_for(t0, t0 + timedelta(minutes=5))
datetime.timedelta(seconds=300)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from reactive_entities.domain.events import ChangeRecord, TransitionRecord
from reactive_entities.domain.json import JSONValue, structurally_equal

__all__ = [
    "window_start",
    "in_state_since",
    "in_state_for",
    "transition_count",
    "newest_at_or_before",
    "first_at_or_after",
    "value_at",
]


_Row = TypeVar("_Row")


def _stamp(row: Any) -> datetime:
    if isinstance(row, TransitionRecord):
        return row.transitioned_at
    if isinstance(row, ChangeRecord):
        return row.occurred_at
    raise TypeError(f"pass stamp= to read the timestamp of a {type(row).__name__}")


def window_start(now: datetime, window: timedelta) -> datetime:
    """The inclusive lower bound of ``window`` ending at ``now``."""
    return now - window


def in_state_since(latest: TransitionRecord | None, current: JSONValue) -> datetime | None:
    """When the field entered its current value, from the field's newest row.

    None when there is no row, or when the row's value disagrees with the current value
    (the log and the plugin's state diverged). A masked row cannot be compared, so it is
    trusted.
    """
    if latest is None:
        return None
    if latest.masked or structurally_equal(latest.to_value, current):
        return latest.transitioned_at
    return None


def in_state_for(since: datetime | None, now: datetime) -> timedelta | None:
    """``max(now − since, 0)``, or None when ``since`` is None."""
    if since is None:
        return None
    return max(now - since, timedelta(0))


def transition_count(
    rows: Sequence[_Row],
    since: datetime,
    until: datetime,
    *,
    stamp: Callable[[_Row], datetime] = _stamp,
) -> int:
    """How many rows have ``since ≤ stamp ≤ until`` (both bounds inclusive).

    ``stamp`` reads a row's timestamp, so a store may keep rows in a compact form.
    """
    if since > until:
        return 0
    lo = bisect_left(rows, since, key=stamp)
    hi = bisect_right(rows, until, key=stamp)
    return max(hi - lo, 0)


def newest_at_or_before(
    rows: Sequence[_Row],
    at: datetime | None,
    *,
    stamp: Callable[[_Row], datetime] = _stamp,
) -> _Row | None:
    """The newest row stamped at or before ``at`` (the newest overall when ``at`` is None)."""
    if not rows:
        return None
    if at is None:
        return rows[-1]
    i = bisect_right(rows, at, key=stamp)
    return rows[i - 1] if i else None


def first_at_or_after(
    rows: Sequence[_Row], since: datetime, *, stamp: Callable[[_Row], datetime] = _stamp
) -> int:
    """The index of the first row stamped at or after ``since``."""
    return bisect_left(rows, since, key=stamp)


def value_at(latest_change: ChangeRecord | None, latest_row: TransitionRecord | None) -> JSONValue:
    """A field's value at an instant, from the entity's newest change and the field's
    newest row, both taken at or before that instant.

    None when the entity did not exist then: no change yet, or the newest was a remove.
    """
    if latest_change is None or latest_change.op == "remove" or latest_row is None:
        return None
    return latest_row.to_value

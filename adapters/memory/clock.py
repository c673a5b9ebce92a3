"""Clocks: the system clock, and a manual clock for tests and simulations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from reactive_entities.ports.clock import Clock

__all__ = ["SystemClock", "ManualClock"]


class SystemClock(Clock):
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """The current instant."""
        return datetime.now(UTC)


class ManualClock(Clock):
    """A clock that moves only when told to; thread-safe.

    >>> clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(seconds=5)).isoformat()
    '2024-01-01T00:00:05+00:00'
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime(2024, 1, 1, tzinfo=UTC)
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current instant."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (never backwards) and return the new instant."""
        if delta < timedelta(0):
            raise ValueError("a ManualClock never goes backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``, which must not be earlier than now."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("ManualClock needs a timezone-aware instant")
        with self._lock:
            if moment < self._now:
                raise ValueError("a ManualClock never goes backwards")
            self._now = moment.astimezone(UTC)

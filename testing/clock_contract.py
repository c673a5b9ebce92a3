"""The ``Clock`` contract::

class TestMyClock(ClockContract):
    @pytest.fixture
    def clock(self):
        yield MyClock()
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from reactive_entities.ports.clock import Clock
from reactive_entities.testing.overrides import must_override

__all__ = ["ClockContract"]


class ClockContract:
    """Behaviour every ``Clock`` must show."""

    @pytest.fixture
    def clock(self) -> Iterator[Clock]:
        """Override: yield the clock under test."""
        yield from must_override("subclass ClockContract and provide a `clock` fixture")

    def test_now_is_aware_utc(self, clock: Clock) -> None:
        """``now`` is timezone-aware with a zero UTC offset."""
        now = clock.now()
        assert now.tzinfo is not None
        assert now.utcoffset() == timedelta(0)

    def test_now_never_goes_backwards(self, clock: Clock) -> None:
        """Successive readings do not decrease."""
        readings = [clock.now() for _ in range(200)]
        assert readings == sorted(readings)

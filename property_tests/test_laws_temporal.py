"""Laws of the temporal arithmetic against brute force (SPEC §8)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from reactive_entities.domain.events import TransitionRecord
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import log_instants, transition_logs


@given(transition_logs(), log_instants(), log_instants())
def test_transition_count_is_an_inclusive_window(
    rows: tuple[TransitionRecord, ...], since: datetime, until: datetime
) -> None:
    """``transition_count`` counts rows with ``since ≤ stamp ≤ until``, like a scan."""
    laws.transition_count_matches_brute_force(rows, since, until)


@given(transition_logs(), st.none() | log_instants())
def test_newest_at_or_before(rows: tuple[TransitionRecord, ...], at: datetime | None) -> None:
    """``newest_at_or_before`` finds the last row at or before ``at``, like a scan."""
    laws.newest_at_or_before_matches_brute_force(rows, at)


@given(transition_logs(), log_instants())
def test_first_at_or_after(rows: tuple[TransitionRecord, ...], since: datetime) -> None:
    """``first_at_or_after`` finds the first row at or after ``since``, like a scan."""
    laws.first_at_or_after_matches_brute_force(rows, since)

"""The ``ChangeFeed`` port: the change log read as a feed, and the bookkeeping of durable
subscriptions (DESIGN §9, SPEC §15).

A store that keeps a change log can serve it as a feed: every recorded change, in one
total order (:class:`~reactive_entities.domain.position.Position`), readable after any
position. "Settled" is the key word: a store returns only changes that can no longer be
preceded by another change committing later, so a reader that advances its cursor past
what it read never skips anything.

On top of the feed the port keeps what durable subscriptions need, so that every
process sharing the store sees the same state: named cursors (``Broadcast(consumer=…)``)
and, per work-queue group, deliveries with claims, leases, retries and dead letters.
The engine's delivery threads (``durable.py``) drive these methods; an adapter only
stores and answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position

__all__ = ["ChangeFeed", "Claim", "ConsumerStatus", "DeadLetter"]


@attrs.frozen
class Claim:
    """A work-queue delivery claimed by one member until ``lease_until``."""

    group: str
    member: str
    change: ChangeEvent
    attempts: int  #: including this one
    lease_until: datetime
    #: New on every claim: the delivery obeys ``complete``/``retry_later``/``dead_letter``
    #: only while this is its current claim (a claim whose lease expired is "lost").
    token: str


@attrs.frozen
class DeadLetter:
    """A delivery that failed ``attempts`` times and was set aside (kept, retryable)."""

    group: str
    change_id: str
    position: Position
    kind: str
    entity_id: str
    attempts: int
    last_error: str  #: masked
    failed_at: datetime


@attrs.frozen
class ConsumerStatus:
    """Where a named consumer or a work-queue group stands."""

    name: str
    mode: str  #: "broadcast" or "work-queue"
    position: Position | None  #: the last change handled (broadcast) or scanned (group)
    lag_changes: int  #: settled changes after ``position``
    #: Age of the oldest unhandled change — after ``position``, or (work queues) queued,
    #: claimed or waiting for a retry; dead letters excluded. None when there is none.
    lag_seconds: float | None
    in_flight: int  #: claimed, not finished (work queues)
    waiting: int  #: queued or waiting for a retry (work queues)
    dead_letters: int


@runtime_checkable
class ChangeFeed(Protocol):
    """The change log as a gap-safe feed, plus durable subscription bookkeeping."""

    # -- reading -----------------------------------------------------------------------------

    def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Settled changes strictly after ``after`` (from the start when None), in feed
        order, each carrying its ``position``; at most ``limit`` of them."""
        ...

    def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's committed changes, oldest first; ``since`` inclusive; ``limit``
        keeps the newest N."""
        ...

    def head(self) -> Position:
        """A position every change committed from now on will follow: where a new
        subscriber starts."""
        ...

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (quickly, from any thread) when changes may have been committed —
        by this process or, for a shared store, by any other; returns a function that
        stops the calls. Wake-ups may be lost or spurious: readers also poll."""
        ...

    # -- named broadcast cursors --------------------------------------------------------------

    def load_cursor(self, consumer: str) -> Position | None:
        """The last position ``consumer`` handled, None if it never saved one."""
        ...

    def save_cursor(self, consumer: str, position: Position) -> None:
        """Remember that ``consumer`` handled everything up to ``position``."""
        ...

    # -- work queues ---------------------------------------------------------------------------

    def enqueue(self, group: str, kind: str | None) -> int:
        """Turn the settled changes (of ``kind``) the group has not seen yet into pending
        deliveries; a group seen for the first time starts at :meth:`head`. Returns how
        many were queued. Safe to call from every member at once."""
        ...

    def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """Claim the next deliverable change for ``member``: pending and due, or claimed
        with an expired lease; never one whose entity has an older unfinished delivery
        in the group (per-entity order). None when nothing is deliverable."""
        ...

    def complete(self, claim: Claim) -> bool:
        """Mark the claimed delivery done; False if the claim was lost (its lease
        expired and another member took it)."""
        ...

    def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Release the claim; the delivery is due again after ``delay``. ``error`` is
        masked by the caller. False if the claim was lost."""
        ...

    def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside as a dead letter (later changes of its entity proceed).
        False if the claim was lost."""
        ...

    def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters, oldest first."""
        ...

    def retry_dead_letters(self, group: str) -> int:
        """Make the group's dead letters pending again (attempts reset); how many."""
        ...

    def consumers(self) -> Sequence[ConsumerStatus]:
        """Every named consumer and work-queue group, by name."""
        ...

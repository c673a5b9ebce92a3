"""The asyncio twin of the ``ChangeFeed`` port (DESIGN §9–§10).

Same methods, arguments, results and contract as
:class:`reactive_entities.ports.feed.ChangeFeed`; each is a coroutine except
``on_commit``, which only registers a wake-up (``wake`` may be called from any thread or
from the event loop; an async subscription passes one that is safe from both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.feed import Claim, ConsumerStatus, DeadLetter

__all__ = ["AsyncChangeFeed"]


@runtime_checkable
class AsyncChangeFeed(Protocol):
    """The change log as a gap-safe feed, plus durable subscription bookkeeping."""

    async def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Settled changes strictly after ``after``, in feed order, with positions."""
        ...

    async def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's committed changes, oldest first."""
        ...

    async def head(self) -> Position:
        """A position every change committed from now on will follow."""
        ...

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when changes may have been committed; returns the stopper."""
        ...

    async def load_cursor(self, consumer: str) -> Position | None:
        """The last position ``consumer`` handled."""
        ...

    async def save_cursor(self, consumer: str, position: Position) -> None:
        """Remember that ``consumer`` handled everything up to ``position``."""
        ...

    async def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the settled changes the group has not seen; how many."""
        ...

    async def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """Claim the next deliverable change for ``member`` (per-entity order)."""
        ...

    async def complete(self, claim: Claim) -> bool:
        """Mark the claimed delivery done; False if the claim was lost."""
        ...

    async def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Release the claim; due again after ``delay``. False if the claim was lost."""
        ...

    async def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside as a dead letter. False if the claim was lost."""
        ...

    async def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters, oldest first."""
        ...

    async def retry_dead_letters(self, group: str) -> int:
        """Make the group's dead letters pending again; how many."""
        ...

    async def consumers(self) -> Sequence[ConsumerStatus]:
        """Every named consumer and work-queue group, by name."""
        ...

    async def close(self) -> None:
        """Stop listening and release connections; idempotent."""
        ...

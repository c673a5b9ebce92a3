"""The asyncio in-memory change feed: :class:`~reactive_entities.adapters.memory.feed.MemoryFeed`
behind the ``AsyncChangeFeed`` port.

Nothing the in-memory feed does waits (its one lock guards a few list operations), so
each coroutine answers from the blocking feed at once; the feed, its positions and its
work-queue bookkeeping are the very same code as the blocking engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from reactive_entities.adapters.memory.feed import MemoryFeed
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.feed import Claim, ConsumerStatus, DeadLetter

__all__ = ["AsyncMemoryFeed"]


class AsyncMemoryFeed(AsyncChangeFeed):
    """An ``AsyncChangeFeed`` over a :class:`MemoryFeed` (wire the store's ``on_commit``
    to :attr:`feed`'s ``record``, as :func:`reactive_entities.aio.compose.in_memory` does)."""

    def __init__(self, feed: MemoryFeed) -> None:
        #: The blocking feed that keeps the changes.
        self.feed = feed

    async def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Changes strictly after ``after``, in feed order."""
        return self.feed.changes(after, kind=kind, limit=limit)

    async def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's changes, oldest first."""
        return self.feed.entity_changes(kind, entity_id, since=since, limit=limit)

    async def head(self) -> Position:
        """The last position assigned."""
        return self.feed.head()

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` after each appended change; returns the stopper."""
        return self.feed.on_commit(wake)

    async def load_cursor(self, consumer: str) -> Position | None:
        """The position ``consumer`` saved last."""
        return self.feed.load_cursor(consumer)

    async def save_cursor(self, consumer: str, position: Position) -> None:
        """Remember ``position`` as ``consumer``'s cursor."""
        self.feed.save_cursor(consumer, position)

    async def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the group's unseen changes; how many."""
        return self.feed.enqueue(group, kind)

    async def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """Claim the group's next deliverable change for ``member``."""
        return self.feed.claim(group, member, lease)

    async def complete(self, claim: Claim) -> bool:
        """Drop the delivery as done; False if the claim was lost."""
        return self.feed.complete(claim)

    async def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Due again after ``delay``; False if the claim was lost."""
        return self.feed.retry_later(claim, error, delay)

    async def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside; False if the claim was lost."""
        return self.feed.dead_letter(claim, error)

    async def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters, in feed order."""
        return self.feed.dead_letters(group)

    async def retry_dead_letters(self, group: str) -> int:
        """Make the group's dead letters pending again; how many."""
        return self.feed.retry_dead_letters(group)

    async def consumers(self) -> Sequence[ConsumerStatus]:
        """Every named cursor and group, by name."""
        return self.feed.consumers()

    async def close(self) -> None:
        """Nothing to release."""

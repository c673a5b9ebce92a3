"""The asyncio PostgreSQL change feed (the ``AsyncChangeFeed`` port): the feed of
``feed.py`` — same statements, order, cursors and work-queue bookkeeping, built once in
``feed_sql.py`` — run through an :class:`AsyncPostgresEntityStore`.

Wake-ups: one LISTEN connection per feed, held by a task of the event loop. It starts
with the first :meth:`AsyncPostgresFeed.on_commit` (which must be called inside the
running loop), LISTENs, wakes everyone so they catch up, then wakes them on every
notification; a lost connection is opened again with back-off. :meth:`close` cancels
the task and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import psycopg

from reactive_entities.adapters.postgres.feed import (
    LISTENER_BACKOFF_MAX,
    listen_statement,
    log_lost_listener,
)
from reactive_entities.adapters.postgres.feed_sql import FeedOperations, Wakes
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.feed import Claim, ConsumerStatus, DeadLetter

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.async_store import AsyncPostgresEntityStore

__all__ = ["AsyncPostgresFeed"]

_LOGGER = logging.getLogger("reactive_entities.feed")
#: How long ``close`` waits for the listener task to end (seconds).
_STOP_WAIT = 3.0


class AsyncPostgresFeed(AsyncChangeFeed):
    """The change feed of an :class:`AsyncPostgresEntityStore` (its pool, schema, clock)."""

    def __init__(
        self,
        store: AsyncPostgresEntityStore,
        *,
        conninfo: str,
        logger: logging.Logger | None = None,
        scan_limit: int = 1000,
    ) -> None:
        self._store = store
        self._ops = FeedOperations(store.schema, store._clock, scan_limit=scan_limit)
        self._conninfo = conninfo
        self._logger = logger if logger is not None else _LOGGER
        self._wakes = Wakes()
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def channel(self) -> str:
        """The NOTIFY channel committing writers signal."""
        return self._ops.channel

    # -- reading -------------------------------------------------------------------------

    async def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Settled changes after ``after``, in feed order."""
        return await self._store._run(self._ops.changes(after, kind, limit))

    async def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's changes, oldest first (``limit`` keeps the newest N)."""
        return await self._store._run(self._ops.entity_changes(kind, entity_id, since, limit))

    async def head(self) -> Position:
        """``(oldest running transaction, 0)``: every later commit sorts after it."""
        return await self._store._run(self._ops.head())

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on every NOTIFY of the schema's channel (and after a reconnect);
        the first call starts the listener task in the running loop."""
        stop = self._wakes.add(wake)
        if self._listener is None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name=f"reactive-entities-listen[{self._store.schema}]"
            )
        return stop

    async def _listen(self) -> None:
        delay = 0.1
        listen = listen_statement(self.channel)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(listen)
                    delay = 0.1
                    self._wakes.wake_all()  # catch up on whatever was missed meanwhile
                    async for _ in conn.notifies():
                        self._wakes.wake_all()
            except psycopg.Error as error:
                log_lost_listener(self._logger, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTENER_BACKOFF_MAX)

    # -- cursors -------------------------------------------------------------------------

    async def load_cursor(self, consumer: str) -> Position | None:
        """The consumer's stored position."""
        return await self._store._run(self._ops.load_cursor(consumer))

    async def save_cursor(self, consumer: str, position: Position) -> None:
        """Store the consumer's position."""
        await self._store._run(self._ops.save_cursor(consumer, position))

    # -- work queues ---------------------------------------------------------------------

    async def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the group's unseen settled changes (scans repeated until caught up)."""
        total = 0
        while True:
            queued, scanned = await self._store._run(self._ops.scan(group, kind))
            total += queued
            if scanned < self._ops.scan_limit:
                return total

    async def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """The next deliverable change of the group, claimed for ``member``."""
        return await self._store._run(self._ops.claim(group, member, lease))

    async def complete(self, claim: Claim) -> bool:
        """Delete the finished delivery (if the claim still holds)."""
        return await self._store._run(self._ops.complete(claim))

    async def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Make the delivery pending again after ``delay``."""
        return await self._store._run(self._ops.retry_later(claim, error, delay))

    async def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside."""
        return await self._store._run(self._ops.dead_letter(claim, error))

    async def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters in feed order."""
        return await self._store._run(self._ops.dead_letters(group))

    async def retry_dead_letters(self, group: str) -> int:
        """Make every dead letter of the group pending again."""
        return await self._store._run(self._ops.retry_dead_letters(group))

    async def consumers(self) -> Sequence[ConsumerStatus]:
        """Named consumers and groups with their lag and delivery counts."""
        return await self._store._run(self._ops.consumers())

    async def close(self) -> None:
        """Stop the listener task (waiting for it a few seconds at most); idempotent."""
        self._closed = True
        self._wakes.clear()
        listener, self._listener = self._listener, None
        if listener is None or listener.done():
            return
        listener.cancel()
        with suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(listener, _STOP_WAIT)

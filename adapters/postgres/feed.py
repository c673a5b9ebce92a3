"""The PostgreSQL change feed (the ``ChangeFeed`` port): the change log read in a
gap-safe order, wake-ups by LISTEN/NOTIFY, and durable subscription state in tables.

Theory of operation.

* **Order.** Each change row carries ``xid`` (its writing transaction's id, raised to the
  entity's previous change's key — see ``queries``) and ``position``. The feed is ordered
  by ``(xid, position)`` and a reader reads only rows with ``xid`` below
  ``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still running:
  those rows are final. A transaction that commits later has a larger id than every
  finished one, so its rows always land after the cursor of any reader — a reader never
  skips a change, and a rolled-back transaction leaves nothing to wait for.
* **Wake-ups.** A committing write transaction sends one ``pg_notify`` on the schema's
  channel (with its inserts, so it costs no round trip). One dedicated connection per
  feed LISTENs on a background thread; on every (re)connect it LISTENs first and then
  wakes everyone, so they catch up from their cursors; a lost notification only delays
  a reader until its fallback poll.
* **Durable state.** ``consumers`` keeps named broadcast cursors; ``work_groups`` how far
  each work-queue group scanned the feed; ``deliveries`` each group's unfinished
  deliveries, claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, in per-entity order.
  Times (leases, retry delays) come from the database clock unless a clock was injected.

The statements and their decoding live in ``feed_sql.py``, shared with the asyncio feed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from reactive_entities.adapters.postgres.feed_sql import FeedOperations, Wakes, channel_for
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.feed import ChangeFeed, Claim, ConsumerStatus, DeadLetter

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.store import PostgresEntityStore

__all__ = ["PostgresFeed", "channel_for", "LISTENER_BACKOFF_MAX", "listen_statement"]

_LOGGER = logging.getLogger("reactive_entities.feed")
#: The longest wait before a lost LISTEN connection is opened again (seconds).
LISTENER_BACKOFF_MAX = 5.0


def listen_statement(channel: str) -> sql.Composed:
    """``LISTEN`` on ``channel``."""
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


def log_lost_listener(logger: logging.Logger, error: BaseException, delay: float) -> None:
    """Say that the LISTEN connection was lost and when it is tried again."""
    logger.warning(
        "change feed listener lost its connection (%s); reconnecting in %.1f s",
        type(error).__name__,
        delay,
    )


class PostgresFeed(ChangeFeed):
    """The change feed of a :class:`PostgresEntityStore` (its pool, schema and clock)."""

    def __init__(
        self,
        store: PostgresEntityStore,
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
        self._guard = threading.Lock()
        self._listener: _Listener | None = None
        self._closed = False

    @property
    def channel(self) -> str:
        """The NOTIFY channel committing writers signal."""
        return self._ops.channel

    # -- reading -------------------------------------------------------------------------

    def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Settled changes after ``after``, in feed order."""
        return self._store._run(self._ops.changes(after, kind, limit))

    def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's changes, oldest first (``limit`` keeps the newest N)."""
        return self._store._run(self._ops.entity_changes(kind, entity_id, since, limit))

    def head(self) -> Position:
        """``(oldest running transaction, 0)``: every later commit sorts after it."""
        return self._store._run(self._ops.head())

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on every NOTIFY of the schema's channel (and after a reconnect)."""
        stop = self._wakes.add(wake)
        with self._guard:
            if self._listener is None and not self._closed:
                self._listener = _Listener(self)
                self._listener.start()
        return stop

    # -- cursors -------------------------------------------------------------------------

    def load_cursor(self, consumer: str) -> Position | None:
        """The consumer's stored position."""
        return self._store._run(self._ops.load_cursor(consumer))

    def save_cursor(self, consumer: str, position: Position) -> None:
        """Store the consumer's position."""
        self._store._run(self._ops.save_cursor(consumer, position))

    # -- work queues ---------------------------------------------------------------------

    def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the group's unseen settled changes (one scan of up to ``scan_limit``
        changes per transaction, repeated until caught up)."""
        total = 0
        while True:
            queued, scanned = self._store._run(self._ops.scan(group, kind))
            total += queued
            if scanned < self._ops.scan_limit:
                return total

    def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """The next deliverable change of the group, claimed for ``member``."""
        return self._store._run(self._ops.claim(group, member, lease))

    def complete(self, claim: Claim) -> bool:
        """Delete the finished delivery (if the claim still holds)."""
        return self._store._run(self._ops.complete(claim))

    def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Make the delivery pending again after ``delay``."""
        return self._store._run(self._ops.retry_later(claim, error, delay))

    def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside."""
        return self._store._run(self._ops.dead_letter(claim, error))

    def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters in feed order."""
        return self._store._run(self._ops.dead_letters(group))

    def retry_dead_letters(self, group: str) -> int:
        """Make every dead letter of the group pending again."""
        return self._store._run(self._ops.retry_dead_letters(group))

    def consumers(self) -> Sequence[ConsumerStatus]:
        """Named consumers and groups with their lag and delivery counts."""
        return self._store._run(self._ops.consumers())

    def close(self) -> None:
        """Stop the listener thread (within a second or so); idempotent."""
        with self._guard:
            self._closed = True
            listener, self._listener = self._listener, None
        self._wakes.clear()
        if listener is not None:
            listener.stop()


class _Listener:
    """The feed's LISTEN connection, on a named daemon thread."""

    def __init__(self, feed: PostgresFeed) -> None:
        self._feed = feed
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"reactive-entities-listen[{feed._store.schema}]", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        feed = self._feed
        delay = 0.1
        listen = listen_statement(feed.channel)
        while not self._stop.is_set():
            try:
                with psycopg.connect(feed._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(listen)
                    delay = 0.1
                    feed._wakes.wake_all()  # catch up on whatever was missed meanwhile
                    while not self._stop.is_set():
                        # Ends after half a second without stopping: the stop flag is
                        # checked at least that often.
                        for _ in conn.notifies(timeout=0.5):
                            feed._wakes.wake_all()
            except psycopg.Error as error:
                if self._stop.is_set():
                    return
                log_lost_listener(feed._logger, error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, LISTENER_BACKOFF_MAX)

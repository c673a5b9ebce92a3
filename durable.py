"""Durable subscriptions: ``Broadcast`` and ``WorkQueue`` handlers fed from the change
feed on background threads owned by the engine (DESIGN §9).

Theory of operation. Each durable subscription is one :class:`DurableSubscription` with
one named daemon thread. The thread sleeps until the feed wakes it (a commit here or, on
PostgreSQL, a NOTIFY from any process) or its poll interval passes, then catches up:

* **Broadcast** reads the feed after its cursor, calls the handler for each matching
  change in feed order, and moves the cursor past it — stored under the consumer's name
  when it has one, after each change, so a restarted process resumes right after the
  last change it handled (saved once per batch read and when the subscription stops, so
  a killed process may see the end of its last batch again). A handler that raises is
  logged (masked) and the change is passed: a broadcast does not block on one bad
  change.
* **WorkQueue** queues the group's unseen changes (any member may; the feed serializes
  them), then claims deliveries one at a time: handler, then ``complete``; a handler
  that raises is retried after a doubling delay until ``max_retries`` retries were
  spent, then dead-lettered (kept, listed, retryable). A member that dies keeps its
  claim only until the lease expires.

Delivery is at least once: a process that dies between handling a change and recording
that it did will see it again. Handlers de-duplicate on ``change_id``.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.domain.secret_set import EMPTY_SECRETS
from reactive_entities.domain.subscriptions import Broadcast, WorkQueue
from reactive_entities.event_filter import wants
from reactive_entities.masked_logging import log_failure, masked_error
from reactive_entities.ports.feed import ChangeFeed, Claim
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = [
    "DurableSubscription",
    "DEFAULT_POLL_INTERVAL",
    "BATCH",
    "log_feed_failure",
    "new_member",
    "retry_delay",
    "sooner",
    "subscription_name",
]

#: How often a durable subscription looks at the feed without being woken (seconds).
DEFAULT_POLL_INTERVAL = 1.0
#: How many changes a broadcast reads from the feed at a time.
BATCH = 200
_members = itertools.count(1)


def new_member() -> str:
    """A work-queue member name unique across hosts, processes and subscriptions."""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_members)}"


def subscription_name(mode: Broadcast | WorkQueue, member: str) -> str:
    """What a durable subscription's thread or task is called (after ``reactive-entities-``)."""
    if isinstance(mode, Broadcast):
        return f"broadcast[{mode.consumer or member}]"
    return f"work-queue[{mode.group}]"


def log_feed_failure(logger: logging.Logger, name: str, error: Exception) -> None:
    """The durable subscription ``name`` could not read the feed; it will retry."""
    logger.warning(
        "durable subscription %s could not read the feed (%s: %s); retrying",
        name,
        type(error).__name__,
        str(error).splitlines()[0] if str(error) else "",
    )


def retry_delay(mode: WorkQueue, claim: Claim) -> timedelta | None:
    """After a failed attempt: how long until the next one, None to dead-letter it."""
    if claim.attempts > mode.max_retries:
        return None
    return mode.delay(claim.attempts)


def sooner(soonest: float | None, delay: timedelta) -> float:
    """The earlier of a scheduled wake-up (seconds, or None) and ``delay``."""
    seconds = delay.total_seconds()
    return seconds if soonest is None else min(soonest, seconds)


class DurableSubscription:
    """One ``Broadcast`` or ``WorkQueue`` subscription and its thread; ``cancel()``
    (also ``close()`` or leaving a ``with``) stops it."""

    def __init__(
        self,
        feed: ChangeFeed,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None,
        fields: frozenset[str] | None,
        mode: Broadcast | WorkQueue,
        secrets: SecretRegistry,
        logger: logging.Logger,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_stop: Callable[[DurableSubscription], None] | None = None,
    ) -> None:
        self.handler = handler
        self.kind = kind
        self.fields = fields
        self.mode = mode
        self._feed = feed
        self._secrets = secrets
        self._logger = logger
        self._poll = poll_interval
        self._on_stop = on_stop
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cursor: Position | None = None
        self._soonest: float | None = None  # seconds until a scheduled retry is due
        self._saved: Position | None = None  # a named consumer's last stored position
        self.member = new_member()
        name = subscription_name(mode, self.member)
        if isinstance(mode, Broadcast):
            stored = None if mode.consumer is None else feed.load_cursor(mode.consumer)
            self._cursor = stored if stored is not None else feed.head()
            self._saved = stored
        else:
            feed.enqueue(mode.group, kind)  # a new group starts here, not at the next wake
        self._unsubscribe = feed.on_commit(self._wake.set)
        self._thread = threading.Thread(
            target=self._run, name=f"reactive-entities-{name}", daemon=True
        )
        self._thread.start()

    @property
    def active(self) -> bool:
        """Whether the subscription still delivers."""
        return not self._stop.is_set()

    @property
    def cursor(self) -> Position | None:
        """A broadcast's position: the last change it handled (or where it started)."""
        return self._cursor

    def wake(self) -> None:
        """Look at the feed now rather than at the next poll."""
        self._wake.set()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if isinstance(self.mode, Broadcast):
                    self._broadcast(self.mode)
                else:
                    self._work(self.mode)
            except Exception as error:  # the feed failed: log, wait, try again
                log_feed_failure(self._logger, self._thread.name, error)
                self._stop.wait(self._poll)
                continue
            soonest, self._soonest = self._soonest, None
            self._wake.wait(self._poll if soonest is None else min(self._poll, soonest))
            self._wake.clear()

    def _broadcast(self, mode: Broadcast) -> None:
        feed = self._feed
        try:
            while not self._stop.is_set():
                # Every kind is read (and filtered here) so the cursor — and a named
                # consumer's stored lag — moves past changes of other kinds too.
                batch = feed.changes(self._cursor, limit=BATCH)
                for event in batch:
                    if self._stop.is_set():
                        return
                    if self._matches(event):
                        self._call(event)
                    self._cursor = event.position
                if len(batch) < BATCH:
                    return
        finally:
            self._save_cursor(mode)

    def _save_cursor(self, mode: Broadcast) -> None:
        """Store a named consumer's position: once per batch (a process killed mid-batch
        sees the rest of that batch again — at least once), and when it stops."""
        cursor = self._cursor
        if mode.consumer is not None and cursor is not None and cursor != self._saved:
            self._feed.save_cursor(mode.consumer, cursor)
            self._saved = cursor

    def _work(self, mode: WorkQueue) -> None:
        feed = self._feed
        feed.enqueue(mode.group, self.kind)
        while not self._stop.is_set():
            claim = feed.claim(mode.group, self.member, mode.lease)
            if claim is None:
                return
            self._attempt(mode, claim)

    def _attempt(self, mode: WorkQueue, claim: Claim) -> None:
        feed = self._feed
        event = claim.change
        if not self._matches(event):
            feed.complete(claim)
            return
        try:
            self.handler(event)
        except Exception as error:
            text = self._masked_error(event, error)
            log_failure(
                self._logger, f"work-queue handler {self.handler!r}", event, error, self._secrets
            )
            delay = retry_delay(mode, claim)
            if delay is None:
                feed.dead_letter(claim, text)
            else:
                feed.retry_later(claim, text, delay)
                self._soonest = sooner(self._soonest, delay)
            return
        feed.complete(claim)

    def _matches(self, event: ChangeEvent) -> bool:
        return wants(self.kind, self.fields, event)

    def _call(self, event: ChangeEvent) -> None:
        try:
            self.handler(event)
        except Exception as error:
            log_failure(
                self._logger, f"broadcast handler {self.handler!r}", event, error, self._secrets
            )

    def _masked_error(self, event: ChangeEvent, error: BaseException) -> str:
        secrets = EMPTY_SECRETS
        if event.run_id is not None:
            secrets = self._secrets.secrets_for(event.run_id)
        return masked_error(error, secrets)

    # -- stopping --------------------------------------------------------------------------

    def cancel(self, timeout: float = 5.0) -> None:
        """Stop delivering; waits up to ``timeout`` seconds for a running handler."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._unsubscribe()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._on_stop is not None:
            self._on_stop(self)

    def close(self) -> None:
        """Same as :meth:`cancel`."""
        self.cancel()

    def __enter__(self) -> DurableSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<DurableSubscription {self.mode!r} kind={self.kind!r} {state}>"

"""Durable subscriptions of the asyncio engine: ``Broadcast`` and ``WorkQueue`` handlers
fed from an ``AsyncChangeFeed`` by one asyncio task each (DESIGN §9–§10).

The semantics are the blocking engine's (:mod:`reactive_entities.durable`), whose pure
decisions — which events a subscription wants, when a failed attempt is retried or
dead-lettered, member and task names — are reused as they are. The task sleeps until
the feed wakes it (a commit here or, on PostgreSQL, a NOTIFY from any process) or its
poll interval passes, then catches up:

* **Broadcast** reads the feed after its cursor, awaits the handler for each matching
  change in feed order and moves the cursor past it; a named consumer stores the cursor
  once per batch and when it stops. A handler that raises is logged (masked) and passed.
* **WorkQueue** queues the group's unseen changes, then claims one at a time: handler,
  then ``complete``; a raising handler is retried after a doubling delay up to
  ``max_retries``, then dead-lettered.

Handlers may be plain functions or coroutine functions. ``cancel()`` asks the task to
stop after the handler it is running; ``await subscription.stopped()`` (or ``async
with``) waits for that. Delivery is at least once: handlers de-duplicate on ``change_id``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from types import TracebackType

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.domain.secret_set import EMPTY_SECRETS
from reactive_entities.domain.subscriptions import Broadcast, WorkQueue
from reactive_entities.durable import (
    BATCH,
    DEFAULT_POLL_INTERVAL,
    log_feed_failure,
    new_member,
    retry_delay,
    sooner,
    subscription_name,
)
from reactive_entities.event_filter import wants
from reactive_entities.masked_logging import log_failure_async, log_masked_failure, masked_error
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.feed import Claim

__all__ = ["AsyncDurableSubscription"]


class AsyncDurableSubscription:
    """One ``Broadcast`` or ``WorkQueue`` subscription and its task. Start one with
    :meth:`start` (``AsyncEngine.subscribe`` does); ``cancel()`` stops it."""

    def __init__(
        self,
        feed: AsyncChangeFeed,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None,
        fields: frozenset[str] | None,
        mode: Broadcast | WorkQueue,
        secrets: AsyncSecretRegistry,
        logger: logging.Logger,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_stop: Callable[[AsyncDurableSubscription], None] | None = None,
    ) -> None:
        self.handler = handler
        self.kind = kind
        self.fields = fields
        self.mode = mode
        self.member = new_member()
        self.name = f"reactive-entities-{subscription_name(mode, self.member)}"
        self._feed = feed
        self._secrets = secrets
        self._logger = logger
        self._poll = poll_interval
        self._on_stop = on_stop
        self._wake = asyncio.Event()
        self._stop = False
        self._cursor: Position | None = None
        self._saved: Position | None = None  # a named consumer's last stored position
        self._soonest: float | None = None  # seconds until a scheduled retry is due
        self._unsubscribe: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> AsyncDurableSubscription:
        """Fix where delivery starts (so every change committed from now on is
        delivered), then start the task."""
        feed, mode = self._feed, self.mode
        if isinstance(mode, Broadcast):
            stored = None if mode.consumer is None else await feed.load_cursor(mode.consumer)
            self._cursor = stored if stored is not None else await feed.head()
            self._saved = stored
        else:
            await feed.enqueue(mode.group, self.kind)  # a new group starts here
        loop = asyncio.get_running_loop()

        def wake() -> None:  # from any thread (a LISTEN connection) or from the loop
            loop.call_soon_threadsafe(self._wake.set)

        self._unsubscribe = feed.on_commit(wake)
        self._task = loop.create_task(self._run(), name=self.name)
        return self

    @property
    def active(self) -> bool:
        """Whether the subscription still delivers."""
        return not self._stop

    @property
    def cursor(self) -> Position | None:
        """A broadcast's position: the last change it handled (or where it started)."""
        return self._cursor

    def wake(self) -> None:
        """Look at the feed now rather than at the next poll (from the loop's thread)."""
        self._wake.set()

    # -- the task ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop:
            try:
                if isinstance(self.mode, Broadcast):
                    await self._broadcast(self.mode)
                else:
                    await self._work(self.mode)
            except Exception as error:  # the feed failed: log, wait, try again
                log_feed_failure(self._logger, self.name, error)
                await self._sleep(self._poll)
                continue
            soonest, self._soonest = self._soonest, None
            await self._sleep(self._poll if soonest is None else min(self._poll, soonest))

    async def _sleep(self, seconds: float) -> None:
        """Until woken (a commit, ``wake``, ``cancel``) or ``seconds`` pass."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _broadcast(self, mode: Broadcast) -> None:
        feed = self._feed
        try:
            while not self._stop:
                # Every kind is read (and filtered here) so the cursor moves past changes
                # of other kinds too.
                batch = await feed.changes(self._cursor, limit=BATCH)
                for event in batch:
                    if not self.active:  # cancelled by a handler
                        return
                    if wants(self.kind, self.fields, event):
                        try:
                            await self._handle(event)
                        except Exception as error:
                            what = f"broadcast handler {self.handler!r}"
                            await log_failure_async(self._logger, what, event, error, self._secrets)
                    self._cursor = event.position
                if len(batch) < BATCH:
                    return
        finally:
            cursor = self._cursor
            if mode.consumer is not None and cursor is not None and cursor != self._saved:
                await feed.save_cursor(mode.consumer, cursor)
                self._saved = cursor

    async def _work(self, mode: WorkQueue) -> None:
        feed = self._feed
        await feed.enqueue(mode.group, self.kind)
        while not self._stop:
            claim = await feed.claim(mode.group, self.member, mode.lease)
            if claim is None:
                return
            await self._attempt(mode, claim)

    async def _attempt(self, mode: WorkQueue, claim: Claim) -> None:
        feed = self._feed
        event = claim.change
        if not wants(self.kind, self.fields, event):
            await feed.complete(claim)
            return
        try:
            await self._handle(event)
        except Exception as error:
            secrets = EMPTY_SECRETS
            if event.run_id is not None:
                secrets = await self._secrets.secrets_for(event.run_id)
            what = f"work-queue handler {self.handler!r}"
            log_masked_failure(self._logger, what, event, error, secrets)
            delay = retry_delay(mode, claim)
            if delay is None:
                await feed.dead_letter(claim, masked_error(error, secrets))
            else:
                await feed.retry_later(claim, masked_error(error, secrets), delay)
                self._soonest = sooner(self._soonest, delay)
            return
        await feed.complete(claim)

    async def _handle(self, event: ChangeEvent) -> None:
        result = self.handler(event)
        if inspect.isawaitable(result):
            await result

    # -- stopping --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop delivering after the handler running now, if any (idempotent); await
        :meth:`stopped` to wait for that."""
        if self._stop:
            return
        self._stop = True
        self._wake.set()
        self._unsubscribe()
        if self._on_stop is not None:
            self._on_stop(self)

    def close(self) -> None:
        """Same as :meth:`cancel`."""
        self.cancel()

    async def stopped(self, timeout: float = 5.0) -> None:
        """Cancel, and wait up to ``timeout`` seconds for the task to end; a handler
        still running then is cancelled."""
        self.cancel()
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    def __enter__(self) -> AsyncDurableSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncDurableSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stopped()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<AsyncDurableSubscription {self.mode!r} kind={self.kind!r} {state}>"

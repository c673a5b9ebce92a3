"""The asyncio shell: ``AsyncEngine`` and ``AsyncEntityHandle`` (DESIGN §10).

The same methods, arguments, checks, errors and semantics as the blocking
:class:`~reactive_entities.engine.Engine`: the checks and decisions are literally the
same code (:mod:`reactive_entities.engine_core`, :mod:`reactive_entities.kind_core`,
:mod:`reactive_entities.shell_checks`, ``domain``). What may wait on I/O is a
coroutine: writes, reads, the temporal queries, the feed, ``subscribe`` (a durable
subscription fixes its start in the feed first), ``derive`` (a failing deriver is
logged masked with its run's secrets, which the registry is asked for), ``migrate`` and
``close``. Defining kinds, ``handle``, ``kinds``, derivers' and declarations'
registration stay plain methods.

``read``, ``apply`` and handlers may be plain functions or coroutine functions: whether
``read`` is one is decided once, at ``define_entity``; ``apply``'s and a handler's
result is awaited when it is awaitable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import cattrs

from reactive_entities.aio.delivery import AsyncDelivery
from reactive_entities.aio.durable import AsyncDurableSubscription
from reactive_entities.aio.run_secrets import AsyncEngineSecrets
from reactive_entities.aio.transaction import AsyncTransaction
from reactive_entities.derivers import Derivers
from reactive_entities.domain import temporal
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import ChangeEvent, TransitionRecord
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.position import Position
from reactive_entities.domain.schema import Schema
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.subscriptions import Broadcast, InProcess, WorkQueue
from reactive_entities.durable import DEFAULT_POLL_INTERVAL
from reactive_entities.engine_core import EngineCore, require_feed
from reactive_entities.ids import new_change_id
from reactive_entities.kind_core import KindCore, Read
from reactive_entities.masked_logging import log_failure_async
from reactive_entities.ports.async_emitter import AsyncEmitter, AsyncSubscriptionHub
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.async_store import AsyncEntityStore
from reactive_entities.ports.emitter import Subscription
from reactive_entities.ports.feed import ConsumerStatus, DeadLetter
from reactive_entities.run_secrets import UnknownRunPolicy
from reactive_entities.shell_checks import check_id, checked_run_id, store_errors

__all__ = ["AsyncEngine", "AsyncEntityHandle", "write_through", "remove_through"]

S = TypeVar("S")
T = TypeVar("T")

#: Seconds ``close`` waits for the durable subscriptions' tasks (as the blocking engine
#: waits for its threads).
_CLOSE_WITHIN = 5.0


class AsyncEntityHandle(KindCore[S]):
    """Reads, writes and temporal questions for one kind, awaited. Get one from
    :meth:`AsyncEngine.define_entity` or :meth:`AsyncEngine.handle`."""

    def __init__(self, engine: AsyncEngine, schema: Schema, read: Read) -> None:
        super().__init__(engine, schema, read)
        self._engine = engine
        self._store = engine.store
        self._read_is_async = inspect.iscoroutinefunction(read) or (
            inspect.iscoroutinefunction(getattr(read, "__call__", None))  # noqa: B004
        )

    # -- writes --------------------------------------------------------------------------

    async def mutate(
        self,
        entity_id: str,
        apply: Callable[[], S | Mapping[str, Any] | Awaitable[S | Mapping[str, Any] | None] | None],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: AsyncTransaction | None = None,
    ) -> S:
        """Run the plugin's write ``apply`` (plain or ``async``) and record what it
        changed (SPEC §5, §14). With ``tx`` the change is recorded in that transaction
        and delivered after it commits. Returns the validated state (never masked)."""
        return await self._write(entity_id, apply, actor, run_id, tx, removing=False)  # type: ignore[no-any-return]

    async def remove(
        self,
        entity_id: str,
        apply: Callable[[], object],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: AsyncTransaction | None = None,
    ) -> None:
        """Run the plugin's delete ``apply`` (plain or ``async``) and record the removal."""
        await self._write(entity_id, apply, actor, run_id, tx, removing=True)

    async def _write(
        self,
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor | None,
        run_id: str | None,
        tx: AsyncTransaction | None,
        *,
        removing: bool,
    ) -> Any:
        """Check the arguments, then run the pipeline in ``tx`` or in a transaction of
        its own, rolled back on any way out but success (cancellation included)."""
        engine = self._engine
        actor = self._check_write(entity_id, apply, actor)
        run = checked_run_id(run_id)
        engine._check_open()
        secrets = EMPTY_SECRETS if run is None else await engine.secrets.for_write(run)
        if tx is not None:
            self._check_tx(tx, entity_id)
            return await tx._write(self, entity_id, apply, actor, run, secrets, removing=removing)
        own = await engine.transaction()
        try:
            state = await own._write(self, entity_id, apply, actor, run, secrets, removing=removing)
        except BaseException:
            await own.rollback()
            raise
        await own.commit()
        return state

    # -- reads ---------------------------------------------------------------------------

    async def get(self, entity_id: str) -> S | None:
        """The entity's current state through the plugin's ``read``, or None if absent."""
        check_id(entity_id)
        self._engine._check_open()
        return (await self._current(entity_id, EMPTY_SECRETS, outside=True))[0]  # type: ignore[no-any-return]

    async def get_many(self, entity_ids: Iterable[str]) -> dict[str, S]:
        """The current states of the ids that exist (absent ids are left out)."""
        ids = self._ids_of(entity_ids)
        return self._states_of(await self._read_outside(ids), ids, EMPTY_SECRETS)

    async def in_state_since(self, entity_id: str, field: str) -> datetime | None:
        """Since when the field has held its current value (SPEC §8)."""
        self._check_query(entity_id, field)
        doc = (await self._current(entity_id, EMPTY_SECRETS, outside=True))[1]
        if doc is None:
            return None  # absent: the store is not consulted
        latest = await self._query(self._store.latest_transition(self._kind, entity_id, field))
        return temporal.in_state_since(latest, doc.get(field))

    async def in_state_for(self, entity_id: str, field: str) -> timedelta | None:
        """How long the field has held its current value (``now − since``, never negative)."""
        since = await self.in_state_since(entity_id, field)
        if since is None:
            return None
        return temporal.in_state_for(since, await self._query(self._store.now()))

    async def transition_count(self, entity_id: str, field: str, *, window: timedelta) -> int:
        """Rows of the field within the last ``window`` (inclusive), by the store's clock."""
        self._check_window(entity_id, field, window)
        return await self._query(
            self._store.count_transitions(self._kind, entity_id, field, window)
        )

    async def value_at(self, entity_id: str, field: str, at: datetime) -> JSONValue:
        """The field's recorded value at ``at``; None if there is none or it was removed."""
        self._check_at(entity_id, field, at)
        store = self._store
        change = await self._query(store.latest_change(self._kind, entity_id, at=at))
        if change is None or change.op == "remove":
            return None
        row = await self._query(store.latest_transition(self._kind, entity_id, field, at=at))
        return temporal.value_at(change, row)

    async def history(
        self,
        entity_id: str,
        *,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[TransitionRecord, ...]:
        """Transition rows oldest first; ``limit`` keeps the newest N (SPEC §8)."""
        self._check_log_query(entity_id, field, since, limit)
        return tuple(
            await self._query(self._store.transitions(self._kind, entity_id, field, since, limit))
        )

    async def changes(
        self, entity_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> tuple[ChangeEvent, ...]:
        """The entity's recorded changes (masked), oldest first, each with its
        ``position``; ``since`` inclusive; ``limit`` keeps the newest N (SPEC §15.5)."""
        self._check_log_query(entity_id, None, since, limit)
        feed = require_feed(self._engine.feed, "changes")
        return tuple(
            await self._query(feed.entity_changes(self._kind, entity_id, since=since, limit=limit))
        )

    # -- helpers -------------------------------------------------------------------------

    async def _read_mapping(self, ids: Sequence[str], connection: Any) -> Mapping[str, Any]:
        found = self._read(ids, connection) if self._read_takes_connection else self._read(ids)
        if self._read_is_async:
            found = await found
        return self._checked_mapping(found, ids)

    async def _read_outside(self, ids: Sequence[str]) -> Mapping[str, Any]:
        """``read`` outside any write: with a connection of the store's for a ``read``
        that takes one (None in memory)."""
        if not self._read_takes_connection:
            return await self._read_mapping(ids, None)
        async with self._store.reader() as connection:
            return await self._read_mapping(ids, connection)

    async def _current(
        self, entity_id: str, secrets: SecretSet, connection: Any = None, *, outside: bool = False
    ) -> tuple[Any, Document | None]:
        """``(state, document)`` as ``read`` has it now; ``(None, None)`` when absent."""
        ids = [entity_id]
        reading = self._read_outside(ids) if outside else self._read_mapping(ids, connection)
        return self._state_of(await reading, entity_id, secrets)

    async def _query(self, pending: Awaitable[T]) -> T:
        with store_errors(self._query_failure):
            return await pending


class AsyncEngine(EngineCore[AsyncEntityHandle[Any]]):
    """Kinds, their handles, subscriptions and secrets, wired to one set of asyncio
    adapters, for the tasks of one event loop.

    Build one with :func:`reactive_entities.aio.compose.in_memory` or ``await``
    :func:`reactive_entities.aio.compose.postgres`; use it as ``async with engine`` or
    ``await engine.close()``.
    """

    def __init__(
        self,
        *,
        store: AsyncEntityStore,
        emitter: AsyncEmitter,
        subscriptions: AsyncSubscriptionHub,
        secrets: AsyncSecretRegistry,
        converter: cattrs.Converter,
        logger: logging.Logger | None = None,
        new_change_id: Callable[[], str] = new_change_id,
        on_close: Sequence[Callable[[], Awaitable[None]]] = (),
        feed: AsyncChangeFeed | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        unknown_run: UnknownRunPolicy = "warn",
    ) -> None:
        super().__init__(
            converter=converter,
            logger=logger,
            derivers=lambda log: Derivers(None, log),
            new_change_id=new_change_id,
        )
        self.store = store
        self.emitter = emitter
        self.secrets = AsyncEngineSecrets(
            secrets, unknown_run=unknown_run, logger=self.logger, is_closed=lambda: self._closed
        )
        self._registry = secrets
        self._subscriptions = subscriptions
        self._on_close = tuple(on_close)
        self._delivery = AsyncDelivery(emitter.emit, self.logger)
        self.feed = feed
        self._poll_interval = poll_interval
        self._durable: set[AsyncDurableSubscription] = set()

    # -- kinds ---------------------------------------------------------------------------

    def define_entity(
        self,
        kind: str,
        state: type[S],
        *,
        read: Callable[..., Mapping[str, S | Mapping[str, Any]]]
        | Callable[..., Awaitable[Mapping[str, S | Mapping[str, Any]]]],
        sensitive: Iterable[str] = (),
    ) -> AsyncEntityHandle[S]:
        """Register a kind and return its handle (SPEC §1). ``read(ids)`` or
        ``read(ids, connection)``, plain or ``async``. Nothing is registered when a
        check fails."""
        return self._define(
            kind, state, read, sensitive, lambda schema: AsyncEntityHandle(self, schema, read)
        )

    # -- transactions --------------------------------------------------------------------

    def transaction(self, connection: Any = None) -> AsyncTransaction:
        """A unit of work (DESIGN §8): ``async with engine.transaction() as tx`` and pass
        ``tx=tx`` to ``mutate``/``remove``. It begins when the block is entered (or when
        awaited). ``connection`` (PostgreSQL) joins an idle ``psycopg.AsyncConnection``
        of the application's, left open and idle afterwards."""
        self._check_open()
        return AsyncTransaction(self, connection)

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
        delivery: InProcess | Broadcast | WorkQueue | None = None,
    ) -> Subscription:
        """Call ``handler`` (plain or ``async``) with each recorded change of ``kind``
        touching ``fields`` (SPEC §9, §15), in this process after commit (the default),
        in every engine sharing the store (:class:`Broadcast`) or in one member of a
        group (:class:`WorkQueue`). A handler that raises is logged, masked, and does
        not affect others (a work queue retries it)."""
        wanted, mode = self._subscription(handler, kind, fields, delivery)
        if isinstance(mode, InProcess):
            return self._subscriptions.subscribe(handler, kind=kind, fields=wanted)
        durable = AsyncDurableSubscription(
            require_feed(self.feed, type(mode).__name__),
            handler,
            kind=kind,
            fields=wanted,
            mode=mode,
            secrets=self._registry,
            logger=self.logger,
            poll_interval=self._poll_interval,
            on_stop=self._durable.discard,
        )
        await durable.start()
        self._durable.add(durable)
        return durable

    # -- the feed ------------------------------------------------------------------------

    async def changes(
        self, after: Position | str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> tuple[ChangeEvent, ...]:
        """Changes from the feed strictly after ``after`` (a position or its ``str``;
        from the start when None), in feed order, at most ``limit`` (SPEC §15.2)."""
        start = self._changes_from(after, kind, limit)
        feed = require_feed(self.feed, "changes")
        return tuple(await _queried(feed.changes(start, kind=kind, limit=limit)))

    async def consumers(self) -> tuple[ConsumerStatus, ...]:
        """Every named broadcast consumer and work-queue group: position, lag, claims
        in flight, dead letters."""
        self._check_open()
        return tuple(await _queried(require_feed(self.feed, "consumers").consumers()))

    async def dead_letters(self, group: str) -> tuple[DeadLetter, ...]:
        """The group's dead letters, oldest first."""
        self._check_open()
        WorkQueue(group=group)  # validates the name
        feed = require_feed(self.feed, "dead_letters")
        return tuple(await _queried(feed.dead_letters(group)))

    async def retry_dead_letters(self, group: str) -> int:
        """Deliver the group's dead letters again (attempts reset); how many."""
        self._check_open()
        WorkQueue(group=group)
        feed = require_feed(self.feed, "retry_dead_letters")
        count = await _queried(feed.retry_dead_letters(group))
        for durable in list(self._durable):
            durable.wake()
        return count

    # -- derivers ------------------------------------------------------------------------

    async def derive(self, event: ChangeEvent) -> tuple[str, ...]:
        """Ids derived from ``event`` by its kind's derivers (plain functions):
        de-duplicated, non-empty strings, in first-seen order. A deriver that raises is
        logged (masked with the run's secrets) and skipped."""
        self._check_open()
        ids, failures = self._derivers.collect(event)
        for derive, error in failures:
            what = f"deriver {derive!r}"
            await log_failure_async(self.logger, what, event, error, self._registry)
        return ids

    # -- lifecycle -----------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the store's schema up to date (a no-op for stores without one)."""
        self._check_open()
        migrate = getattr(self.store, "migrate", None)
        if migrate is not None:
            await migrate()

    async def close(self) -> None:
        """Stop the durable subscriptions (within 5 s), release the feed, the store and
        whatever the composition root opened; idempotent."""
        if self._closed:
            return
        self._closed = True
        durable = list(self._durable)
        if durable:
            await asyncio.gather(*(d.stopped(_CLOSE_WITHIN) for d in durable))
        close_feed = getattr(self.feed, "close", None)
        if close_feed is not None:
            await close_feed()
        await self.store.close()
        for release in self._on_close:
            await release()

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def write_through(
    handle: AsyncEntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``await handle.mutate(...)`` when there is a handle, else just ``apply()``
    (awaited when it returns an awaitable)."""
    await _through(None if handle is None else handle.mutate, entity_id, apply, actor, run_id)


async def remove_through(
    handle: AsyncEntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``await handle.remove(...)`` when there is a handle, else just ``apply()``
    (awaited when it returns an awaitable)."""
    await _through(None if handle is None else handle.remove, entity_id, apply, actor, run_id)


async def _through(
    write: Callable[..., Awaitable[object]] | None,
    entity_id: str,
    apply: Callable[[], object],
    actor: Actor | None,
    run_id: str | None,
) -> None:
    if write is not None:
        await write(entity_id, apply, actor=actor, run_id=run_id)
    elif inspect.isawaitable(result := apply()):
        await result


async def _queried(pending: Awaitable[T], failure: str = "the change feed could not be read") -> T:
    """``await pending``, an adapter's own failure turned into ``StoreError(failure)``."""
    with store_errors(failure):
        return await pending

"""The imperative shell: ``Engine`` and ``EntityHandle``.

Theory of operation. Every write runs in a :class:`~reactive_entities.transaction.Transaction`
— the caller's (``tx=``) or one begun and committed around the single write — whose
pipeline does I/O in a fixed order around one pure decision:

    lock → read prev → apply → plan_write (validate + plan) → record → commit → deliver

``plan_write`` (in ``domain``) validates the next state and decides whether anything
changed; the store stamps and records; events reach in-process handlers after commit,
outside every lock, in recording order per entity (``delivery``).

Ports are used as given; only ``compose`` chooses concrete adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import cattrs

from reactive_entities.delivery import Delivery
from reactive_entities.derivers import Derivers
from reactive_entities.domain import temporal
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import ReactiveEntitiesError
from reactive_entities.domain.events import ChangeEvent, TransitionRecord
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.position import Position
from reactive_entities.domain.schema import Schema
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.subscriptions import Broadcast, InProcess, WorkQueue
from reactive_entities.durable import DEFAULT_POLL_INTERVAL, DurableSubscription
from reactive_entities.engine_core import EngineCore, require_feed
from reactive_entities.ids import new_change_id
from reactive_entities.kind_core import KindCore
from reactive_entities.ports.emitter import Emitter, Subscription, SubscriptionHub
from reactive_entities.ports.feed import ChangeFeed, ConsumerStatus, DeadLetter
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore
from reactive_entities.run_secrets import EngineSecrets, UnknownRunPolicy
from reactive_entities.shell_checks import check_id, checked_run_id, store_errors, store_failure
from reactive_entities.transaction import HeldLocks, Transaction

__all__ = ["Engine", "EntityHandle", "write_through", "remove_through"]

S = TypeVar("S")
T = TypeVar("T")
Read = Callable[..., Mapping[str, Any]]


class EntityHandle(KindCore[S]):
    """Reads, writes and temporal questions for one kind. Get one from
    :meth:`Engine.define_entity` or :meth:`Engine.handle`."""

    def __init__(self, engine: Engine, schema: Schema, read: Read) -> None:
        super().__init__(engine, schema, read)
        self._engine = engine
        self._store = engine.store

    # -- writes --------------------------------------------------------------------------

    def mutate(
        self,
        entity_id: str,
        apply: Callable[[], S | Mapping[str, Any] | None],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: Transaction | None = None,
    ) -> S:
        """Run the plugin's write ``apply`` and record what it changed (SPEC §5, §14).

        With ``tx`` the change is recorded in that transaction and delivered after it
        commits. Returns the validated resulting state (never masked).
        """
        return self._write(entity_id, apply, actor, run_id, tx, removing=False)  # type: ignore[no-any-return]

    def remove(
        self,
        entity_id: str,
        apply: Callable[[], object],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: Transaction | None = None,
    ) -> None:
        """Run the plugin's delete ``apply`` and record the removal (SPEC §5, §14)."""
        self._write(entity_id, apply, actor, run_id, tx, removing=True)

    def _write(
        self,
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor | None,
        run_id: str | None,
        tx: Transaction | None,
        *,
        removing: bool,
    ) -> Any:
        """Check the arguments, then run the pipeline in ``tx`` or in a transaction of
        its own (see :mod:`reactive_entities.transaction`)."""
        engine = self._engine
        actor = self._check_write(entity_id, apply, actor)
        secrets = _run_secrets(engine.secrets, run_id)
        engine._check_open()
        if tx is not None:
            self._check_tx(tx, entity_id)
            return tx._write(self, entity_id, apply, actor, run_id, secrets, removing=removing)
        own = engine._begin(None)
        try:
            state = own._write(self, entity_id, apply, actor, run_id, secrets, removing=removing)
        except BaseException:
            own.rollback()
            raise
        own.commit()
        return state

    # -- reads ---------------------------------------------------------------------------

    def get(self, entity_id: str) -> S | None:
        """The entity's current state through the plugin's ``read``, or None if absent."""
        check_id(entity_id)
        self._engine._check_open()
        return self._current(entity_id, EMPTY_SECRETS, outside=True)[0]  # type: ignore[no-any-return]

    def get_many(self, entity_ids: Iterable[str]) -> dict[str, S]:
        """The current states of the ids that exist (absent ids are left out)."""
        ids = self._ids_of(entity_ids)
        return self._states_of(self._read_outside(ids), ids, EMPTY_SECRETS)

    def in_state_since(self, entity_id: str, field: str) -> datetime | None:
        """Since when the field has held its current value (SPEC §8)."""
        self._check_query(entity_id, field)
        doc = self._current(entity_id, EMPTY_SECRETS, outside=True)[1]
        if doc is None:
            return None  # absent: the store is not consulted
        latest = self._query(lambda: self._store.latest_transition(self._kind, entity_id, field))
        return temporal.in_state_since(latest, doc.get(field))

    def in_state_for(self, entity_id: str, field: str) -> timedelta | None:
        """How long the field has held its current value (``now − since``, never negative)."""
        since = self.in_state_since(entity_id, field)
        if since is None:
            return None
        return temporal.in_state_for(since, self._query(self._store.now))

    def transition_count(self, entity_id: str, field: str, *, window: timedelta) -> int:
        """Rows of the field within the last ``window`` (inclusive), by the store's clock."""
        self._check_window(entity_id, field, window)
        return self._query(
            lambda: self._store.count_transitions(self._kind, entity_id, field, window)
        )

    def value_at(self, entity_id: str, field: str, at: datetime) -> JSONValue:
        """The field's recorded value at ``at``; None if there is none or it was removed."""
        self._check_at(entity_id, field, at)
        store = self._store
        change = self._query(lambda: store.latest_change(self._kind, entity_id, at=at))
        if change is None or change.op == "remove":
            return None
        row = self._query(lambda: store.latest_transition(self._kind, entity_id, field, at=at))
        return temporal.value_at(change, row)

    def history(
        self,
        entity_id: str,
        *,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[TransitionRecord, ...]:
        """Transition rows oldest first; ``limit`` keeps the newest N (SPEC §8)."""
        self._check_log_query(entity_id, field, since, limit)
        rows = self._query(
            lambda: self._store.transitions(self._kind, entity_id, field, since, limit)
        )
        return tuple(rows)

    def changes(
        self, entity_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> tuple[ChangeEvent, ...]:
        """The entity's recorded changes (masked), oldest first, each with its
        ``position``; ``since`` inclusive; ``limit`` keeps the newest N (SPEC §15.5)."""
        self._check_log_query(entity_id, None, since, limit)
        feed = require_feed(self._engine.feed, "changes")
        return self._query(
            lambda: tuple(feed.entity_changes(self._kind, entity_id, since=since, limit=limit))
        )

    # -- helpers -------------------------------------------------------------------------

    def _read_mapping(self, ids: Sequence[str], connection: Any) -> Mapping[str, Any]:
        found = self._read(ids, connection) if self._read_takes_connection else self._read(ids)
        return self._checked_mapping(found, ids)

    def _read_outside(self, ids: Sequence[str]) -> Mapping[str, Any]:
        """``read`` outside any write: with a connection of the store's for a ``read``
        that takes one (None in memory)."""
        if not self._read_takes_connection:
            return self._read_mapping(ids, None)
        with self._store.reader() as connection:
            return self._read_mapping(ids, connection)

    def _current(
        self, entity_id: str, secrets: SecretSet, connection: Any = None, *, outside: bool = False
    ) -> tuple[Any, Document | None]:
        """``(state, document)`` as ``read`` has it now; ``(None, None)`` when absent.
        ``outside`` means no write is running (the store lends a connection)."""
        ids = [entity_id]
        found = self._read_outside(ids) if outside else self._read_mapping(ids, connection)
        return self._state_of(found, entity_id, secrets)

    def _query(self, run: Callable[[], T]) -> T:
        return _queried(run, self._query_failure)


class Engine(EngineCore[EntityHandle[Any]]):
    """Kinds, their handles, subscriptions and secrets, wired to one set of adapters.

    Build one with :func:`reactive_entities.compose.in_memory` or
    :func:`reactive_entities.compose.postgres`; use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        *,
        store: EntityStore,
        emitter: Emitter,
        subscriptions: SubscriptionHub,
        secrets: SecretRegistry,
        converter: cattrs.Converter,
        logger: logging.Logger | None = None,
        new_change_id: Callable[[], str] = new_change_id,
        on_close: Sequence[Callable[[], None]] = (),
        feed: ChangeFeed | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        unknown_run: UnknownRunPolicy = "warn",
    ) -> None:
        super().__init__(
            converter=converter,
            logger=logger,
            derivers=lambda log: Derivers(secrets, log),
            new_change_id=new_change_id,
        )
        self.store = store
        self.emitter = emitter
        self.secrets = EngineSecrets(
            secrets, unknown_run=unknown_run, logger=self.logger, is_closed=lambda: self._closed
        )
        self._subscriptions = subscriptions
        self._on_close = tuple(on_close)
        self._held = HeldLocks()
        self._delivery = Delivery(emitter.emit, self.logger)
        self.feed = feed
        self._poll_interval = poll_interval
        self._durable: set[DurableSubscription] = set()

    # -- kinds ---------------------------------------------------------------------------

    def define_entity(
        self,
        kind: str,
        state: type[S],
        *,
        read: Callable[[Sequence[str]], Mapping[str, S | Mapping[str, Any]]]
        | Callable[[Sequence[str], Any], Mapping[str, S | Mapping[str, Any]]],
        sensitive: Iterable[str] = (),
    ) -> EntityHandle[S]:
        """Register a kind and return its handle (SPEC §1). Nothing is registered when
        a check fails."""
        return self._define(
            kind, state, read, sensitive, lambda schema: EntityHandle(self, schema, read)
        )

    # -- transactions --------------------------------------------------------------------

    def transaction(self, connection: Any = None) -> Transaction:
        """A unit of work (DESIGN §8): use it as ``with engine.transaction() as tx`` and
        pass ``tx=tx`` to ``mutate``/``remove``. The application's statements on
        ``tx.connection``, the change rows and the transition rows commit together when
        the block ends; an exception rolls all of it back and nothing is delivered.

        ``connection`` (PostgreSQL) joins an idle connection of the application's: the
        library begins and ends the transaction on it and leaves it open and idle.
        """
        self._check_open()
        return self._begin(connection)

    def _begin(self, connection: Any) -> Transaction:
        try:
            store_tx = self.store.begin(connection)
        except ReactiveEntitiesError:
            raise
        except Exception as error:
            raise store_failure("could not begin a transaction") from error
        return Transaction(self, store_tx)

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
        delivery: InProcess | Broadcast | WorkQueue | None = None,
    ) -> Subscription:
        """Call ``handler`` with each recorded change of ``kind`` touching ``fields``
        (SPEC §9, §15).

        ``delivery`` says where: in this process after commit (the default,
        :class:`InProcess`); in every engine sharing the store (:class:`Broadcast`); or
        in one member of a group (:class:`WorkQueue`). A handler that raises is logged,
        masked, and does not affect others (a work queue retries it).
        """
        wanted, mode = self._subscription(handler, kind, fields, delivery)
        if isinstance(mode, InProcess):
            return self._subscriptions.subscribe(handler, kind=kind, fields=wanted)
        feed = require_feed(self.feed, type(mode).__name__)
        durable = DurableSubscription(
            feed,
            handler,
            kind=kind,
            fields=wanted,
            mode=mode,
            secrets=self.secrets,
            logger=self.logger,
            poll_interval=self._poll_interval,
            on_stop=self._durable.discard,
        )
        self._durable.add(durable)
        return durable

    # -- the feed ------------------------------------------------------------------------

    def changes(
        self, after: Position | str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> tuple[ChangeEvent, ...]:
        """Changes from the feed strictly after ``after`` (a position or its ``str``;
        from the start when None), in feed order, each with its ``position``; at most
        ``limit`` (SPEC §15.2)."""
        start = self._changes_from(after, kind, limit)
        feed = require_feed(self.feed, "changes")
        return _queried(lambda: tuple(feed.changes(start, kind=kind, limit=limit)))

    def consumers(self) -> tuple[ConsumerStatus, ...]:
        """Every named broadcast consumer and work-queue group: position, lag, claims
        in flight, dead letters."""
        self._check_open()
        feed = require_feed(self.feed, "consumers")
        return _queried(lambda: tuple(feed.consumers()))

    def dead_letters(self, group: str) -> tuple[DeadLetter, ...]:
        """The group's dead letters, oldest first."""
        self._check_open()
        WorkQueue(group=group)  # validates the name
        feed = require_feed(self.feed, "dead_letters")
        return _queried(lambda: tuple(feed.dead_letters(group)))

    def retry_dead_letters(self, group: str) -> int:
        """Deliver the group's dead letters again (attempts reset); how many."""
        self._check_open()
        WorkQueue(group=group)
        feed = require_feed(self.feed, "retry_dead_letters")
        count = _queried(lambda: feed.retry_dead_letters(group))
        for durable in list(self._durable):
            durable.wake()
        return count

    # -- derivers ------------------------------------------------------------------------

    def derive(self, event: ChangeEvent) -> tuple[str, ...]:
        """Ids derived from ``event`` by its kind's derivers: de-duplicated, non-empty
        strings, in first-seen order. A deriver that raises is logged and skipped."""
        self._check_open()
        return self._derivers.derive(event)

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the store's schema up to date (a no-op for stores without one)."""
        self._check_open()
        migrate = getattr(self.store, "migrate", None)
        if migrate is not None:
            migrate()

    def close(self) -> None:
        """Release the store and whatever the composition root opened; idempotent."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + 5.0  # every delivery thread stops within 5 s
        for durable in list(self._durable):
            durable.cancel(timeout=max(deadline - time.monotonic(), 0.0))
        close_feed = getattr(self.feed, "close", None)
        if close_feed is not None:
            close_feed()
        self.store.close()
        for release in self._on_close:
            release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_through(
    handle: EntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``handle.mutate(...)`` when there is a handle, else just ``apply()``."""
    if handle is None:
        apply()
    else:
        handle.mutate(entity_id, apply, actor=actor, run_id=run_id)


def remove_through(
    handle: EntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``handle.remove(...)`` when there is a handle, else just ``apply()``."""
    if handle is None:
        apply()
    else:
        handle.remove(entity_id, apply, actor=actor, run_id=run_id)


def _queried(run: Callable[[], T], failure: str = "the change feed could not be read") -> T:
    """``run()``, an adapter's own failure turned into ``StoreError(failure)``."""
    with store_errors(failure):
        return run()


def _run_secrets(registry: SecretRegistry, run_id: object) -> SecretSet:
    checked = checked_run_id(run_id)
    if checked is None:
        return EMPTY_SECRETS
    if type(registry) is EngineSecrets:
        return registry.for_write(checked)  # applies the engine's unknown_run policy
    return registry.secrets_for(checked)

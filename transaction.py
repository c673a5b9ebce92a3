"""The unit of work: :class:`Transaction`, and the write pipeline that runs inside one.

Theory of operation. Every write runs in a transaction: the caller's
(``engine.transaction()``, passed as ``tx=``) or one of its own, begun and committed
around the single write. One pipeline serves both:

    lock (the store fixes the stamp) → read prev → apply → plan_write (pure) → record

Recorded changes become durable together at commit, which then queues their events for
in-process delivery while the entity locks are still held (so queues follow recording
order), releases the locks, and only then runs the handlers (``delivery``). A rollback
discards everything recorded and delivers nothing.

Re-entry: a thread that writes an entity inside that entity's own ``apply`` (or writes,
without ``tx=``, an entity one of its open transactions holds) would wait for itself
forever; it gets ``InvalidArgumentError`` naming ``kind:id`` at once instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import (
    InvalidArgumentError,
    ReactiveEntitiesError,
    StoreError,
)
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.store import StoreTransaction
from reactive_entities.shell_checks import commit_failure, reentry_problem, store_failure

if TYPE_CHECKING:
    from reactive_entities.engine import Engine, EntityHandle

__all__ = ["Transaction"]

_Key = tuple[str, str]


class HeldLocks(threading.local):
    """Per thread: the entities locked by this thread's open transactions."""

    def __init__(self) -> None:
        self.owners: dict[_Key, Transaction] = {}


class Transaction:
    """A unit of work: the application's statements on :attr:`connection` and every
    change recorded with ``tx=`` commit together, then their events are delivered.

    Get one from :meth:`Engine.transaction` and use it as a context manager: leaving
    the block normally commits; an exception rolls back (nothing recorded, no event) and
    propagates. A transaction belongs to the thread that opened it.

    >>> from reactive_entities import compose
    >>> with compose.in_memory() as engine, engine.transaction() as tx:
    ...     tx.connection is None
    True
    """

    __slots__ = ("_engine", "_events", "_keys", "_state", "_store_tx", "_writing")

    def __init__(self, engine: Engine, store_tx: StoreTransaction) -> None:
        self._engine = engine
        self._store_tx = store_tx
        self._events: list[ChangeEvent] = []
        self._keys: list[_Key] = []  # entities locked, for the thread's re-entry guard
        self._writing: _Key | None = None  # the entity whose apply is running
        self._state = "open"

    @property
    def connection(self) -> Any:
        """The database connection inside this transaction (a ``psycopg.Connection`` on
        PostgreSQL, None in memory). Statements run on it commit with the changes."""
        self._check_live()
        return self._store_tx.connection

    @property
    def active(self) -> bool:
        """Whether the transaction is still open (neither committed nor rolled back)."""
        return self._state == "open"

    def __repr__(self) -> str:
        return f"<Transaction {self._state}, {len(self._events)} change(s)>"

    # -- the write pipeline ----------------------------------------------------------------

    def _write(
        self,
        handle: EntityHandle[Any],
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor,
        run_id: str | None,
        secrets: SecretSet,
        *,
        removing: bool,
    ) -> Any:
        """lock → read → apply → validate and plan → record; returns the next state."""
        self._check_live()
        key = (handle.kind, entity_id)
        self._lock(key)
        self._writing = key
        try:
            prev_doc = handle._current(entity_id, secrets, self._store_tx.connection)[1]
            result = apply()
        finally:
            self._writing = None
        decision = handle._plan(
            entity_id,
            prev_doc,
            result,
            removing=removing,
            actor=actor,
            run_id=run_id,
            secrets=secrets,
        )
        plan = decision.plan
        if plan is not None:
            try:
                stamp = self._store_tx.record(plan)
            except ReactiveEntitiesError:
                raise
            except Exception as error:
                raise store_failure("could not record a change of", key) from error
            self._events.append(plan.event(stamp))
        return decision.state

    def _lock(self, key: _Key) -> None:
        owners = self._engine._held.owners
        owner = owners.get(key)
        if owner is not None or key == self._writing:  # else nothing to ask: the common case
            problem = reentry_problem(
                key,
                writing_here=key == self._writing,
                held_elsewhere=owner is not None and owner is not self,
                by_writer=owner is not None and owner._writing == key,
                who="thread",
            )
            if problem is not None:
                raise InvalidArgumentError(problem)
        try:
            self._store_tx.lock(*key)
        except ReactiveEntitiesError:
            raise
        except Exception as error:
            raise store_failure("could not lock", key) from error
        if owner is None:
            owners[key] = self
            self._keys.append(key)

    # -- ending --------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit, then deliver the events in recording order (leaving the ``with``
        block does this for you)."""
        self._check_live()
        events = self._events
        delivery = self._engine._delivery
        owned: list[_Key] = []

        def queue_events() -> None:
            owned.extend(delivery.enqueue(events))

        try:
            self._store_tx.commit(queue_events if events else None)
        except BaseException as error:
            self._abandon()
            if isinstance(error, ReactiveEntitiesError) or not isinstance(error, Exception):
                raise
            raise StoreError(commit_failure(events)) from error
        self._end("committed")
        delivery.drain(owned)

    def rollback(self) -> None:
        """Discard every change recorded in this transaction; nothing is delivered.
        The application's statements on :attr:`connection` are rolled back too."""
        if self._state == "open":
            self._abandon()

    def _abandon(self) -> None:
        """Roll the store's transaction back (idempotent there: a no-op once it ended,
        so a store whose failed commit did not end itself still releases its locks)."""
        try:
            self._store_tx.rollback()
        finally:
            self._end("rolled back")

    def _end(self, state: str) -> None:
        self._state = state
        owners = self._engine._held.owners
        for key in self._keys:
            if owners.get(key) is self:
                del owners[key]
        self._keys = []

    def _check_live(self) -> None:
        if self._state != "open":
            raise InvalidArgumentError(
                f"this transaction is {self._state}: it cannot be used after its block"
            )

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

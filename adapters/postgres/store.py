"""The PostgreSQL entity store: a durable, shared transition log.

Theory of operation.

* **Connections** come from a ``psycopg_pool.ConnectionPool`` and are used in autocommit
  mode: each query is one prepared statement and one round trip.
* **Writes** run in a :class:`PostgresTransaction` (``begin``): the entity's
  advisory lock, its stamp and ``BEGIN`` in one round trip; the inserts of every change
  and the ``COMMIT`` in one more. See ``transaction.py``.
* **Stamps** come from one clock: the database's ``clock_timestamp()``, or the injected
  ``clock`` (tests), read when the entity is locked and raised to the entity's previous
  stamp if need be.
* **Failures**: every driver or pool error becomes :class:`StoreError` naming the kind
  and id (never a value), with the driver's error as ``__cause__``. A connection found
  broken (the server restarted) makes the store check the pool's idle connections and
  retry once, where retrying is safe (taking the first lock, reads); so the same store
  works again as soon as the database is back.

With ``locking=False`` no advisory lock is taken: concurrent writers of one entity can
then interleave (the stamp is still read in the round trip that begins the transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.connections import (
    connect_failure,
    open_pool,
    probe,
)
from reactive_entities.adapters.postgres.dialogue import Dialogue, failure_message, run
from reactive_entities.adapters.postgres.local_locks import LocalLocks
from reactive_entities.adapters.postgres.operations import (
    checked_pool_size,
    checked_schema,
)
from reactive_entities.adapters.postgres.store_base import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_SCHEMA,
    StoreBase,
)
from reactive_entities.adapters.postgres.transaction import PostgresTransaction
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import ChangeRecord, TransitionRecord
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.store import EntityStore

__all__ = ["PostgresEntityStore", "DEFAULT_SCHEMA", "DEFAULT_LOCK_TIMEOUT"]


_Conn = psycopg.Connection[Any]
T = TypeVar("T")
_IDLE = TransactionStatus.IDLE


class PostgresEntityStore(StoreBase[ConnectionPool, LocalLocks], EntityStore):
    """An ``EntityStore`` in a PostgreSQL schema, shared by every process using it.

    Build one on a pool you own (``PostgresEntityStore(pool, schema=...)``; ``close``
    leaves it open) or let it open its own (:meth:`connect`; ``close`` closes it). The
    schema must be migrated (:meth:`migrate`) before use;
    :func:`reactive_entities.compose.postgres` does all of this.
    """

    _new_local = LocalLocks

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        locking: bool = True,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> PostgresEntityStore:
        """A store with its own pool of up to ``pool_size`` connections to ``dsn``.

        Connects once first, so an unreachable server fails at once with libpq's
        reason (``StoreError``) instead of after the pool's timeout.
        """
        checked_schema(schema)
        checked_pool_size(pool_size)
        failure: StoreError | None = None
        try:
            probe(dsn, timeout=pool_timeout)
            pool = open_pool(
                dsn, size=pool_size, timeout=pool_timeout, name=f"reactive-entities:{schema}"
            )
        except psycopg.Error as error:
            failure = connect_failure(error, dsn)
        if failure is not None:  # raised here: the raw error must not be the context
            raise failure
        return cls(
            pool,
            schema=schema,
            clock=clock,
            locking=locking,
            lock_timeout=lock_timeout,
            owns_pool=True,
            dsn=dsn,
        )

    # -- schema --------------------------------------------------------------------------

    def migrate(self) -> tuple[int, ...]:
        """Apply missing migrations (idempotent, safe from many processes at once);
        returns the versions applied. Raises ``SchemaVersionError`` if the database is
        newer than this code."""
        return self._run(migrations.upgrade_dialogue(self._schema))

    def check_schema(self) -> int:
        """The schema's version; ``SchemaVersionError`` (saying how to fix it) unless it
        is exactly the version this code needs."""
        return self._run(migrations.check_dialogue(self._schema))

    def schema_version(self) -> int:
        """The newest migration recorded in the schema (0 when it was never migrated)."""
        return self._run(migrations.version_dialogue(self._schema))

    # -- writing -------------------------------------------------------------------------

    def begin(self, connection: Any = None) -> PostgresTransaction:
        """A write transaction on ``connection`` (idle; left open and idle) or on a
        pooled connection."""
        return PostgresTransaction(self, connection)

    @contextmanager
    def reader(self) -> Iterator[_Conn]:
        """A pooled connection for the plugin's ``read`` outside a write."""
        conn = self._getconn()
        try:
            yield conn
        finally:
            self._putconn(conn)

    def _recorded_after_session_end(
        self, pid: int, change_ids: Sequence[str], wait: float
    ) -> set[str]:
        """Which of ``change_ids`` are recorded, asked on a fresh connection (see
        ``StoreOperations.recorded_after_session_end``). Raises the driver's error or
        ``TimeoutError`` when there is no final answer."""
        steps = self._ops.recorded_after_session_end(pid, change_ids, wait)
        dsn = self._dsn
        if dsn is not None:
            timeout = max(1, round(wait))
            with psycopg.connect(dsn, autocommit=True, connect_timeout=timeout) as conn:
                return run(conn, steps)
        conn = self._getconn(timeout=wait)
        try:
            return run(conn, steps)
        finally:
            self._putconn(conn)

    def now(self) -> datetime:
        """The database's ``clock_timestamp()``, or the injected clock's time."""
        if self._clock is not None:
            return self._clock.now()
        return self._run(self._ops.now())

    def close(self) -> None:
        """Close the pool if this store opened it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            self._pool.close()

    # -- reading -------------------------------------------------------------------------

    def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row stamped at or before ``at`` (or newest overall)."""
        return self._run(self._ops.latest_transition(kind, entity_id, field, at))

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        return self._run(self._ops.latest_change(kind, entity_id, at))

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field with ``since ≤ transitioned_at ≤ until``; ``until`` None is
        the store's now (the database's, in the same statement)."""
        return self._run(self._ops.count_transitions(kind, entity_id, field, since, until))

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        return self._run(self._ops.transitions(kind, entity_id, field, since, limit))

    # -- connections ---------------------------------------------------------------------

    def _getconn(self, timeout: float | None = None) -> _Conn:
        conn: _Conn = self._pool.getconn(timeout=timeout)
        if not conn.autocommit:  # a pool the caller configured differently
            try:
                conn.autocommit = True
            except BaseException:
                self._pool.putconn(conn)
                raise
            self._flipped.add(id(conn))
        return conn

    def _putconn(self, conn: _Conn) -> None:
        """Return ``conn`` to the pool idle; a connection that cannot be made idle is
        closed, and the pool replaces it."""
        if not conn.closed and conn.pgconn.transaction_status != _IDLE:
            try:
                conn.execute(b"ROLLBACK")
            except psycopg.Error:
                conn.close()
        if self._flipped and id(conn) in self._flipped:
            self._flipped.discard(id(conn))
            if not conn.closed:
                try:
                    conn.autocommit = False
                except psycopg.Error:
                    conn.close()
        self._pool.putconn(conn)

    def _recover(self) -> None:
        """After finding a broken connection: fail fast if the server is unreachable
        (when the store knows its DSN), else let the pool replace its dead idle
        connections.

        The pool is checked only once the server answers: a check while it is down
        would only queue reconnection attempts whose back-off delays the recovery.
        """
        if self._dsn is not None:
            probe(self._dsn, timeout=self._pool.timeout)
        with suppress(psycopg.Error):  # the retry tells how the server is
            self._pool.check()

    def _run(self, dialogue: Dialogue[T]) -> T:
        """Run ``dialogue`` on a pooled connection (in one transaction if it says so);
        a read that finds its connection broken is retried once on a fresh one. Driver
        errors become ``StoreError`` saying what could not be done."""
        retry = dialogue.retry
        while True:
            try:
                conn = self._getconn()
            except psycopg.Error as error:
                raise StoreError(f"could not {dialogue.what}") from error
            try:
                return self._steps(conn, dialogue)
            except psycopg.Error as error:
                if not (retry and conn.broken):
                    raise StoreError(failure_message(dialogue, error)) from error
                retry = False
            finally:
                self._putconn(conn)
            try:
                self._recover()
            except psycopg.Error as down:
                raise StoreError(f"could not {dialogue.what}") from down

    @staticmethod
    def _steps(conn: _Conn, dialogue: Dialogue[T]) -> T:
        if dialogue.transaction:
            with conn.transaction():
                return run(conn, dialogue.steps())
        return run(conn, dialogue.steps())

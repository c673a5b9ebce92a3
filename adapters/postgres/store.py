"""The PostgreSQL entity store: a durable, shared transition log.

Theory of operation.

* **Connections** come from a ``psycopg_pool.ConnectionPool`` and are used in autocommit
  mode: each query is one prepared statement and one round trip.
* **Locking a mutation** (``lock(kind, id)``, entered by the engine before ``read`` and
  left after ``emit``) takes, in order: an in-process lock for the entity (keeps events
  of one entity in recording order for this process's subscribers, and keeps waiting
  threads from holding connections), a pooled connection, and — in one round trip —
  ``BEGIN; SELECT pg_advisory_xact_lock(key)``, which serializes the entity across every
  process sharing the database.
* **Recording** inside the lock (same thread) reuses that transaction: the one-statement
  insert of the change row and all its transition rows, and the ``COMMIT`` that releases
  the advisory lock, go out together in pipeline mode — one more round trip. So a locked
  mutation costs two round trips of the store's own (plus the plugin's read and write).
  Leaving the lock without recording ends the transaction, which wrote nothing.
  Whatever happens, the connection goes back to the pool (a broken one is discarded by
  the pool) and the in-process lock is released; a failure while cleaning up never
  masks the exception in flight.
* **Stamps** come from one clock: the database's ``clock_timestamp()``, or the injected
  ``clock`` (then the change's proposed ``occurred_at`` is adopted when it is not later
  than that clock's now, like the in-memory store does). Either way the statement raises
  the stamp to the entity's previous one if needed, and ``record`` returns it.
* **Failures**: every driver or pool error becomes :class:`StoreError` naming the kind
  and id (never a value), with the driver's error as ``__cause__``. A connection found
  broken (the server restarted) makes the store check the pool's idle connections and
  retry once, where retrying is safe (taking the lock, reads); so the same store works
  again as soon as the database is back.

With ``locking=False`` ``lock()`` does nothing and each ``record`` is one autocommit
statement: faster, but concurrent writers of one entity can then interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.codec import (
    bool_array,
    change_record,
    encode_json,
    text_array,
    transition_record,
    utc,
)
from reactive_entities.adapters.postgres.connections import open_pool, probe
from reactive_entities.adapters.postgres.dsn import scrubbed_error
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.local_locks import LocalLocks
from reactive_entities.adapters.postgres.queries import Queries, schema_problem
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ABSENT, Change, ChangeRecord, TransitionRecord
from reactive_entities.domain.validation import limit_problem
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.store import EntityStore

__all__ = ["PostgresEntityStore", "DEFAULT_SCHEMA"]

#: The schema the library's tables live in unless another is configured.
DEFAULT_SCHEMA = "reactive_entities"

_Conn = psycopg.Connection[Any]
T = TypeVar("T")
_IDLE = TransactionStatus.IDLE
_MAX_ID_IN_MESSAGE = 120


def _ref(kind: str, entity_id: str) -> str:
    shown = entity_id if len(entity_id) <= _MAX_ID_IN_MESSAGE else entity_id[:_MAX_ID_IN_MESSAGE]
    more = "" if shown is entity_id else f"… ({len(entity_id)} characters)"
    return f"{kind}:{shown}{more}"


class _Held:
    """The transaction a thread holds for one locked entity."""

    __slots__ = ("conn", "done")

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.done = False  # committed by record()


class _EntityLock:
    """``store.lock(kind, id)``: see the module docstring."""

    __slots__ = ("_entity_id", "_held", "_key", "_kind", "_store", "_token")

    def __init__(self, store: PostgresEntityStore, kind: str, entity_id: str) -> None:
        self._store = store
        self._kind = kind
        self._entity_id = entity_id
        self._key = (kind, entity_id)
        self._token: object = None
        self._held: _Held | None = None

    def __enter__(self) -> None:
        store = self._store
        key = self._key
        self._token = store._local.acquire(key)
        try:
            held = _Held(store._begin_locked(self._kind, self._entity_id))
        except BaseException:
            store._local.release(key, self._token)
            raise
        store._held_by_thread()[key] = held
        self._held = held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        key = self._key
        held = self._held
        self._held = None
        try:
            if held is not None:
                store._held_by_thread().pop(key, None)
                store._end_locked(held)
        finally:
            store._local.release(key, self._token)


class PostgresEntityStore(EntityStore):
    """An ``EntityStore`` in a PostgreSQL schema, shared by every process using it.

    Build one on a pool you own (``PostgresEntityStore(pool, schema=...)``; ``close``
    leaves it open) or let it open its own (:meth:`connect`; ``close`` closes it). The
    schema must be migrated (:meth:`migrate`) before use;
    :func:`reactive_entities.compose.postgres` does all of this.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        locking: bool = True,
        owns_pool: bool = False,
        dsn: str | None = None,
    ) -> None:
        problem = schema_problem(schema)
        if problem is not None:
            raise InvalidArgumentError(f"schema {problem} (got {schema!r:.80})")
        self._pool = pool
        self._schema = schema
        self._clock = clock
        self._locking = locking
        self._owns_pool = owns_pool
        self._dsn = dsn
        self._queries = Queries.for_schema(schema)
        self._keys = EntityKeys(schema)
        self._local = LocalLocks()
        self._threads = threading.local()
        self._flipped: set[int] = set()  # connections we switched to autocommit
        self._closed = False
        # The last actor's JSON: most changes are made by one actor (often SYSTEM_ACTOR).
        self._actor_json: tuple[object, str] = (None, "")

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        locking: bool = True,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> PostgresEntityStore:
        """A store with its own pool of up to ``pool_size`` connections to ``dsn``.

        Connects once first, so an unreachable server fails at once with libpq's
        reason (``StoreError``) instead of after the pool's timeout.
        """
        problem = schema_problem(schema)
        if problem is not None:
            raise InvalidArgumentError(f"schema {problem} (got {schema!r:.80})")
        if type(pool_size) is not int or pool_size < 1:
            raise InvalidArgumentError(f"pool_size must be a positive int (got {pool_size!r})")
        failure: StoreError | None = None
        try:
            probe(dsn, timeout=pool_timeout)
            pool = open_pool(
                dsn, size=pool_size, timeout=pool_timeout, name=f"reactive-entities:{schema}"
            )
        except psycopg.Error as error:
            # libpq may quote the DSN's password (an unparseable one): scrubbed, and
            # raised outside this block so the raw error is not chained as the context.
            cause = scrubbed_error(error, dsn)
            failure = StoreError(f"could not connect to PostgreSQL: {_first_line(cause)}")
            failure.__cause__ = cause
        if failure is not None:
            raise failure
        return cls(pool, schema=schema, clock=clock, locking=locking, owns_pool=True, dsn=dsn)

    @property
    def schema(self) -> str:
        """The schema holding the tables."""
        return self._schema

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool the store uses."""
        return self._pool

    @property
    def locking(self) -> bool:
        """Whether ``lock`` serializes writers (``locking=False`` makes it a no-op)."""
        return self._locking

    def __repr__(self) -> str:
        return f"<PostgresEntityStore schema={self._schema!r} locking={self._locking}>"

    # -- schema --------------------------------------------------------------------------

    def migrate(self) -> tuple[int, ...]:
        """Apply missing migrations (idempotent, safe from many processes at once);
        returns the versions applied. Raises ``SchemaVersionError`` if the database is
        newer than this code."""
        schema = self._schema

        def run(conn: _Conn) -> tuple[int, ...]:
            if migrations.schema_version(conn, schema) == migrations.latest_version():
                return ()
            return migrations.migrate(conn, schema)

        return self._with_connection(f'migrate schema "{schema}"', run)

    def check_schema(self) -> int:
        """The schema's version; ``SchemaVersionError`` (saying how to fix it) unless it
        is exactly the version this code needs."""
        schema = self._schema
        return self._with_connection(
            f'check schema "{schema}"', lambda conn: migrations.check_version(conn, schema)
        )

    def schema_version(self) -> int:
        """The newest migration recorded in the schema (0 when it was never migrated)."""
        schema = self._schema
        return self._with_connection(
            f'read the version of schema "{schema}"',
            lambda conn: migrations.schema_version(conn, schema),
        )

    # -- writing -------------------------------------------------------------------------

    def lock(self, kind: str, entity_id: str) -> AbstractContextManager[None]:
        """The entity's lock: in-process, then a transaction-level advisory lock."""
        if not self._locking:
            return nullcontext()
        return _EntityLock(self, kind, entity_id)

    def record(self, change: Change) -> datetime:
        """Append the change row and its transition rows in one transaction, stamped
        with one timestamp, which is returned."""
        event = change.event
        params = self._record_params(change)
        held = self._held_by_thread().get((event.kind, event.entity_id))
        try:
            if held is not None and not held.done:
                conn = held.conn
                with conn.pipeline():
                    cursor = conn.execute(self._queries.record, params, prepare=True)
                    conn.execute(b"COMMIT")
                held.done = True
                row = cursor.fetchone()
            else:
                conn = self._getconn()
                try:
                    row = conn.execute(self._queries.record, params, prepare=True).fetchone()
                finally:
                    self._putconn(conn)
        except psycopg.Error as error:
            raise StoreError(
                f"could not record change {event.change_id} of {_ref(event.kind, event.entity_id)}"
            ) from error
        if row is None:  # pragma: no cover - the statement always returns the stamp
            raise StoreError(f"no stamp returned for {_ref(event.kind, event.entity_id)}")
        return utc(row[0])

    def _record_params(self, change: Change) -> dict[str, Any]:
        event = change.event
        at: datetime | None = None
        if self._clock is not None:
            now = self._clock.now()
            proposed = event.occurred_at
            at = proposed if proposed <= now else now
        rows = change.transitions
        prev = event.prev
        nxt = event.next
        actor = event.actor
        last_actor, actor_json = self._actor_json
        if last_actor is not actor:
            actor_json = encode_json(actor.to_dict())
            self._actor_json = (actor, actor_json)
        return {
            "at": at,
            "key": self._keys.entity_key(event.kind, event.entity_id),
            "change_id": event.change_id,
            "kind": event.kind,
            "entity_id": event.entity_id,
            "op": event.op,
            "actor": actor_json,
            "run_id": event.run_id,
            "prev": None if prev is None else encode_json(prev),
            "next": None if nxt is None else encode_json(nxt),
            "delta": encode_json(event.delta),
            "changed_fields": text_array(event.changed_fields),
            "fields": text_array([t.field for t in rows]),
            "from_values": text_array(
                [None if t.from_value is ABSENT else encode_json(t.from_value) for t in rows]
            ),
            "to_values": text_array([encode_json(t.to_value) for t in rows]),
            "masked": bool_array([t.masked for t in rows]),
        }

    def now(self) -> datetime:
        """The database's ``clock_timestamp()``, or the injected clock's time."""
        if self._clock is not None:
            return self._clock.now()
        rows = self._read("read the database clock", self._queries.now, ())
        return utc(rows[0][0])

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
        key = self._keys.entity_key(kind, entity_id)
        rows = self._read(
            f"read the latest {field} transition of {_ref(kind, entity_id)}",
            self._queries.latest_transition,
            (key, field, at, kind, entity_id),
        )
        return transition_record(kind, entity_id, rows[0]) if rows else None

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        key = self._keys.entity_key(kind, entity_id)
        rows = self._read(
            f"read the latest change of {_ref(kind, entity_id)}",
            self._queries.latest_change,
            (key, at, kind, entity_id),
        )
        return change_record(kind, entity_id, rows[0]) if rows else None

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
        if until is None and self._clock is not None:
            until = self._clock.now()
        window: timedelta | None = None
        start: datetime | None = None
        if isinstance(since, timedelta):
            if until is None:
                window = since
            else:
                start = until - since
        else:
            start = since
        params = {
            "key": self._keys.entity_key(kind, entity_id),
            "field": field,
            "until": until,
            "since": start,
            "window": window,
            "kind": kind,
            "entity_id": entity_id,
        }
        rows = self._read(
            f"count {field} transitions of {_ref(kind, entity_id)}",
            self._queries.count_transitions,
            params,
        )
        return int(rows[0][0])

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        problem = None if limit is None else limit_problem(limit)
        if problem is not None:
            raise InvalidArgumentError(f"limit {problem} ({_ref(kind, entity_id)})")
        key = self._keys.entity_key(kind, entity_id)
        what = f"read the transitions of {_ref(kind, entity_id)}"
        if field is None:
            rows = self._read(
                what, self._queries.entity_transitions, (key, since, limit, kind, entity_id)
            )
        else:
            rows = self._read(
                what,
                self._queries.field_transitions,
                (key, field, since, limit, kind, entity_id),
            )
        return tuple(transition_record(kind, entity_id, row) for row in rows)

    # -- connections ---------------------------------------------------------------------

    def _held_by_thread(self) -> dict[tuple[str, str], _Held]:
        threads = self._threads
        try:
            held: dict[tuple[str, str], _Held] = threads.held
        except AttributeError:
            held = threads.held = {}
        return held

    def _getconn(self) -> _Conn:
        conn: _Conn = self._pool.getconn()
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

    def _begin_locked(self, kind: str, entity_id: str) -> _Conn:
        statement = b"BEGIN; SELECT pg_advisory_xact_lock(%d)" % self._keys.lock_key(
            kind, entity_id
        )
        retried = False
        while True:
            try:
                conn = self._getconn()
            except psycopg.Error as error:
                raise StoreError(f"could not lock {_ref(kind, entity_id)}") from error
            try:
                conn.execute(statement)
            except psycopg.Error as error:
                broken = conn.broken
                self._putconn(conn)
                if broken and not retried:
                    retried = True
                    try:
                        self._recover()
                    except psycopg.Error as down:
                        raise StoreError(f"could not lock {_ref(kind, entity_id)}") from down
                    continue
                raise StoreError(f"could not lock {_ref(kind, entity_id)}") from error
            except BaseException:
                self._putconn(conn)
                raise
            return conn

    def _end_locked(self, held: _Held) -> None:
        """End the lock's transaction unless ``record`` committed it.

        The transaction wrote nothing (``record`` is the only writer, and it commits),
        so ``COMMIT`` ends it exactly like ``ROLLBACK`` would — releasing the advisory
        lock — without making psycopg deallocate every prepared statement of the
        session, which it does after any ``ROLLBACK``.
        """
        conn = held.conn
        try:
            if not held.done and not conn.closed:
                conn.execute(b"COMMIT")
        except psycopg.Error:
            # Nothing was recorded; a connection that cannot end its transaction is
            # closed (which ends its session and so its advisory lock) and replaced.
            conn.close()
        finally:
            self._putconn(conn)

    def _with_connection(self, what: str, run: Callable[[_Conn], T]) -> T:
        try:
            conn = self._getconn()
        except psycopg.Error as error:
            raise StoreError(f"could not {what}") from error
        try:
            return run(conn)
        except psycopg.Error as error:
            raise StoreError(f"could not {what}: {_first_line(error)}") from error
        finally:
            self._putconn(conn)

    def _read(self, what: str, query: bytes, params: Any) -> list[tuple[Any, ...]]:
        """Run one prepared read; a connection found broken is replaced and the read
        retried once."""
        retried = False
        while True:
            try:
                conn = self._getconn()
            except psycopg.Error as error:
                raise StoreError(f"could not {what}") from error
            try:
                rows: list[tuple[Any, ...]] = conn.execute(query, params, prepare=True).fetchall()
            except psycopg.Error as error:
                broken = conn.broken
                self._putconn(conn)
                if broken and not retried:
                    retried = True
                    try:
                        self._recover()
                    except psycopg.Error as down:
                        raise StoreError(f"could not {what}") from down
                    continue
                raise StoreError(f"could not {what}") from error
            except BaseException:
                self._putconn(conn)
                raise
            self._putconn(conn)
            return rows


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

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

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
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
from reactive_entities.adapters.postgres.feed import channel_for
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.local_locks import LocalLocks
from reactive_entities.adapters.postgres.queries import Queries, schema_problem
from reactive_entities.adapters.postgres.transaction import PostgresTransaction
from reactive_entities.adapters.postgres.transaction import ref as _ref
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ABSENT, ChangeRecord, Plan, TransitionRecord
from reactive_entities.domain.validation import limit_problem
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.store import EntityStore

__all__ = ["PostgresEntityStore", "DEFAULT_SCHEMA", "DEFAULT_LOCK_TIMEOUT"]

#: The schema the library's tables live in unless another is configured.
DEFAULT_SCHEMA = "reactive_entities"
#: How long a write waits for an entity another transaction holds (SPEC §14.6).
DEFAULT_LOCK_TIMEOUT = timedelta(seconds=30)

_Conn = psycopg.Connection[Any]
T = TypeVar("T")
_IDLE = TransactionStatus.IDLE


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
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
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
        self.lock_timeout = _checked_timeout(lock_timeout)
        self._owns_pool = owns_pool
        self._dsn = dsn
        self._queries = Queries.for_schema(schema)
        self._keys = EntityKeys(schema)
        self._local = LocalLocks()
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
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
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
        return cls(
            pool,
            schema=schema,
            clock=clock,
            locking=locking,
            lock_timeout=lock_timeout,
            owns_pool=True,
            dsn=dsn,
        )

    @property
    def schema(self) -> str:
        """The schema holding the tables."""
        return self._schema

    @property
    def channel(self) -> str:
        """The NOTIFY channel a committing write signals (the feed LISTENs on it)."""
        return channel_for(self._schema)

    @property
    def conninfo(self) -> str:
        """How to open a connection of the store's own (the feed's LISTEN connection)."""
        if self._dsn is not None:
            return self._dsn
        info = self._pool.conninfo
        return info() if callable(info) else info

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
        """Which of ``change_ids`` are recorded, asked on a fresh connection once the
        session ``pid`` (whose ``COMMIT`` may or may not have happened) has ended — so
        the answer cannot change afterwards. Raises the driver's error or
        ``TimeoutError`` when there is no final answer."""
        dsn = self._dsn
        conn = (
            psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(wait)))
            if dsn is not None
            else self._pool.getconn(timeout=wait)
        )
        try:
            if not conn.autocommit:
                conn.autocommit = True
            deadline = time.monotonic() + wait
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"session {pid} did not end")
                time.sleep(0.01)
            rows = conn.execute(self._queries.recorded, (list(change_ids),)).fetchall()
            return {row[0] for row in rows}
        finally:
            if dsn is not None:
                conn.close()
            else:
                self._pool.putconn(conn)

    def _record_params(self, plan: Plan, at: datetime) -> dict[str, Any]:
        event = plan
        rows = plan.transitions
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

    def _write(self, what: str, query: bytes, params: Any) -> list[tuple[Any, ...]]:
        """Run one prepared autocommit statement that changes something (never retried)
        and return the rows it returns."""

        def run(conn: _Conn) -> list[tuple[Any, ...]]:
            cursor = conn.execute(query, params, prepare=True)
            return cursor.fetchall() if cursor.description is not None else []

        return self._with_connection(what, run)

    def _in_transaction(self, what: str, run: Callable[[_Conn], T]) -> T:
        """``run(conn)`` inside one transaction on a pooled connection: committed when it
        returns, rolled back when it raises."""

        def wrapped(conn: _Conn) -> T:
            with conn.transaction():
                return run(conn)

        return self._with_connection(what, wrapped)

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


def _checked_timeout(timeout: object) -> timedelta:
    if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
        raise InvalidArgumentError(
            f"lock_timeout must be a positive timedelta (got {timeout!r:.60})"
        )
    return timeout


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

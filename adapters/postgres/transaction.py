"""A write transaction of the PostgreSQL store (the ``StoreTransaction`` port).

Theory of operation.

* **The connection** is the application's (joined: it must be idle; the transaction
  begins at once, since the application may run statements on it directly) or a pooled
  one (``BEGIN`` waits for the first ``lock`` or for ``connection`` to be read, and
  travels with it). Either way the connection is put in autocommit mode while the
  transaction runs, so ``BEGIN``/``COMMIT`` are ours to send and cost no extra round trip.
* **lock** sends, in one round trip: ``BEGIN`` when due, a transaction-level advisory
  lock on the entity bounded by ``lock_timeout`` (the transaction's own setting is put
  back afterwards), and the entity's stamp (see ``queries``). Then, holding the
  advisory lock, it takes the entity's in-process lock: that lock is held past
  ``COMMIT`` (which releases the advisory one) until ``commit(then)`` has run ``then``,
  so this process queues one entity's events in recording order. Its holders never wait
  for anything, so taking it after the advisory lock cannot deadlock — and deadlocks
  between advisory locks are the server's to detect (``StoreError``).
* **record** only encodes the plan; **commit** sends every insert and the ``COMMIT`` in
  one pipeline: one round trip per transaction, however many changes it holds.
* **Commit outcome**: if the connection fails once ``COMMIT`` may have been sent, the
  store asks a fresh connection — after making sure the old session has ended, so the
  answer is final — whether the change ids were recorded: all → success; none →
  ``StoreError``; no answer → ``StoreError`` saying the outcome is unknown, naming the
  change id.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from reactive_entities.adapters.postgres.operations import ref
from reactive_entities.adapters.postgres.writes import SESSION_END_WAIT, WriteState, check_idle
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import Plan
from reactive_entities.ports.store import StoreTransaction

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.store import PostgresEntityStore

__all__ = ["PostgresTransaction", "ref"]

_Conn = psycopg.Connection[Any]
_IDLE = TransactionStatus.IDLE


class PostgresTransaction(WriteState, StoreTransaction):
    """One unit of work on one connection; see the module docstring."""

    __slots__ = ("_conn", "_store")

    def __init__(self, store: PostgresEntityStore, connection: _Conn | None) -> None:
        super().__init__(
            store._ops,
            locking=store.locking,
            lock_timeout=store.lock_timeout,
            joined=connection is not None,
        )
        self._store = store
        if connection is None:
            self._conn = store._getconn()
            return
        check_idle(connection, psycopg.Connection, "psycopg.Connection")
        self._conn = connection
        try:
            if not connection.autocommit:
                connection.autocommit = True
                self._restore_autocommit = True
            connection.execute(b"BEGIN")
        except psycopg.Error as error:
            self._finish()
            raise StoreError("could not begin a transaction on the given connection") from error
        self._began = True

    @property
    def connection(self) -> _Conn:
        """The connection, inside this transaction (``BEGIN`` is sent if still due)."""
        if not self._began and not self._ended:
            try:
                self._conn.execute(b"BEGIN")
            except psycopg.Error as error:
                raise StoreError("could not begin a transaction") from error
            self._began = True
        return self._conn

    # -- lock ------------------------------------------------------------------------------

    def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock the entity for the rest of the transaction; returns its changes' stamp."""
        stamp = self._known_stamp(kind, entity_id)
        if stamp is not None:
            return stamp
        statement = self._lock_statement(kind, entity_id)
        retried = False
        while True:
            began = self._began
            try:
                cursor = self._conn.execute(statement)
                while cursor.nextset():
                    pass
                row = cursor.fetchone()
                break
            except psycopg.Error as error:
                # A pooled connection that broke before this transaction did anything:
                # nothing is lost, so take a fresh one and try once more.
                if not began and not self._joined and self._conn.broken and not retried:
                    retried = True
                    self._replace_connection(kind, entity_id)
                    continue
                raise self._lock_failure(kind, entity_id, error) from error
        self._began = True
        stamp = self._stamp_from(kind, entity_id, row)
        key = (kind, entity_id)
        if self._locking:
            self._local.append((key, self._store._local.acquire(key)))
        self._locked[key] = stamp
        return stamp

    def _replace_connection(self, kind: str, entity_id: str) -> None:
        store = self._store
        store._putconn(self._conn)
        try:
            store._recover()
            self._conn = store._getconn()
        except psycopg.Error as down:
            self._ended = True
            self._returned = True  # the old connection is back in the pool already
            raise StoreError(
                f"could not lock {ref(kind, entity_id)}: the database is unreachable"
            ) from down

    def record(self, plan: Plan) -> datetime:
        """Encode the plan for the commit (one round trip sends them all); returns the
        stamp fixed by ``lock``."""
        return self._record(plan)

    # -- ending ----------------------------------------------------------------------------

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Insert every recorded change and commit, in one round trip; then ``then``."""
        self._check_live()
        try:
            if self._began:
                self._send_commit()
            if then is not None:
                then()
        finally:
            self._finish()

    def _send_commit(self) -> None:
        conn = self._conn
        try:
            with conn.pipeline():
                for query, params in self._commit_inserts(self._store.channel):
                    conn.execute(query, params, prepare=True)
                ended = conn.execute(b"COMMIT")
        except psycopg.Error as error:
            if conn.broken or conn.closed:
                ids = self._pending_ids(error)
                try:
                    found: set[str] | BaseException = self._store._recorded_after_session_end(
                        conn.info.backend_pid, ids, SESSION_END_WAIT
                    )
                except (psycopg.Error, TimeoutError) as down:
                    found = down
                self._settle(found, error)
                return
            self._rollback_quietly()
            raise self._commit_failure() from error
        self._check_committed(ended.statusmessage)

    def rollback(self) -> None:
        """Roll back (the application's statements on the connection too)."""
        if self._ended:
            return
        try:
            if self._began:
                self._rollback_quietly()
        finally:
            self._finish()

    def _rollback_quietly(self) -> None:
        conn = self._conn
        if conn.closed or conn.pgconn.transaction_status == _IDLE:
            return
        try:
            conn.execute(b"ROLLBACK")
        except psycopg.Error:
            if not self._joined:
                conn.close()  # ends the session and its locks; the pool replaces it

    def _finish(self) -> None:
        """Release the in-process locks and the connection; runs exactly once."""
        store = self._store
        local = self._forget()
        try:
            for key, token in reversed(local):
                store._local.release(key, token)
        finally:
            conn = self._conn
            if not self._joined and not self._returned:
                self._returned = True
                store._putconn(conn)
            elif self._restore_autocommit and not conn.closed:
                with suppress(psycopg.Error):  # it is idle by now: this cannot fail
                    conn.autocommit = False

    def __enter__(self) -> PostgresTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

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
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from reactive_entities.adapters.postgres.codec import utc
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import Plan
from reactive_entities.ports.store import StoreTransaction

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.store import PostgresEntityStore

__all__ = ["PostgresTransaction"]

_Conn = psycopg.Connection[Any]
_Key = tuple[str, str]
_IDLE = TransactionStatus.IDLE
_BEGIN = b"BEGIN;"
#: How long the commit-outcome check waits for the failed session to end.
_SESSION_END_WAIT = 10.0


def ref(kind: str, entity_id: str) -> str:
    """``kind:id`` for a message, a long id shortened."""
    if len(entity_id) <= 120:
        return f"{kind}:{entity_id}"
    return f"{kind}:{entity_id[:120]}… ({len(entity_id)} characters)"


class PostgresTransaction(StoreTransaction):
    """One unit of work on one connection; see the module docstring."""

    __slots__ = (
        "_began",
        "_conn",
        "_ended",
        "_joined",
        "_local",
        "_locked",
        "_pending",
        "_restore_autocommit",
        "_returned",
        "_store",
    )

    def __init__(self, store: PostgresEntityStore, connection: _Conn | None) -> None:
        self._store = store
        self._locked: dict[_Key, datetime] = {}
        self._local: list[tuple[_Key, object]] = []  # in-process locks held
        self._pending: list[tuple[Plan, dict[str, Any]]] = []
        self._ended = False
        self._began = False
        self._restore_autocommit = False
        self._returned = False
        if connection is None:
            self._joined = False
            self._conn = store._getconn()
            return
        self._joined = True
        _check_idle(connection)
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

    # -- lock and record -------------------------------------------------------------------

    def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock the entity for the rest of the transaction; returns its changes' stamp."""
        key = (kind, entity_id)
        stamp = self._locked.get(key)
        if stamp is not None:
            return stamp
        if self._ended:
            raise InvalidArgumentError(
                f"lock of {ref(kind, entity_id)} after the transaction ended"
            )
        store = self._store
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
        if row is None:  # pragma: no cover - the statement always returns the stamp
            raise StoreError(f"no stamp returned for {ref(kind, entity_id)}")
        stamp = utc(row[0])
        if store.locking:
            self._local.append((key, store._local.acquire(key)))
        self._locked[key] = stamp
        return stamp

    def _lock_statement(self, kind: str, entity_id: str) -> bytes:
        store = self._store
        queries = store._queries
        parts = [] if self._began else [_BEGIN]
        if store.locking:
            timeout_ms = max(1, round(store.lock_timeout.total_seconds() * 1000))
            lock_key = store._keys.lock_key(kind, entity_id)
            parts.append(
                queries.lock.format(timeout=f"'{timeout_ms}ms'", lock_key=lock_key).encode()
            )
        clock = store._clock
        at = "NULL" if clock is None else f"'{clock.now().isoformat()}'"
        key = store._keys.entity_key(kind, entity_id)
        parts.append(queries.stamp.format(at=at, key=f"'{key}'").encode())
        return b"\n".join(parts)

    def _lock_failure(self, kind: str, entity_id: str, error: psycopg.Error) -> StoreError:
        what = ref(kind, entity_id)
        if isinstance(error, pg_errors.LockNotAvailable):
            seconds = self._store.lock_timeout.total_seconds()
            return StoreError(f"timed out after {seconds:g} s waiting for the lock of {what}")
        if isinstance(error, pg_errors.DeadlockDetected):
            return StoreError(
                f"deadlock detected while locking {what}; the transaction is rolled back"
            )
        return StoreError(f"could not lock {what}")

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
        """Encode the plan for the commit; returns the stamp fixed by ``lock``."""
        stamp = self._locked.get((plan.kind, plan.entity_id))
        if stamp is None or self._ended:
            raise InvalidArgumentError(
                f"record of {ref(plan.kind, plan.entity_id)} needs its lock in a live transaction"
            )
        self._pending.append((plan, self._store._record_params(plan, stamp)))
        return stamp

    # -- ending ----------------------------------------------------------------------------

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Insert every recorded change and commit, in one round trip; then ``then``."""
        if self._ended:
            raise InvalidArgumentError("commit of a transaction that already ended")
        try:
            if self._began:
                self._send_commit()
            if then is not None:
                then()
        finally:
            self._finish()

    def _send_commit(self) -> None:
        conn = self._conn
        queries = self._store._queries
        try:
            with conn.pipeline():
                for _, params in self._pending:
                    conn.execute(queries.record, params, prepare=True)
                if self._pending:  # wake feed readers everywhere (sent at commit)
                    conn.execute(queries.notify, (self._store.channel,), prepare=True)
                ended = conn.execute(b"COMMIT")
        except psycopg.Error as error:
            if conn.broken or conn.closed:
                self._settle_lost_commit(error)
                return
            self._rollback_quietly()
            first = self._pending[0][0] if self._pending else None
            raise StoreError(
                "could not record "
                + (
                    f"change {first.change_id} of {ref(first.kind, first.entity_id)}"
                    if first is not None
                    else "the transaction"
                )
                + (f" and {len(self._pending) - 1} more" if len(self._pending) > 1 else "")
            ) from error
        if ended.statusmessage != "COMMIT":
            # An earlier statement failed (the application caught its error): PostgreSQL
            # answers COMMIT of an aborted transaction with ROLLBACK, silently.
            raise StoreError(
                "the transaction was aborted by an earlier failed statement, so PostgreSQL "
                "rolled it back: nothing of it was committed"
            )

    def _settle_lost_commit(self, error: psycopg.Error) -> None:
        """The connection failed while committing: find out, for sure, what happened."""
        ids = [plan.change_id for plan, _ in self._pending]
        first = self._pending[0][0] if self._pending else None
        what = "" if first is None else f" of {ref(first.kind, first.entity_id)}"
        if not ids:
            raise StoreError(
                "the connection failed while committing; the outcome is unknown "
                "(the transaction recorded no change to look for)"
            ) from error
        pid = self._conn.info.backend_pid
        try:
            found = self._store._recorded_after_session_end(pid, ids, _SESSION_END_WAIT)
        except (psycopg.Error, TimeoutError) as down:
            raise StoreError(
                f"could not record change {ids[0]}{what}"
                + (f" (and {len(ids) - 1} more)" if len(ids) > 1 else "")
                + ": the connection failed while committing and the outcome is unknown "
                "(the database could not be asked)"
            ) from down
        if len(found) == len(ids):
            return  # committed: the caller succeeds and delivers
        if not found:
            raise StoreError(
                f"could not record change {ids[0]}{what}: the connection failed while "
                "committing, and it was not recorded (the transaction rolled back)"
            ) from error
        raise StoreError(  # pragma: no cover - one transaction commits all or nothing
            f"the connection failed while committing change {ids[0]}; only part of the "
            "transaction is visible, which should be impossible"
        ) from error

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
        self._ended = True
        self._pending = []
        self._locked = {}
        store = self._store
        local, self._local = self._local, []
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


def _check_idle(connection: object) -> None:
    if not isinstance(connection, psycopg.Connection):
        raise InvalidArgumentError(
            f"connection must be a psycopg.Connection (got {type(connection).__name__})"
        )
    if connection.closed:
        raise InvalidArgumentError("connection is closed")
    status = connection.info.transaction_status
    if status != _IDLE:
        raise InvalidArgumentError(
            f"connection must be idle, not inside a transaction (status: {status.name}); "
            "the library begins and ends the transaction itself"
        )

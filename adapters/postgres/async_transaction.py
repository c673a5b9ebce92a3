"""A write transaction of the asyncio PostgreSQL store (the ``AsyncStoreTransaction``
port): the behaviour of ``transaction.py``, on a ``psycopg.AsyncConnection``.

What differs, and why.

* **BEGIN, on a pooled connection, travels with the first lock** (one round trip, as
  in the blocking store), although ``connection`` is a property that cannot wait for a
  round trip: until the first lock the connection is left out of autocommit mode, so a
  statement the application runs on it first makes psycopg begin the transaction
  implicitly. The first lock then sends ``BEGIN`` itself only if nothing began yet
  (switching autocommit back on, which costs no round trip on an idle connection).
  A joined connection (the application's) begins at once, as in the blocking store.
* **Cancellation.** A task cancelled while it waits (for an entity's lock, in ``apply``,
  anywhere before ``commit``) leaves through ``rollback``: psycopg cancels the running
  statement, ``ROLLBACK`` ends the transaction and its advisory locks, the connection
  goes back to the pool. A connection whose state is unknown (the rollback itself
  failed or was interrupted) is closed, never returned dirty: closing ends the session
  and every lock it held. The commit round trip, once sent, is finished even if the
  task is cancelled meanwhile — its outcome is then known, ``then`` runs for a change
  that committed — and the cancellation is raised after it.

The shared logic (the lock statement, the inserts, what a failure means) is
:class:`~reactive_entities.adapters.postgres.writes.WriteState`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from reactive_entities.adapters.postgres.writes import SESSION_END_WAIT, WriteState, check_idle
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import Plan
from reactive_entities.ports.async_store import AsyncStoreTransaction

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.async_store import AsyncPostgresEntityStore

__all__ = ["AsyncPostgresTransaction"]

_Conn = psycopg.AsyncConnection[Any]
_IDLE = TransactionStatus.IDLE


class AsyncPostgresTransaction(WriteState, AsyncStoreTransaction):
    """One unit of work on one async connection; open it with :meth:`open`."""

    __slots__ = ("_conn", "_store")

    def __init__(self, store: AsyncPostgresEntityStore, connection: _Conn, *, joined: bool) -> None:
        super().__init__(
            store._ops, locking=store.locking, lock_timeout=store.lock_timeout, joined=joined
        )
        self._store = store
        self._conn = connection

    @classmethod
    async def open(
        cls, store: AsyncPostgresEntityStore, connection: object
    ) -> AsyncPostgresTransaction:
        """A transaction begun on ``connection`` (an idle ``AsyncConnection``, left open
        and idle afterwards) or, when it is None, on a pooled connection."""
        if connection is None:
            tx = cls(store, await store._getconn(), joined=False)
        else:
            check_idle(connection, psycopg.AsyncConnection, "psycopg.AsyncConnection")
            tx = cls(store, connection, joined=True)  # type: ignore[arg-type]
        try:
            await tx._begin()
        except BaseException:
            await tx._finish()
            raise
        return tx

    async def _begin(self) -> None:
        conn = self._conn
        if not self._joined:
            # BEGIN waits for the first lock or for the application's first statement
            # (psycopg begins implicitly outside autocommit mode): see the docstring.
            await conn.set_autocommit(False)
            return
        try:
            if not conn.autocommit:
                await conn.set_autocommit(True)
                self._restore_autocommit = True
            await conn.execute(b"BEGIN")
        except psycopg.Error as error:
            raise StoreError("could not begin a transaction on the given connection") from error
        self._began = True

    async def _start(self) -> None:
        """Before the first lock on a pooled connection: whether ``BEGIN`` is still due
        (nothing began it), with autocommit back on so the lock statement carries it."""
        conn = self._conn
        status = conn.pgconn.transaction_status
        if status == _IDLE:
            await conn.set_autocommit(True)
        elif not conn.broken:  # the application's statement began it
            self._began = True
        # A broken connection: the lock statement fails, and ``lock`` takes a fresh one.

    async def _replace_connection(self) -> None:
        store = self._store
        self._returned = True
        await store._putconn(self._conn)
        await store._recover()
        self._conn = await store._getconn()
        self._returned = False

    @property
    def connection(self) -> _Conn:
        """The connection, inside this transaction."""
        return self._conn

    # -- lock ------------------------------------------------------------------------------

    async def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock the entity for the rest of the transaction; returns its changes' stamp."""
        stamp = self._known_stamp(kind, entity_id)
        if stamp is not None:
            return stamp
        if not self._began:
            await self._start()
        retried = False
        while True:
            began = self._began
            try:
                cursor = await self._conn.execute(self._lock_statement(kind, entity_id))
                while cursor.nextset():
                    pass
                row = await cursor.fetchone()
                break
            except psycopg.Error as error:
                # A pooled connection that broke before this transaction did anything:
                # nothing is lost, so take a fresh one and try once more.
                if not began and not self._joined and self._conn.broken and not retried:
                    retried = True
                    await self._replace_connection()
                    continue
                raise self._lock_failure(kind, entity_id, error) from error
        self._began = True
        stamp = self._stamp_from(kind, entity_id, row)
        key = (kind, entity_id)
        if self._locking:
            self._local.append((key, await self._store._local.acquire_async(key)))
        self._locked[key] = stamp
        return stamp

    async def record(self, plan: Plan) -> datetime:
        """Encode the plan for the commit (one round trip sends them all); returns the
        stamp fixed by ``lock``."""
        return self._record(plan)

    # -- ending ----------------------------------------------------------------------------

    async def commit(self, then: Callable[[], None] | None = None) -> None:
        """Insert every recorded change and commit, in one round trip; then ``then``."""
        self._check_live()
        try:
            cancelled = await _finish_even_if_cancelled(self._send_commit())
            if then is not None:
                then()
            if cancelled is not None:
                raise cancelled
        finally:
            await self._finish()

    async def _send_commit(self) -> None:
        conn = self._conn
        if not self._began and conn.pgconn.transaction_status == _IDLE:
            return  # nothing began: no lock, and no statement of the application's
        try:
            async with conn.pipeline():
                for query, params in self._commit_inserts(self._store.channel):
                    await conn.execute(query, params, prepare=True)
                ended = await conn.execute(b"COMMIT")
        except psycopg.Error as error:
            if conn.broken or conn.closed:
                ids = self._pending_ids(error)
                try:
                    found: set[str] | BaseException = await self._store._recorded_after_session_end(
                        conn.info.backend_pid, ids, SESSION_END_WAIT
                    )
                except (psycopg.Error, TimeoutError) as down:
                    found = down
                self._settle(found, error)
                return
            await self._rollback_quietly()
            raise self._commit_failure() from error
        self._check_committed(ended.statusmessage)

    async def rollback(self) -> None:
        """Roll back (the application's statements on the connection too)."""
        if self._ended:
            return
        try:
            await self._rollback_quietly()  # a no-op when nothing began
        finally:
            await self._finish()

    async def _rollback_quietly(self) -> None:
        conn = self._conn
        if conn.closed or conn.pgconn.transaction_status == _IDLE:
            return
        try:
            await conn.execute(b"ROLLBACK")
        except psycopg.Error:
            if not self._joined:
                await conn.close()  # ends the session and its locks; the pool replaces it
        except BaseException:
            # Interrupted while rolling back: the session's state is unknown, so it is
            # ended (with its locks) rather than left holding them, even a joined one.
            await conn.close()
            raise

    async def _finish(self) -> None:
        """Release the in-process locks and the connection; runs exactly once."""
        store = self._store
        for key, token in reversed(self._forget()):
            store._local.release(key, token)
        conn = self._conn
        if not self._joined and not self._returned:
            self._returned = True
            if not conn.closed and not conn.autocommit:
                with suppress(psycopg.Error):  # idle: no round trip; else _putconn closes it
                    if conn.pgconn.transaction_status == _IDLE:
                        await conn.set_autocommit(True)
            await store._putconn(conn)
        elif self._restore_autocommit and not conn.closed:
            self._restore_autocommit = False
            with suppress(psycopg.Error):  # it is idle by now: this cannot fail
                await conn.set_autocommit(False)

    async def __aenter__(self) -> AsyncPostgresTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()


async def _finish_even_if_cancelled(work: Any) -> asyncio.CancelledError | None:
    """Await ``work`` to its end even if the calling task is cancelled meanwhile; the
    cancellation (to raise once the outcome is handled) or None. ``work``'s own error
    propagates."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
            return cancelled
        except asyncio.CancelledError as error:
            if task.done():
                task.result()  # raises what ``work`` raised (or its own cancellation)
                return error
            cancelled = error

"""The asyncio PostgreSQL entity store: the same log, SQL and migrations as
``store.py``, through a ``psycopg_pool.AsyncConnectionPool`` (DESIGN §10).

Everything the two stores say to the database is built once (``operations.py``,
``migrations.py``, ``writes.py``) and run here with ``await``; see ``store.py`` for the
theory of operation, which holds unchanged. What is particular to asyncio — a
transaction begins when it opens, and what cancellation leaves behind — is described in
``async_transaction.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.async_transaction import AsyncPostgresTransaction
from reactive_entities.adapters.postgres.connections import (
    connect_failure,
    open_async_pool,
    probe_async,
)
from reactive_entities.adapters.postgres.dialogue import Dialogue, failure_message, run_async
from reactive_entities.adapters.postgres.local_locks import AsyncLocalLocks
from reactive_entities.adapters.postgres.operations import (
    checked_pool_size,
    checked_schema,
)
from reactive_entities.adapters.postgres.store_base import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_SCHEMA,
    StoreBase,
)
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import ChangeRecord, TransitionRecord
from reactive_entities.ports.async_store import AsyncEntityStore
from reactive_entities.ports.clock import Clock

__all__ = ["AsyncPostgresEntityStore", "DEFAULT_LOCK_TIMEOUT", "DEFAULT_SCHEMA"]

_Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")
_IDLE = TransactionStatus.IDLE


class AsyncPostgresEntityStore(StoreBase[AsyncConnectionPool, AsyncLocalLocks], AsyncEntityStore):
    """An ``AsyncEntityStore`` in a PostgreSQL schema, shared by every process using it.

    Build one on an open pool you own (``close`` leaves it open) or let it open its own
    (``await AsyncPostgresEntityStore.connect(dsn)``; ``close`` closes it). The schema
    must be migrated (:meth:`migrate`) before use.
    """

    _new_local = AsyncLocalLocks

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        locking: bool = True,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> AsyncPostgresEntityStore:
        """A store with its own pool of up to ``pool_size`` connections to ``dsn``,
        opened in the running loop; an unreachable server fails at once (``StoreError``
        with libpq's reason)."""
        checked_schema(schema)
        checked_pool_size(pool_size)
        failure: StoreError | None = None
        try:
            await probe_async(dsn, timeout=pool_timeout)
            pool = await open_async_pool(
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

    async def migrate(self) -> tuple[int, ...]:
        """Apply missing migrations (idempotent, safe from many processes at once);
        returns the versions applied."""
        return await self._run(migrations.upgrade_dialogue(self._schema))

    async def check_schema(self) -> int:
        """The schema's version; ``SchemaVersionError`` unless it is this code's."""
        return await self._run(migrations.check_dialogue(self._schema))

    async def schema_version(self) -> int:
        """The newest migration recorded in the schema (0 when it was never migrated)."""
        return await self._run(migrations.version_dialogue(self._schema))

    # -- writing -------------------------------------------------------------------------

    async def begin(self, connection: Any = None) -> AsyncPostgresTransaction:
        """A write transaction, begun, on ``connection`` (an idle ``AsyncConnection``,
        left open and idle) or on a pooled connection."""
        return await AsyncPostgresTransaction.open(self, connection)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_Conn]:
        """A pooled connection for the plugin's ``read`` outside a write."""
        conn = await self._getconn()
        try:
            yield conn
        finally:
            await self._putconn(conn)

    async def _recorded_after_session_end(
        self, pid: int, change_ids: Sequence[str], wait: float
    ) -> set[str]:
        """See ``PostgresEntityStore._recorded_after_session_end``."""
        steps = self._ops.recorded_after_session_end(pid, change_ids, wait)
        dsn = self._dsn
        if dsn is not None:
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=max(1, round(wait))
            )
            try:
                return await run_async(conn, steps)
            finally:
                await conn.close()
        conn = await self._getconn(timeout=wait)
        try:
            return await run_async(conn, steps)
        finally:
            await self._putconn(conn)

    async def now(self) -> datetime:
        """The database's ``clock_timestamp()``, or the injected clock's time."""
        if self._clock is not None:
            return self._clock.now()
        return await self._run(self._ops.now())

    async def close(self) -> None:
        """Close the pool if this store opened it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self._pool.close()

    # -- reading -------------------------------------------------------------------------

    async def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row stamped at or before ``at`` (or newest overall)."""
        return await self._run(self._ops.latest_transition(kind, entity_id, field, at))

    async def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        return await self._run(self._ops.latest_change(kind, entity_id, at))

    async def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field with ``since ≤ transitioned_at ≤ until`` (store's clock)."""
        return await self._run(self._ops.count_transitions(kind, entity_id, field, since, until))

    async def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        return await self._run(self._ops.transitions(kind, entity_id, field, since, limit))

    # -- connections ---------------------------------------------------------------------

    async def _getconn(self, timeout: float | None = None) -> _Conn:
        conn: _Conn = await self._pool.getconn(timeout=timeout)
        if not conn.autocommit:  # a pool the caller configured differently
            try:
                await conn.set_autocommit(True)
            except BaseException:
                await self._pool.putconn(conn)
                raise
            self._flipped.add(id(conn))
        return conn

    async def _putconn(self, conn: _Conn) -> None:
        """Return ``conn`` to the pool idle. A connection that cannot be made idle — or
        whose cleanup is interrupted — is closed, and the pool replaces it."""
        flipped = id(conn) in self._flipped
        self._flipped.discard(id(conn))
        try:
            if not conn.closed and conn.pgconn.transaction_status != _IDLE:
                await conn.execute(b"ROLLBACK")
            if flipped and not conn.closed:
                await conn.set_autocommit(False)
        except BaseException as error:
            await conn.close()
            if not isinstance(error, psycopg.Error):
                await self._pool.putconn(conn)
                raise
        await self._pool.putconn(conn)

    async def _recover(self) -> None:
        """After finding a broken connection: fail fast if the server is unreachable,
        else let the pool replace its dead idle connections (see the sync store)."""
        if self._dsn is not None:
            await probe_async(self._dsn, timeout=self._pool.timeout)
        with suppress(psycopg.Error):
            await self._pool.check()

    async def _run(self, dialogue: Dialogue[T]) -> T:
        """Run ``dialogue`` on a pooled connection, as ``PostgresEntityStore._run``."""
        retry = dialogue.retry
        while True:
            try:
                conn = await self._getconn()
            except psycopg.Error as error:
                raise StoreError(f"could not {dialogue.what}") from error
            try:
                return await self._steps(conn, dialogue)
            except psycopg.Error as error:
                if not (retry and conn.broken):
                    raise StoreError(failure_message(dialogue, error)) from error
                retry = False
            finally:
                await self._putconn(conn)
            try:
                await self._recover()
            except psycopg.Error as down:
                raise StoreError(f"could not {dialogue.what}") from down

    @staticmethod
    async def _steps(conn: _Conn, dialogue: Dialogue[T]) -> T:
        if dialogue.transaction:
            async with conn.transaction():
                return await run_async(conn, dialogue.steps())
        return await run_async(conn, dialogue.steps())

"""What both flavours of the PostgreSQL store hold: their configuration, checked once,
and the properties the composition root and the feed read (``store.py`` for threads,
``async_store.py`` for asyncio)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from reactive_entities.adapters.postgres.connections import pool_conninfo
from reactive_entities.adapters.postgres.feed_sql import channel_for
from reactive_entities.adapters.postgres.local_locks import LocalLocks
from reactive_entities.adapters.postgres.operations import (
    StoreOperations,
    checked_schema,
    checked_timeout,
)
from reactive_entities.ports.clock import Clock

__all__ = ["DEFAULT_LOCK_TIMEOUT", "DEFAULT_SCHEMA", "StoreBase"]

#: The schema the library's tables live in unless another is configured.
DEFAULT_SCHEMA = "reactive_entities"
#: How long a write waits for an entity another transaction holds (SPEC §14.6).
DEFAULT_LOCK_TIMEOUT = timedelta(seconds=30)

P = TypeVar("P", ConnectionPool, AsyncConnectionPool)
L = TypeVar("L", bound=LocalLocks)


class StoreBase(Generic[P, L]):
    """A store's pool, schema, clock and locking options. Built on a pool you own
    (``close`` leaves it open) or, through ``connect``, on one it opened (``owns_pool``;
    ``close`` closes it)."""

    #: The in-process lock table of the flavour (threads or one event loop).
    _new_local: ClassVar[type[Any]] = LocalLocks

    def __init__(
        self,
        pool: P,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        locking: bool = True,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        owns_pool: bool = False,
        dsn: str | None = None,
    ) -> None:
        self._pool: P = pool
        self._schema = checked_schema(schema)
        self._clock = clock
        self._locking = locking
        self.lock_timeout = checked_timeout(lock_timeout)
        self._owns_pool = owns_pool
        self._dsn = dsn
        self._ops = StoreOperations(schema, clock)
        self._local: L = self._new_local()
        self._flipped: set[int] = set()  # connections we switched to autocommit
        self._closed = False

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
        return self._dsn if self._dsn is not None else pool_conninfo(self._pool)

    @property
    def pool(self) -> P:
        """The connection pool the store uses."""
        return self._pool

    @property
    def locking(self) -> bool:
        """Whether ``lock`` serializes writers (``locking=False`` makes it a no-op)."""
        return self._locking

    def __repr__(self) -> str:
        return f"<{type(self).__name__} schema={self._schema!r} locking={self._locking}>"

"""Where the store's connections come from: the pool it opens, and a direct probe.

The store runs in autocommit mode and writes ``BEGIN``/``COMMIT`` itself, so a locked
mutation costs exactly the round trips it needs. Sessions use UTC so timestamps need no
conversion. A *probe* is a short-lived direct connection: it tells at once whether the
server is reachable (a pool would only wait for its timeout), with libpq's own message.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from reactive_entities.adapters.postgres.dsn import scrubbed_error
from reactive_entities.domain.errors import StoreError

__all__ = [
    "connect_failure",
    "open_async_pool",
    "open_pool",
    "pool_conninfo",
    "probe",
    "probe_async",
]


# Every session speaks UTC, so stamps read back as stored whatever the server's zone.
_SET_UTC = "SET TimeZone TO 'UTC'"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_SET_UTC)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(_SET_UTC)


def open_pool(dsn: str, *, size: int, timeout: float, name: str) -> ConnectionPool:
    """An open pool of up to ``size`` autocommit connections to ``dsn``; ``getconn``
    waits at most ``timeout`` seconds."""
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        timeout=timeout,
        kwargs={"autocommit": True},
        configure=_configure,
        name=name,
        open=True,
    )


async def open_async_pool(dsn: str, *, size: int, timeout: float, name: str) -> AsyncConnectionPool:
    """The asyncio twin of :func:`open_pool` (opened in the running loop), configured
    alike."""
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        timeout=timeout,
        kwargs={"autocommit": True},
        configure=_configure_async,
        name=name,
        open=False,
    )
    await pool.open()
    return pool


def pool_conninfo(pool: ConnectionPool | AsyncConnectionPool) -> str:
    """The connection string ``pool`` connects with."""
    info: Any = pool.conninfo  # a str, or a function giving one (psycopg_pool >= 3.3)
    return str(info() if callable(info) else info)


def connect_failure(error: psycopg.Error, dsn: str) -> StoreError:
    """The ``StoreError`` of a failed first connection, its cause scrubbed of the DSN's
    password (libpq may quote an unparseable one). Raise it outside the ``except``
    block: the raw error must not be chained as the context."""
    cause = scrubbed_error(error, dsn)
    text = str(cause).strip()
    failure = StoreError(
        "could not connect to PostgreSQL: "
        + (text.splitlines()[0] if text else type(cause).__name__)
    )
    failure.__cause__ = cause
    return failure


async def probe_async(dsn: str, *, timeout: float) -> None:
    """The asyncio twin of :func:`probe`."""
    seconds = max(1, round(timeout))
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=seconds)
    await conn.close()


def probe(dsn: str, *, timeout: float) -> None:
    """Connect to ``dsn`` and disconnect; raises the driver's error when that fails."""
    seconds = max(1, round(timeout))
    with psycopg.connect(dsn, autocommit=True, connect_timeout=seconds):
        pass

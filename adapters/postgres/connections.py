"""Where the store's connections come from: the pool it opens, and a direct probe.

The store runs in autocommit mode and writes ``BEGIN``/``COMMIT`` itself, so a locked
mutation costs exactly the round trips it needs. Sessions use UTC so timestamps need no
conversion. A *probe* is a short-lived direct connection: it tells at once whether the
server is reachable (a pool would only wait for its timeout), with libpq's own message.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

__all__ = ["open_pool", "probe"]


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TimeZone TO 'UTC'")


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


def probe(dsn: str, *, timeout: float) -> None:
    """Connect to ``dsn`` and disconnect; raises the driver's error when that fails."""
    seconds = max(1, round(timeout))
    with psycopg.connect(dsn, autocommit=True, connect_timeout=seconds):
        pass

"""The asyncio composition root: the one place that chooses the asyncio adapters.

``in_memory()`` returns a fully wired :class:`AsyncEngine` at once (nothing to connect
to, so it is a plain function; use the engine with ``async with``). ``postgres()``
connects, migrates and checks the schema before it returns, so it is a coroutine:
``engine = await aio.compose.postgres(dsn)``. Both take the keyword options of their
blocking twins in :mod:`reactive_entities.compose`, with asyncio adapters where those
take adapters.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import cattrs

from reactive_entities.adapters.logging import LoggingEmitter
from reactive_entities.adapters.memory.async_emitter import AsyncInProcessEmitter
from reactive_entities.adapters.memory.async_feed import AsyncMemoryFeed
from reactive_entities.adapters.memory.async_secret_registry import AsyncInMemorySecretRegistry
from reactive_entities.adapters.memory.async_store import AsyncInMemoryEntityStore
from reactive_entities.adapters.memory.clock import SystemClock
from reactive_entities.adapters.memory.feed import MemoryFeed
from reactive_entities.adapters.memory.store import DEFAULT_LOCK_TIMEOUT
from reactive_entities.aio.engine import AsyncEngine
from reactive_entities.domain.documents import make_converter
from reactive_entities.durable import DEFAULT_POLL_INTERVAL
from reactive_entities.ports.async_emitter import AsyncEmitter
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.async_store import AsyncEntityStore
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.emitter import Emitter
from reactive_entities.run_secrets import UnknownRunPolicy
from reactive_entities.shell_checks import (
    check_postgres_options,
    check_unknown_run,
    checked_lock_timeout,
)

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["in_memory", "postgres"]


def in_memory(
    *,
    clock: Clock | None = None,
    log_events: bool = False,
    logger: logging.Logger | None = None,
    store: AsyncEntityStore | None = None,
    emitter: Emitter | AsyncEmitter | None = None,
    secrets: AsyncSecretRegistry | None = None,
    converter: cattrs.Converter | None = None,
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
    feed: AsyncChangeFeed | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    unknown_run: UnknownRunPolicy = "warn",
) -> AsyncEngine:
    """An asyncio engine that keeps its transition log in this process (no server).

    Options are those of :func:`reactive_entities.compose.in_memory`: ``emitter`` (a
    blocking or an asyncio one) receives every event after the in-process subscribers;
    ``lock_timeout`` bounds the wait for an entity another transaction holds; a custom
    ``store`` comes with its own ``feed`` or none.

    >>> import asyncio
    >>> async def main() -> tuple[str, ...]:
    ...     async with in_memory() as engine:
    ...         return engine.kinds()
    >>> asyncio.run(main())
    ()
    """
    check_unknown_run(unknown_run)
    clock = clock if clock is not None else SystemClock()
    if store is None:
        memory_feed = MemoryFeed(clock)
        feed = AsyncMemoryFeed(memory_feed) if feed is None else feed
        store = AsyncInMemoryEntityStore(
            clock, lock_timeout=checked_lock_timeout(lock_timeout), on_commit=memory_feed.record
        )
    return _engine(
        store=store,
        feed=feed,
        poll_interval=poll_interval,
        log_events=log_events,
        logger=logger,
        emitter=emitter,
        secrets=secrets,
        converter=converter,
        unknown_run=unknown_run,
    )


async def postgres(
    dsn: str | None = None,
    *,
    pool: AsyncConnectionPool | None = None,
    schema: str = "reactive_entities",
    migrate: bool = True,
    locking: bool = True,
    clock: Clock | None = None,
    log_events: bool = False,
    logger: logging.Logger | None = None,
    emitter: Emitter | AsyncEmitter | None = None,
    secrets: AsyncSecretRegistry | None = None,
    converter: cattrs.Converter | None = None,
    pool_size: int = 10,
    pool_timeout: float = 10.0,
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    unknown_run: UnknownRunPolicy = "warn",
    shared_secrets: bool = False,
) -> AsyncEngine:
    """An asyncio engine whose transition log lives in PostgreSQL, shared by every
    process (blocking or asyncio) using the same database and ``schema``.

    Options are those of :func:`reactive_entities.compose.postgres`; ``pool`` is a
    ``psycopg_pool.AsyncConnectionPool`` (left open), else the engine opens and closes
    its own pool of up to ``pool_size`` connections to ``dsn``. The schema is migrated
    before this returns unless ``migrate=False`` (then it must be current:
    ``SchemaVersionError``).
    """
    # Imported here: psycopg takes longer to import than the rest of the library, and
    # in-memory users should not pay for it.
    from reactive_entities.adapters.postgres.async_feed import AsyncPostgresFeed
    from reactive_entities.adapters.postgres.async_store import AsyncPostgresEntityStore

    check_postgres_options(dsn, pool, secrets, shared_secrets, unknown_run)
    timeout = checked_lock_timeout(lock_timeout)
    if pool is None:
        store = await AsyncPostgresEntityStore.connect(
            dsn if dsn is not None else "",
            schema=schema,
            clock=clock,
            locking=locking,
            lock_timeout=timeout,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
        )
    else:
        store = AsyncPostgresEntityStore(
            pool, schema=schema, clock=clock, locking=locking, lock_timeout=timeout
        )
    try:
        if migrate:
            await store.migrate()
        else:
            await store.check_schema()
    except BaseException:
        await store.close()
        raise
    if shared_secrets:
        from reactive_entities.adapters.postgres.async_secret_registry import (
            AsyncPostgresSecretRegistry,
        )

        secrets = AsyncPostgresSecretRegistry(store.pool, schema=schema)
    return _engine(
        store=store,
        feed=AsyncPostgresFeed(store, conninfo=store.conninfo, logger=logger),
        poll_interval=poll_interval,
        log_events=log_events,
        logger=logger,
        emitter=emitter,
        secrets=secrets,
        converter=converter,
        unknown_run=unknown_run,
    )


def _engine(
    *,
    store: AsyncEntityStore,
    feed: AsyncChangeFeed | None,
    poll_interval: float,
    log_events: bool,
    logger: logging.Logger | None,
    emitter: Emitter | AsyncEmitter | None,
    secrets: AsyncSecretRegistry | None,
    converter: cattrs.Converter | None,
    unknown_run: UnknownRunPolicy,
) -> AsyncEngine:
    secrets = secrets if secrets is not None else AsyncInMemorySecretRegistry()
    also: list[Emitter | AsyncEmitter] = []
    if log_events:
        also.append(LoggingEmitter(logger))
    if emitter is not None:
        also.append(emitter)
    hub = AsyncInProcessEmitter(secrets=secrets, logger=logger, also=also)
    return AsyncEngine(
        store=store,
        emitter=hub,
        subscriptions=hub,
        secrets=secrets,
        converter=converter if converter is not None else make_converter(),
        logger=logger,
        feed=feed,
        poll_interval=poll_interval,
        unknown_run=unknown_run,
    )

"""The composition root: the one place that chooses concrete adapters.

``in_memory()`` and ``postgres()`` return a fully wired :class:`Engine`. Every adapter
can be replaced by keyword (tests pass fakes or a :class:`ManualClock`); defaults are
built inside the call, and nothing connects or reads configuration at import time.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import cattrs

from reactive_entities.adapters.logging import LoggingEmitter
from reactive_entities.adapters.memory.clock import SystemClock
from reactive_entities.adapters.memory.emitter import FanOutEmitter, InProcessEmitter
from reactive_entities.adapters.memory.feed import MemoryFeed
from reactive_entities.adapters.memory.secret_registry import InMemorySecretRegistry
from reactive_entities.adapters.memory.store import DEFAULT_LOCK_TIMEOUT, InMemoryEntityStore
from reactive_entities.domain.documents import make_converter
from reactive_entities.durable import DEFAULT_POLL_INTERVAL
from reactive_entities.engine import Engine
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.emitter import Emitter
from reactive_entities.ports.feed import ChangeFeed
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore
from reactive_entities.run_secrets import UnknownRunPolicy
from reactive_entities.shell_checks import (
    check_postgres_options,
    check_unknown_run,
    checked_lock_timeout,
)

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["in_memory", "postgres"]


def in_memory(
    *,
    clock: Clock | None = None,
    log_events: bool = False,
    logger: logging.Logger | None = None,
    store: EntityStore | None = None,
    emitter: Emitter | None = None,
    secrets: SecretRegistry | None = None,
    converter: cattrs.Converter | None = None,
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
    feed: ChangeFeed | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    unknown_run: UnknownRunPolicy = "warn",
) -> Engine:
    """An engine that keeps its transition log in this process (no server).

    ``emitter`` receives every event in addition to in-process subscribers;
    ``log_events`` adds a :class:`LoggingEmitter`. ``lock_timeout`` bounds the wait for
    an entity another transaction holds (then ``StoreError``). The change feed
    (``engine.changes``, ``Broadcast``/``WorkQueue`` subscriptions) lives in this
    process too; a custom ``store`` comes with its own ``feed`` or none.
    ``unknown_run`` says what a write naming a run without registered secrets does:
    ``"warn"`` (one WARNING per run id), ``"error"`` (``InvalidArgumentError`` before
    ``apply`` runs) or ``"allow"``.

    >>> with in_memory() as engine:
    ...     engine.kinds()
    ()
    """
    check_unknown_run(unknown_run)
    clock = clock if clock is not None else SystemClock()
    if store is None:
        memory_feed = MemoryFeed(clock)
        feed = memory_feed if feed is None else feed
        store = InMemoryEntityStore(
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


def postgres(
    dsn: str | None = None,
    *,
    pool: ConnectionPool | None = None,
    schema: str = "reactive_entities",
    migrate: bool = True,
    locking: bool = True,
    clock: Clock | None = None,
    log_events: bool = False,
    logger: logging.Logger | None = None,
    emitter: Emitter | None = None,
    secrets: SecretRegistry | None = None,
    converter: cattrs.Converter | None = None,
    pool_size: int = 10,
    pool_timeout: float = 10.0,
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    unknown_run: UnknownRunPolicy = "warn",
    shared_secrets: bool = False,
) -> Engine:
    """An engine whose transition log lives in PostgreSQL, shared by every process
    using the same database and ``schema``.

    Connect with ``dsn`` (a libpq DSN or ``postgresql://`` URL; ``None`` means libpq's
    defaults, i.e. the ``PGHOST``, ``PGDATABASE``, ``PGUSER``… environment variables),
    through a pool of up to ``pool_size`` connections that the engine closes with
    itself; or pass your own ``pool`` (a ``psycopg_pool.ConnectionPool``, left open).
    ``pool_timeout`` is how long an operation waits for a free connection.

    The schema is migrated at once unless ``migrate=False``, in which case it must
    already be at this code's version (else ``SchemaVersionError``, saying how to fix
    it). Stamps and windows use the database clock, unless ``clock`` is given (tests).
    ``locking=False`` skips the per-entity lock: concurrent writers of one entity may
    then interleave. ``lock_timeout`` bounds the wait for an entity another transaction
    holds (then ``StoreError`` naming it). ``shared_secrets=True`` keeps run secrets in
    the database (:class:`PostgresSecretRegistry`), so secrets registered by one process
    mask the writes of every process sharing the schema; it cannot be combined with
    ``secrets``. Other options are as for :func:`in_memory`.
    """
    # Imported here: psycopg takes longer to import than the rest of the library, and
    # in-memory users should not pay for it.
    from reactive_entities.adapters.postgres.feed import PostgresFeed
    from reactive_entities.adapters.postgres.store import PostgresEntityStore

    check_postgres_options(dsn, pool, secrets, shared_secrets, unknown_run)
    if pool is None:
        store = PostgresEntityStore.connect(
            dsn if dsn is not None else "",
            schema=schema,
            clock=clock,
            locking=locking,
            lock_timeout=checked_lock_timeout(lock_timeout),
            pool_size=pool_size,
            pool_timeout=pool_timeout,
        )
    else:
        store = PostgresEntityStore(
            pool,
            schema=schema,
            clock=clock,
            locking=locking,
            lock_timeout=checked_lock_timeout(lock_timeout),
        )
    try:
        if migrate:
            store.migrate()
        else:
            store.check_schema()
    except BaseException:
        store.close()
        raise
    if shared_secrets:
        from reactive_entities.adapters.postgres.secret_registry import PostgresSecretRegistry

        secrets = PostgresSecretRegistry(store.pool, schema=schema)
    return _engine(
        store=store,
        feed=PostgresFeed(store, conninfo=store.conninfo, logger=logger),
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
    store: EntityStore,
    feed: ChangeFeed | None,
    poll_interval: float,
    log_events: bool,
    logger: logging.Logger | None,
    emitter: Emitter | None,
    secrets: SecretRegistry | None,
    converter: cattrs.Converter | None,
    on_close: tuple[object, ...] = (),
    unknown_run: UnknownRunPolicy = "warn",
) -> Engine:
    secrets = secrets if secrets is not None else InMemorySecretRegistry()
    hub = InProcessEmitter(secrets=secrets, logger=logger)
    extra: list[Emitter] = []
    if log_events:
        extra.append(LoggingEmitter(logger))
    if emitter is not None:
        extra.append(emitter)
    fan_out: Emitter = (
        FanOutEmitter((hub, *extra), secrets=secrets, logger=logger) if extra else hub
    )
    return Engine(
        store=store,
        emitter=fan_out,
        subscriptions=hub,
        secrets=secrets,
        converter=converter if converter is not None else make_converter(),
        logger=logger,
        feed=feed,
        poll_interval=poll_interval,
        unknown_run=unknown_run,
    )

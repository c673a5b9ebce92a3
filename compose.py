"""The composition root: the one place that chooses concrete adapters.

``in_memory()`` and ``postgres()`` return a fully wired :class:`Engine`. Every adapter
can be replaced by keyword (tests pass fakes or a :class:`ManualClock`); defaults are
built inside the call, and nothing connects or reads configuration at import time.
"""

from __future__ import annotations

import logging

import cattrs

from reactive_entities.adapters.logging import LoggingEmitter
from reactive_entities.adapters.memory.clock import SystemClock
from reactive_entities.adapters.memory.emitter import FanOutEmitter, InProcessEmitter
from reactive_entities.adapters.memory.secret_registry import InMemorySecretRegistry
from reactive_entities.adapters.memory.store import InMemoryEntityStore
from reactive_entities.domain.documents import make_converter
from reactive_entities.engine import Engine
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.emitter import Emitter
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore

__all__ = ["in_memory"]


def in_memory(
    *,
    clock: Clock | None = None,
    log_events: bool = False,
    logger: logging.Logger | None = None,
    store: EntityStore | None = None,
    emitter: Emitter | None = None,
    secrets: SecretRegistry | None = None,
    converter: cattrs.Converter | None = None,
) -> Engine:
    """An engine that keeps its transition log in this process (no server).

    ``emitter`` receives every event in addition to in-process subscribers;
    ``log_events`` adds a :class:`LoggingEmitter`.

    >>> with in_memory() as engine:
    ...     engine.kinds()
    ()
    """
    clock = clock if clock is not None else SystemClock()
    store = store if store is not None else InMemoryEntityStore(clock)
    return _engine(
        store=store,
        clock=clock,
        log_events=log_events,
        logger=logger,
        emitter=emitter,
        secrets=secrets,
        converter=converter,
    )


def _engine(
    *,
    store: EntityStore,
    clock: Clock,
    log_events: bool,
    logger: logging.Logger | None,
    emitter: Emitter | None,
    secrets: SecretRegistry | None,
    converter: cattrs.Converter | None,
    on_close: tuple[object, ...] = (),
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
        clock=clock,
        converter=converter if converter is not None else make_converter(),
        logger=logger,
    )

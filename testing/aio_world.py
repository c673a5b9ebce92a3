"""One asyncio engine with the ``incident`` kind, on either store, for the tests of
``reactive_entities.aio`` (the asyncio twins of the blocking engine's tests).

``open_world("memory")`` or ``open_world("postgres", dsn, schema)`` — or
``open_world(*aio_backend)`` with the plugin's ``aio_backend`` fixture, which runs a test
on both — is an async context manager yielding an :class:`AsyncWorld`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from reactive_entities.aio import AsyncEngine, AsyncEntityHandle, compose
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.testing.examples import Incident
from reactive_entities.testing.plugin import DictStorage

__all__ = ["AsyncWorld", "fresh_id", "open_world", "open_engine"]

_ids = itertools.count()


def fresh_id(prefix: str = "t") -> str:
    """An entity id no other test of the run uses (PostgreSQL schemas are shared)."""
    return f"{prefix}-{next(_ids)}"


@attrs.define
class AsyncWorld:
    """An asyncio engine with ``incident`` over a dict the app owns, and the events an
    in-process subscriber received."""

    name: str
    engine: AsyncEngine
    handle: AsyncEntityHandle[Incident]
    storage: DictStorage[Incident]
    events: list[ChangeEvent]

    async def statuses(self, entity_id: str) -> list[Any]:
        """The recorded ``status`` values of the entity, oldest first."""
        return [r.to_value for r in await self.handle.history(entity_id, field="status")]

    def event_statuses(self, entity_id: str) -> list[Any]:
        """The ``status`` of each delivered event of the entity, in delivery order."""
        return [
            None if e.next is None else e.next["status"]
            for e in self.events
            if e.entity_id == entity_id
        ]

    async def changes_recorded(self, entity_id: str) -> int:
        """How many changes of the entity the log holds."""
        return len(await self.handle.changes(entity_id))


@asynccontextmanager
async def open_engine(
    backend: str, dsn: str | None = None, schema: str | None = None, **options: Any
) -> AsyncIterator[AsyncEngine]:
    """An asyncio engine on ``backend``, closed when the block ends."""
    if backend == "memory":
        engine = compose.in_memory(**options)
    else:
        engine = await compose.postgres(dsn, schema=schema or "reactive_entities", **options)
    async with engine:
        yield engine


@asynccontextmanager
async def open_world(
    backend: str, dsn: str | None = None, schema: str | None = None, **options: Any
) -> AsyncIterator[AsyncWorld]:
    """An :class:`AsyncWorld` on ``backend``, closed when the block ends."""
    async with open_engine(backend, dsn, schema, **options) as engine:
        storage: DictStorage[Incident] = DictStorage()
        handle = engine.define_entity("incident", Incident, read=storage.read, sensitive=["token"])
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        yield AsyncWorld(backend, engine, handle, storage, events)

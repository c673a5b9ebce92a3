"""reactive-entities for asyncio applications: the same library, awaited (DESIGN §10).

``aio.compose.in_memory()`` / ``await aio.compose.postgres(dsn)`` return an
:class:`AsyncEngine` with the blocking engine's method names and semantics; ``read``,
``apply`` and handlers may be plain functions or coroutine functions. Values, errors and
the delivery modes are those of :mod:`reactive_entities` itself.

>>> import asyncio
>>> import attrs
>>> from reactive_entities.aio import compose
>>> @attrs.frozen
... class Light:
...     on: bool
>>> lights: dict[str, Light] = {}
>>> async def read(ids):
...     return {i: lights[i] for i in ids if i in lights}
>>> async def switch_on() -> Light:
...     lights["l-1"] = Light(on=True)
...     return lights["l-1"]
>>> async def main():
...     async with compose.in_memory() as engine:
...         handle = engine.define_entity("light", Light, read=read)
...         await handle.mutate("l-1", switch_on)
...         return [(r.field, r.from_value, r.to_value) for r in await handle.history("l-1")]
>>> asyncio.run(main())
[('on', ABSENT, True)]
"""

from reactive_entities.aio import compose
from reactive_entities.aio.durable import AsyncDurableSubscription
from reactive_entities.aio.engine import (
    AsyncEngine,
    AsyncEntityHandle,
    remove_through,
    write_through,
)
from reactive_entities.aio.run_secrets import AsyncEngineSecrets
from reactive_entities.aio.transaction import AsyncTransaction
from reactive_entities.ports.async_emitter import AsyncEmitter, AsyncSubscriptionHub
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.async_store import AsyncEntityStore, AsyncStoreTransaction

__all__ = [
    # composition and the shell
    "compose",
    "AsyncEngine",
    "AsyncEntityHandle",
    "AsyncTransaction",
    "AsyncDurableSubscription",
    "AsyncEngineSecrets",
    "write_through",
    "remove_through",
    # ports
    "AsyncEntityStore",
    "AsyncStoreTransaction",
    "AsyncChangeFeed",
    "AsyncSecretRegistry",
    "AsyncEmitter",
    "AsyncSubscriptionHub",
]

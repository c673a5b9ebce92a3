"""In-process delivery for the asyncio engine: the subscriptions of this process, whose
handlers may be plain functions or coroutine functions, then any further emitters.

A handler's result is awaited when it is awaitable (checked per call with
``inspect.isawaitable``, which costs next to nothing), so one hub serves both kinds of
handler. A failing handler or emitter is isolated as in the blocking emitter: logged at
WARNING, masked with its run's secrets (awaited from the asyncio registry), and skipped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence

from reactive_entities.adapters.memory.emitter import Subscriptions
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.masked_logging import log_failure_async
from reactive_entities.ports.async_emitter import AsyncEmitter, AsyncSubscriptionHub
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.emitter import Emitter

__all__ = ["AsyncInProcessEmitter"]


class AsyncInProcessEmitter(Subscriptions, AsyncEmitter, AsyncSubscriptionHub):
    """Delivers each event to the matching subscribers in subscription order, then to
    each emitter of ``also`` (blocking or asyncio ones) in order.

    >>> import asyncio
    >>> from datetime import UTC, datetime
    >>> from reactive_entities.testing.builders import make_plan
    >>> event = make_plan("incident", "inc-1", None, {"on": True}).event(datetime.now(UTC))
    >>> hub = AsyncInProcessEmitter()
    >>> got = []
    >>> async def handler(event):
    ...     got.append(event.entity_id)
    >>> _ = hub.subscribe(handler)
    >>> _ = hub.subscribe(lambda event: got.append("plain"))
    >>> asyncio.run(hub.emit(event))
    >>> got
    ['inc-1', 'plain']
    """

    def __init__(
        self,
        *,
        secrets: AsyncSecretRegistry | None = None,
        logger: logging.Logger | None = None,
        also: Sequence[Emitter | AsyncEmitter] = (),
    ) -> None:
        super().__init__(logger)
        self._secrets = secrets
        self.also = tuple(also)

    async def emit(self, event: ChangeEvent) -> None:
        """Deliver ``event`` to every matching subscriber, then to every emitter."""
        for subscription in self.matching(event):
            await self._call(subscription.handler, event, "handler", subscription.handler)
        for emitter in self.also:
            await self._call(emitter.emit, event, "emitter", emitter)

    async def _call(
        self, call: Callable[[ChangeEvent], object], event: ChangeEvent, what: str, who: object
    ) -> None:
        try:
            result = call(event)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            await log_failure_async(self._logger, f"{what} {who!r}", event, error, self._secrets)

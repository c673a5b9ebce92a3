"""The asyncio twin of the ``Emitter`` port: where an ``AsyncEngine``'s change events go
once committed. Subscribing needs no I/O, so ``AsyncSubscriptionHub.subscribe`` stays a
plain method returning the same ``Subscription`` as the blocking hub's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.ports.emitter import Subscription

__all__ = ["AsyncEmitter", "AsyncSubscriptionHub"]


@runtime_checkable
class AsyncEmitter(Protocol):
    """Receives every recorded change, in recording order per entity, after commit and
    outside every lock (as ``Emitter``); ``emit`` is awaited."""

    async def emit(self, event: ChangeEvent) -> None:
        """Deliver one event."""
        ...


@runtime_checkable
class AsyncSubscriptionHub(Protocol):
    """Something in-process handlers (plain functions or coroutine functions) can
    subscribe to."""

    def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
    ) -> Subscription:
        """Deliver matching events to ``handler`` until the subscription is cancelled."""
        ...

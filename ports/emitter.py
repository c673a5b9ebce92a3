"""The ``Emitter`` port: where change events go once recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol, runtime_checkable

from reactive_entities.domain.events import ChangeEvent

__all__ = ["Emitter", "Subscription", "SubscriptionHub"]


@runtime_checkable
class Emitter(Protocol):
    """Receives every recorded change, in recording order per entity.

    The event is already masked. ``emit`` runs after the change committed, outside every
    lock and holding no connection, on the committing thread (or the thread already
    delivering that entity's events); it may itself write, even the same entity.
    """

    def emit(self, event: ChangeEvent) -> None:
        """Deliver one event."""
        ...


@runtime_checkable
class Subscription(Protocol):
    """A live subscription returned by ``Engine.subscribe``."""

    def cancel(self) -> None:
        """Stop delivery; idempotent."""
        ...

    def close(self) -> None:
        """Same as :meth:`cancel`."""
        ...

    def __enter__(self) -> Subscription: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class SubscriptionHub(Protocol):
    """Something in-process handlers can subscribe to (the engine's subscriptions)."""

    def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
    ) -> Subscription:
        """Deliver matching events to ``handler`` until the subscription is cancelled."""
        ...

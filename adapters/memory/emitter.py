"""In-process delivery of change events: subscriptions, and fan-out to several emitters.

A failing handler (or emitter) is isolated: its error is logged at WARNING — formatted
and masked with the secrets of the event's run — and delivery continues. The caller of
``mutate`` never sees it: the change is already recorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.event_filter import wants
from reactive_entities.masked_logging import log_failure
from reactive_entities.ports.emitter import Emitter
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = [
    "Handler",
    "Subscription",
    "Subscriptions",
    "InProcessEmitter",
    "FanOutEmitter",
]

Handler = Callable[[ChangeEvent], object]

_LOGGER = logging.getLogger("reactive_entities.events")


class Subscription:
    """A live subscription; ``cancel()`` (or ``close()``, or leaving a ``with``) ends it."""

    __slots__ = ("_hub", "active", "fields", "handler", "kind")

    def __init__(
        self,
        hub: Subscriptions,
        handler: Handler,
        kind: str | None,
        fields: frozenset[str] | None,
    ) -> None:
        self._hub = hub
        self.handler = handler
        self.kind = kind
        self.fields = fields
        self.active = True

    def cancel(self) -> None:
        """Stop delivery to this handler; calling it again does nothing."""
        if self.active:
            self.active = False
            self._hub._remove(self)

    close = cancel

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription kind={self.kind!r} fields={self.fields!r} {state}>"


class Subscriptions:
    """This process's subscriptions, in subscription order: what the blocking and the
    asyncio in-process emitters deliver to.

    Subscribing or cancelling during delivery is safe: delivery iterates a snapshot.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or _LOGGER
        self._lock = threading.Lock()
        # Copy-on-write, in subscription order: delivery reads it without the lock.
        self._subscriptions: tuple[Subscription, ...] = ()

    def subscribe(
        self,
        handler: Handler,
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
    ) -> Subscription:
        """Call ``handler`` for each event of ``kind`` (any when None) touching any of
        ``fields`` (any when None)."""
        subscription = Subscription(
            self, handler, kind, None if fields is None else frozenset(fields)
        )
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def subscriptions(self) -> tuple[Subscription, ...]:
        """Every active subscription, in subscription order."""
        return self._subscriptions

    def matching(self, event: ChangeEvent) -> Iterator[Subscription]:
        """The subscriptions that want ``event``, in subscription order; lazily, so one
        cancelled by an earlier handler of the same event is skipped."""
        for subscription in self._subscriptions:
            if subscription.active and wants(subscription.kind, subscription.fields, event):
                yield subscription


class InProcessEmitter(Subscriptions, Emitter):
    """Delivers each event to the matching subscribers of this process, in order."""

    def __init__(
        self, *, secrets: SecretRegistry | None = None, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(logger)
        self._secrets = secrets

    def emit(self, event: ChangeEvent) -> None:
        """Deliver ``event`` to every matching subscriber, in subscription order."""
        for subscription in self.matching(event):
            try:
                subscription.handler(event)
            except Exception as error:
                log_failure(
                    self._logger, f"handler {subscription.handler!r}", event, error, self._secrets
                )


class FanOutEmitter(Emitter):
    """Emits each event to several emitters in order, isolating their failures."""

    def __init__(
        self,
        emitters: Iterable[Emitter],
        *,
        secrets: SecretRegistry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.emitters = tuple(emitters)
        self._secrets = secrets
        self._logger = logger or _LOGGER

    def emit(self, event: ChangeEvent) -> None:
        """Deliver to each emitter; a failing one is logged and skipped."""
        for emitter in self.emitters:
            try:
                emitter.emit(event)
            except Exception as error:
                log_failure(self._logger, f"emitter {emitter!r}", event, error, self._secrets)

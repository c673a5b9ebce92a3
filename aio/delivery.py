"""In-process delivery for the asyncio engine: the blocking engine's per-entity queues
(:class:`reactive_entities.delivery.Delivery`), drained with awaits.

A committing write queues its events while it still holds its entity locks, then —
locks released — delivers what it owns, awaiting each emit. So, exactly as in the
blocking engine: events of one entity arrive one at a time in recording order, whichever
tasks write it; a handler that writes the entity it is handling only appends to the
queue being drained (its event follows the current one); a slow handler holds up its
own entity's later events and nothing else — no lock, no connection, no other entity.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from reactive_entities.delivery import Delivery
from reactive_entities.domain.events import ChangeEvent

__all__ = ["AsyncDelivery"]

_Key = tuple[str, str]


class AsyncDelivery:
    """Per-entity ordered hand-off of committed events to an awaited ``emit``."""

    __slots__ = ("_emit", "_queues")

    def __init__(
        self, emit: Callable[[ChangeEvent], Awaitable[None]], logger: logging.Logger
    ) -> None:
        self._emit = emit
        self._queues = Delivery(None, logger)

    def enqueue(self, events: Sequence[ChangeEvent]) -> list[_Key]:
        """Queue committed events (call it holding their entity locks); returns the
        entities whose queues the caller now owns and must :meth:`drain`."""
        return self._queues.enqueue(events)

    async def drain(self, owned: list[_Key]) -> None:
        """Deliver everything queued for the entities the caller owns, including what
        handlers append meanwhile, in recording order; then give the queues up."""
        mine = list(owned)
        try:
            while (event := self._queues.take(mine)) is not None:
                await self._emit(event)
        finally:
            self._queues.abandon(mine)  # empty unless cancelled mid-delivery

    def pending(self) -> int:
        """How many events wait for in-process delivery."""
        return self._queues.pending()

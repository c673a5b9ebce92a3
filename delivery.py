"""In-process delivery after commit: events in recording order per entity, handlers
outside every lock.

Theory of operation. A committing write calls :meth:`Delivery.enqueue` while it still
holds its entity locks (the store's ``commit(then=...)``), so each entity's queue is in
recording order. It delivers later, after the locks are released, with
:meth:`Delivery.drain`. Whoever finds an entity's queue empty becomes its *owner* and
delivers until the queue is empty again; anyone else only appends. So:

* events of one entity are delivered one at a time, in recording order, even when
  several threads write it;
* a handler that writes the entity it is handling (on the owner's thread) appends to the
  queue being drained: its event follows the current one instead of deadlocking;
* a slow or blocked handler holds up only its entity's later events, never a lock, a
  connection, or another entity.

Whatever one thread delivers, it delivers in recording order across entities (each
queued event carries a sequence number): a transaction's events, then the changes its
handlers made, in the order they were recorded. An entity another thread is already
delivering is left to that thread, which keeps the entity's order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from reactive_entities.domain.events import ChangeEvent

__all__ = ["Delivery"]

_Key = tuple[str, str]


class Delivery:
    """Per-entity ordered hand-off of committed events to ``emit``."""

    __slots__ = ("_emit", "_lock", "_logger", "_queues", "_sequence")

    def __init__(self, emit: Callable[[ChangeEvent], None] | None, logger: logging.Logger) -> None:
        """``emit`` delivers one event for :meth:`drain`; None for a driver that calls
        :meth:`take` itself (the asyncio engine)."""
        self._emit = emit
        self._logger = logger
        self._lock = threading.Lock()
        self._queues: dict[_Key, deque[tuple[int, ChangeEvent]]] = {}
        self._sequence = 0  # recording order across entities

    def enqueue(self, events: Sequence[ChangeEvent]) -> list[_Key]:
        """Queue committed events (call it holding their entity locks); returns the
        entities whose queues this caller now owns and must :meth:`drain`."""
        owned: list[_Key] = []
        queues = self._queues
        with self._lock:
            sequence = self._sequence
            for event in events:
                key = (event.kind, event.entity_id)
                queue = queues.get(key)
                if queue is None:
                    queues[key] = queue = deque()
                    owned.append(key)
                sequence += 1
                queue.append((sequence, event))
            self._sequence = sequence
        return owned

    def drain(self, owned: list[_Key]) -> None:
        """Deliver everything queued for the entities this caller owns — including what
        handlers append meanwhile — in recording order, then give the queues up."""
        emit = self._emit
        if emit is None:
            raise TypeError("this Delivery has no emit: drive it with take()")
        mine = list(owned)
        try:
            while (event := self.take(mine)) is not None:
                emit(event)
        finally:
            self.abandon(mine)  # empty unless interrupted (e.g. KeyboardInterrupt)

    def take(self, mine: list[_Key]) -> ChangeEvent | None:
        """The next event to deliver for the entities in ``mine``; None once their
        queues are empty, which gives them up (and empties ``mine``). The asyncio
        engine drives the same queues with this, awaiting each handler."""
        if not mine:
            return None
        with self._lock:
            event = self._next(mine)
            if event is None:
                for key in mine:
                    del self._queues[key]
                mine.clear()
            return event

    def _next(self, mine: list[_Key]) -> ChangeEvent | None:
        """Pop the oldest event queued for any of ``mine`` (the caller holds the lock)."""
        best: deque[tuple[int, ChangeEvent]] | None = None
        for key in mine:
            queue = self._queues[key]
            if queue and (best is None or queue[0][0] < best[0][0]):
                best = queue
        return None if best is None else best.popleft()[1]

    def abandon(self, keys: list[_Key]) -> None:
        """Give up the queues of ``keys`` without delivering them (delivery was
        interrupted); what they held is logged as lost."""
        if not keys:
            return
        lost = 0
        with self._lock:
            for key in keys:
                queue = self._queues.pop(key, None)
                lost += 0 if queue is None else len(queue)
        if lost:
            self._logger.error(
                "delivery interrupted: %d queued in-process event(s) were not delivered", lost
            )

    def pending(self) -> int:
        """How many events wait for in-process delivery."""
        with self._lock:
            return sum(len(q) for q in self._queues.values())

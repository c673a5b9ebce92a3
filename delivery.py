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

The events of one transaction are delivered in recording order across entities, where
this thread owns their queues (another thread already delivering an entity keeps that
entity's order instead).
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

    __slots__ = ("_emit", "_lock", "_logger", "_queues")

    def __init__(self, emit: Callable[[ChangeEvent], None], logger: logging.Logger) -> None:
        self._emit = emit
        self._logger = logger
        self._lock = threading.Lock()
        self._queues: dict[_Key, deque[ChangeEvent]] = {}

    def enqueue(self, events: Sequence[ChangeEvent]) -> list[_Key]:
        """Queue committed events (call it holding their entity locks); returns the
        entities whose queues this caller now owns and must :meth:`drain`."""
        owned: list[_Key] = []
        queues = self._queues
        with self._lock:
            for event in events:
                key = (event.kind, event.entity_id)
                queue = queues.get(key)
                if queue is None:
                    queues[key] = queue = deque()
                    owned.append(key)
                queue.append(event)
        return owned

    def drain(self, events: Sequence[ChangeEvent], owned: list[_Key]) -> None:
        """Deliver ``events`` (those this caller enqueued) in order where it owns their
        entity, then whatever was appended meanwhile, and give the queues up."""
        if not owned:
            return
        queues = self._queues
        mine = set(owned)
        try:
            for event in events:
                key = (event.kind, event.entity_id)
                if key in mine:
                    with self._lock:
                        queues[key].popleft()  # it is `event`: ours come first
                    self._emit(event)
            for key in owned:
                while True:
                    with self._lock:
                        queue = queues[key]
                        if not queue:
                            del queues[key]
                            mine.discard(key)
                            break
                        event = queue.popleft()
                    self._emit(event)
        finally:
            if mine:  # interrupted (e.g. KeyboardInterrupt in a handler)
                self._abandon(mine)

    def _abandon(self, keys: set[_Key]) -> None:
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

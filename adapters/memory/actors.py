"""Actors kept by index: the in-memory store and feed keep each change as a tuple of
atomic values, and an index in place of the ``Actor`` object is what makes that tuple
atomic (see ``feed._Kept``): CPython's cyclic garbage collector stops tracking a tuple
of atomic values, so a growing log does not make every full collection slower.
"""

from __future__ import annotations

import threading

from reactive_entities.domain.actor import Actor

__all__ = ["ActorTable"]


class ActorTable:
    """Every actor seen, each under a stable index; thread-safe.

    >>> from reactive_entities.domain.actor import SYSTEM_ACTOR
    >>> table = ActorTable()
    >>> table.index(SYSTEM_ACTOR), table.index(SYSTEM_ACTOR), table[0] is SYSTEM_ACTOR
    (0, 0, True)
    """

    __slots__ = ("_actors", "_by_actor", "_last", "_lock")

    def __init__(self) -> None:
        self._actors: list[Actor] = []
        self._by_actor: dict[Actor, int] = {}
        self._lock = threading.Lock()
        # Most changes come from one actor (often SYSTEM_ACTOR): an identity test against
        # the last one is much cheaper than hashing an Actor.
        self._last: tuple[Actor | None, int] = (None, -1)

    def index(self, actor: Actor) -> int:
        """The actor's index, assigned on first sight."""
        last, found = self._last
        if last is actor:
            return found
        with self._lock:
            index = self._by_actor.get(actor)
            if index is None:
                index = self._by_actor[actor] = len(self._actors)
                self._actors.append(actor)
            self._last = (actor, index)
        return index

    def __getitem__(self, index: int) -> Actor:
        return self._actors[index]

"""A plugin's own storage, kept in a dict: the ``read`` accessor and ``apply`` builders.

Tests, examples and benchmarks need a plugin that owns some state; this is the smallest
honest one. It is a real adapter of the plugin side, not a mock.

>>> import attrs
>>> @attrs.frozen
... class Light:
...     on: bool
>>> lights: DictStorage[Light] = DictStorage()
>>> apply = lights.put("l-1", Light(on=True))
>>> apply()
Light(on=True)
>>> lights.read(["l-1", "l-2"])
{'l-1': Light(on=True)}
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["DictStorage"]

S = TypeVar("S")


class DictStorage(Generic[S]):
    """States by id, with thread-safe writes; ``read`` is the batched accessor."""

    def __init__(self, initial: Mapping[str, S] | None = None) -> None:
        self.rows: dict[str, S] = dict(initial or {})
        self.writes = 0
        self._lock = threading.Lock()

    def read(self, ids: Sequence[str]) -> dict[str, S]:
        """The states of the ids present (absent ids are left out)."""
        rows = self.rows
        return {i: rows[i] for i in ids if i in rows}

    def put(self, entity_id: str, state: S) -> Callable[[], S]:
        """An ``apply`` that stores ``state`` and returns it."""

        def apply() -> S:
            with self._lock:
                self.rows[entity_id] = state
                self.writes += 1
            return state

        return apply

    def patch(self, entity_id: str, **changes: Any) -> Callable[[], S]:
        """An ``apply`` that evolves the stored state with ``changes`` (read at apply time)."""

        def apply() -> S:
            with self._lock:
                state: S = attrs.evolve(self.rows[entity_id], **changes)  # type: ignore[misc]
                self.rows[entity_id] = state
                self.writes += 1
            return state

        return apply

    def delete(self, entity_id: str) -> Callable[[], None]:
        """An ``apply`` that deletes the entity (a no-op when absent)."""

        def apply() -> None:
            with self._lock:
                self.rows.pop(entity_id, None)
                self.writes += 1

        return apply

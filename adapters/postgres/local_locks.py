"""Per-entity ``threading`` locks that exist only while someone holds or awaits them.

A PostgreSQL write transaction takes one of these right after the entity's advisory lock
and releases it only once the commit has queued the change's event: the advisory lock is
released by ``COMMIT``, so without this lock another thread of this process could commit
the entity's next change and queue its event first. Its holders never wait for anything
else, so it cannot deadlock. Entries are reference-counted and dropped when unused, so a
process that touches millions of entities keeps no lock for each.

>>> locks = LocalLocks()
>>> entry = locks.acquire("k")
>>> locks.held()
1
>>> locks.release("k", entry)
>>> locks.held()
0
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["LocalLocks"]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class LocalLocks:
    """A table of per-key locks; :meth:`acquire` blocks until the key's lock is free."""

    __slots__ = ("_entries", "_mutex")

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._mutex = threading.Lock()

    def acquire(self, key: Hashable) -> object:
        """Take the key's lock; returns a token to hand back to :meth:`release`."""
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
        try:
            entry.lock.acquire()
        except BaseException:  # interrupted while waiting: forget this user
            self._forget(key, entry)
            raise
        return entry

    def release(self, key: Hashable, token: object) -> None:
        """Release the key's lock taken by :meth:`acquire`."""
        entry: _Entry = token  # type: ignore[assignment]
        entry.lock.release()
        self._forget(key, entry)

    def held(self) -> int:
        """How many keys currently have a holder or a waiter."""
        return len(self._entries)

    def _forget(self, key: Hashable, entry: _Entry) -> None:
        with self._mutex:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

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

:class:`AsyncLocalLocks` is the asyncio twin (for the asyncio store): its holders wait
for their commit's reply while holding it, so waiting for it must not block the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["AsyncLocalLocks", "LocalLocks"]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.users = 0


class LocalLocks:
    """A table of per-key locks; :meth:`acquire` blocks until the key's lock is free."""

    __slots__ = ("_entries", "_mutex", "_new_lock")

    def __init__(self, new_lock: Callable[[], Any] = threading.Lock) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._mutex = threading.Lock()
        self._new_lock = new_lock

    def _enter(self, key: Hashable) -> _Entry:
        """The key's entry, counting one more user."""
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(self._new_lock())
            entry.users += 1
        return entry

    def acquire(self, key: Hashable) -> object:
        """Take the key's lock; returns a token to hand back to :meth:`release`."""
        entry = self._enter(key)
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


class AsyncLocalLocks(LocalLocks):
    """Per-entity ``asyncio`` locks of one event loop, with the same bookkeeping."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(asyncio.Lock)

    async def acquire_async(self, key: Hashable) -> object:
        """Take the key's lock, waiting without blocking the loop; returns the token
        for :meth:`release`. A task cancelled while waiting holds nothing."""
        entry = self._enter(key)
        try:
            await entry.lock.acquire()
        except BaseException:
            self._forget(key, entry)
            raise
        return entry

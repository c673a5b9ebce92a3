"""Change ids: random (version 4) UUID strings, made cheaply.

``str(uuid.uuid4())`` costs several microseconds per write on small machines (a system
call, an object, a format). Ids are instead made in batches: one ``os.urandom`` read,
the version and variant bits set on the whole batch as one integer, then every id
hex-encoded and dashed by a chain of C-level ``map`` calls; each write pops one string.

The batch queue is a ``deque``, whose ``popleft`` and ``extend`` are atomic, so threads
share it safely. A forked child drops the parent's unused ids, so two processes never
hand out the same id.
"""

from __future__ import annotations

import operator
import os
import struct
from collections import deque

__all__ = ["new_change_id"]

_BATCH = 256
_CHUNK = struct.Struct("16s")
_FIRST = operator.itemgetter(0)
_GROUPS = operator.itemgetter(
    slice(0, 8), slice(8, 12), slice(12, 16), slice(16, 20), slice(20, 32)
)
_ready: deque[str] = deque()


def _batch_masks() -> tuple[int, int]:
    # In each 16-byte id, byte 6 keeps its low nibble under version 4 and byte 8 its low
    # six bits under the RFC 4122 variant: as whole-batch integers, two C-level ops.
    keep = bytearray(b"\xff" * 16)
    keep[6], keep[8] = 0x0F, 0x3F
    put = bytearray(16)
    put[6], put[8] = 0x40, 0x80
    return (
        int.from_bytes(bytes(keep) * _BATCH, "big"),
        int.from_bytes(bytes(put) * _BATCH, "big"),
    )


_KEEP, _PUT = _batch_masks()


def _refill() -> None:
    bits = (int.from_bytes(os.urandom(16 * _BATCH), "big") & _KEEP) | _PUT
    raw = bits.to_bytes(16 * _BATCH, "big")
    chunks = map(_FIRST, _CHUNK.iter_unpack(raw))
    _ready.extend(map("-".join, map(_GROUPS, map(bytes.hex, chunks))))


def _forget_parent_ids() -> None:
    _ready.clear()


os.register_at_fork(after_in_child=_forget_parent_ids)


def new_change_id() -> str:
    """A fresh UUID4 string such as ``'0f8fad5b-d9cb-469f-a165-70867728950e'``.

    >>> import uuid
    >>> uuid.UUID(new_change_id()).version
    4
    """
    try:
        return _ready.popleft()
    except IndexError:
        _refill()
        return _ready.popleft()

"""Change ids: random (version 4) UUID strings, made cheaply.

``uuid.uuid4()`` costs several microseconds per call (an ``os.urandom`` system call);
128 bits from a private Mersenne Twister seeded from ``os.urandom`` cost a fraction of
that. The generator is private so that code seeding the global ``random`` module (test
frameworks do) cannot make two runs produce the same ids, and it is reseeded in a forked
child so parent and child never share a sequence.
"""

from __future__ import annotations

import os
import random

__all__ = ["new_change_id"]

_random = random.Random(os.urandom(32))
_VERSION_CLEAR = ~(0xF << 76) & ~(0x3 << 62)
_VERSION_SET = (0x4 << 76) | (0x2 << 62)


def _reseed() -> None:
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


_getrandbits = _random.getrandbits


def new_change_id() -> str:
    """A fresh UUID4 string such as ``'0f8fad5b-d9cb-469f-a165-70867728950e'``."""
    h = "%032x" % ((_getrandbits(128) & _VERSION_CLEAR) | _VERSION_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

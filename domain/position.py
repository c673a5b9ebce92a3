"""``Position``: where a change sits in the feed (SPEC §15.2).

A position is opaque to users: totally ordered (``<``), printable (``str``) and parsed
back (:meth:`Position.parse`). Inside, it is the pair (transaction, sequence): the id of
the transaction that wrote the change and the change's place in the log. Ordering by
the writing transaction first is what makes the PostgreSQL feed gap-safe: a reader only
reads changes of transactions older than every transaction still running, so nothing can
ever commit behind its cursor. The in-memory store has one "transaction" (0).

>>> a, b = Position(7, 40), Position(9, 12)
>>> a < b, str(a), Position.parse(str(b)) == b
(True, '7-40', True)
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Position", "START"]


class Position(NamedTuple):
    """A change's place in the feed: compare with ``<``, serialize with ``str``.

    A named tuple rather than an attrs class: one is made for every change the feed
    keeps, and a tuple is the cheapest immutable, ordered, hashable value there is.
    """

    transaction: int
    sequence: int

    def __str__(self) -> str:
        return f"{self.transaction}-{self.sequence}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position ``str(position)`` printed; ``ValueError`` for anything else."""
        if not isinstance(text, str):
            raise ValueError(f"a position is a str like '12-345' (got {type(text).__name__})")
        left, sep, right = text.partition("-")
        if not sep or not left.isdigit() or not right.isdigit() or not left.isascii():
            raise ValueError(f"not a position: {text!r:.40} (expected two numbers: '12-345')")
        return cls(int(left), int(right))


#: Before every change: the start of the feed.
START = Position(0, 0)

"""An Aho–Corasick automaton over literal strings: every occurrence of every pattern in
one left-to-right pass, whatever the number of patterns (SPEC §16.6).

Theory of operation. The patterns form a trie; each state's *failure* link points at the
state of its longest proper suffix that is also in the trie, and ``longest[state]`` is the
length of the longest pattern that ends at that state or at any state its failure chain
reaches. Reading a text one character at a time therefore tells, at each end position,
the longest pattern ending there. The union of "the longest pattern ending at each
position" is the union of *all* occurrences (a shorter one ending at the same place lies
inside the longer), so ``ranges`` can merge overlapping or touching occurrences exactly
as masking needs, in time proportional to the text's length.

The tables are built on first use, not at construction: a run that registers 10,000
secrets one call at a time builds them once, when it first masks something. Building
them twice from two threads is harmless (both results are equal; the last one wins).

>>> a = Automaton(("secret", "supersecret", "cre"))
>>> a.ranges("a supersecret and a secret")
[(2, 13), (20, 26)]
>>> a.search("nothing here") is None
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

__all__ = ["Automaton"]


class Automaton:
    """Finds literal patterns; its ``repr`` never shows them (they may be secrets)."""

    __slots__ = ("_fail", "_goto", "_longest", "_patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns: Sequence[str] | None = patterns
        self._goto: list[dict[str, int]] = []
        self._fail: list[int] = []
        self._longest: list[int] = []

    def __repr__(self) -> str:
        return f"<Automaton over {len(self._patterns or ()) or len(self._goto)} states/patterns>"

    def _tables(self) -> tuple[list[dict[str, int]], list[int], list[int]]:
        patterns = self._patterns
        if patterns is not None:
            goto, fail, longest = _build(patterns)
            self._goto, self._fail, self._longest = goto, fail, longest
            self._patterns = None
        return self._goto, self._fail, self._longest

    def search(self, text: str) -> tuple[int, int] | None:
        """The first occurrence (by end position) of any pattern, or None."""
        return next(self._occurrences(text), None)

    def ranges(self, text: str) -> list[tuple[int, int]]:
        """Every occurrence of every pattern, overlapping or touching ones merged, in
        text order."""
        merged: list[list[int]] = []
        for start, end in self._occurrences(text):
            # Ranges arrive by end position; one may reach back over earlier ones.
            while merged and start <= merged[-1][1]:
                previous = merged.pop()
                if previous[0] < start:
                    start = previous[0]
            merged.append([start, end])
        return [(start, end) for start, end in merged]

    def _occurrences(self, text: str) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of the longest pattern ending at each position where one
        ends, by end position: the one walk over the text both queries share."""
        goto, fail, longest = self._tables()
        root = goto[0]
        state = 0
        for i, ch in enumerate(text):
            if state == 0:
                nxt = root.get(ch)
                if nxt is None:
                    continue
                state = nxt
            else:
                while True:
                    found = goto[state].get(ch)
                    if found is not None:
                        state = found
                        break
                    if state == 0:
                        break
                    state = fail[state]
            n = longest[state]
            if n:
                yield i + 1 - n, i + 1


def _build(patterns: Sequence[str]) -> tuple[list[dict[str, int]], list[int], list[int]]:
    goto: list[dict[str, int]] = [{}]
    longest = [0]
    for pattern in patterns:
        state = 0
        for ch in pattern:
            node = goto[state]
            nxt = node.get(ch)
            if nxt is None:
                nxt = len(goto)
                goto.append({})
                longest.append(0)
                node[ch] = nxt
            state = nxt
        if len(pattern) > longest[state]:
            longest[state] = len(pattern)
    fail = [0] * len(goto)
    queue = deque(goto[0].values())
    while queue:
        state = queue.popleft()
        for ch, child in goto[state].items():
            queue.append(child)
            f = fail[state]
            while f and ch not in goto[f]:
                f = fail[f]
            target = goto[f].get(ch, 0)
            fail[child] = target if target != child else 0
            if longest[fail[child]] > longest[child]:
                longest[child] = longest[fail[child]]
    return goto, fail, longest

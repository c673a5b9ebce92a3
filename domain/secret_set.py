"""The set of secret values of one run (SPEC §4, §16.3, §16.6).

A ``SecretSet`` keeps every registered non-empty string once. Values shorter than
``MIN_SECRET_LENGTH`` are kept (the registry reports them) but never masked: masking a
two-letter value would shred ordinary text without protecting anything.

Theory of operation. A set's ``finder`` answers "does any maskable value occur in this
text?". A few secrets (up to ``SMALL_SET``, the common case of every run) are found by
one compiled alternation (``regex``, values longest first), built at construction,
which also locates them for ``mask_text``: each search from one past the last match's
start gives the longest value at the next position where one starts. Beyond that, the
finder is an Aho–Corasick :class:`Automaton`, built on first use, which finds every
occurrence of every value in one pass whatever their number (a compiled alternation of
10,000 literals is tried branch by branch at every position, which measured slower).
``escaped()`` is the set plus every escaped form of its values (``repr``, JSON,
backslash-doubled), built once per set, for masking messages and logs.

Secrets never show in a ``repr``: the set prints its counts, its values print as
``<secret>`` (they are a ``str`` subclass), and the finder hides its pattern. A
traceback that captures locals therefore shows no secret held by the library.

>>> s = SecretSet.of(["supersecret", "secret", "ab"])
>>> [str(v) for v in s.maskable]
['supersecret', 'secret']
>>> s, s.maskable
(<SecretSet: 3 values, 2 maskable>, (<secret>, <secret>))
>>> bool(SecretSet.of(["ab"]))
False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol

from reactive_entities.domain.automaton import Automaton
from reactive_entities.domain.secret_forms import escaped_forms_of

__all__ = [
    "MIN_SECRET_LENGTH",
    "SMALL_SET",
    "Hidden",
    "RegexFinder",
    "Secret",
    "SecretFinder",
    "SecretSet",
    "EMPTY_SECRETS",
    "overlapping_lengths",
]

MIN_SECRET_LENGTH = 4
#: Up to this many maskable values, a compiled regex finds them (faster for few).
SMALL_SET = 64


class Secret(str):
    """A secret value: a ``str`` in every way except that its ``repr`` hides it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<secret>"


class Hidden:
    """Holds a value (secrets to register) behind a ``repr`` that never shows it, so a
    frame that keeps it as a local reveals nothing in a traceback that captures locals."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"


class SecretFinder(Protocol):
    """What masking needs from a finder: whether (and where first) a secret occurs."""

    def search(self, text: str, /) -> object | None:
        """Something truthy when a secret occurs in ``text``, else None."""
        ...


class RegexFinder:
    """A compiled alternation of a small set's values, longest first, whose ``repr``
    does not print the pattern. ``search(text, pos=0)`` is the pattern's."""

    __slots__ = ("search",)

    search: Callable[..., re.Match[str] | None]

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.search = pattern.search

    def __repr__(self) -> str:
        return "<secret finder>"


class SecretSet:
    """An immutable, de-duplicated set of secret strings with their matcher.

    Build one with :meth:`SecretSet.of`. Truthiness says whether anything is maskable.
    """

    __slots__ = (
        "_escaped",
        "automaton",
        "finder",
        "has_star",
        "maskable",
        "overlapping",
        "regex",
        "shortest",
        "values",
    )

    values: frozenset[str]
    #: Maskable values, longest first (ties in string order).
    maskable: tuple[str, ...]
    #: Finds whether any maskable value occurs (fast rejection); None when none is.
    finder: SecretFinder | None
    #: The automaton of a large set (None for a small one: its ``regex`` serves it).
    automaton: Automaton | None
    #: The alternation of a small set (None for a large one or an empty one).
    regex: RegexFinder | None
    #: Whether some maskable value contains the token's character ``*``.
    has_star: bool
    #: The length of the shortest maskable value (0 when none): a shorter text holds none.
    shortest: int
    #: A small set's value lengths whose occurrence another can overlap past its end.
    overlapping: frozenset[int]
    _escaped: SecretSet | None

    def __init__(self, values: frozenset[str]) -> None:
        """Use :meth:`of`; ``values`` must already be non-empty ``Secret`` strings."""
        maskable = tuple(
            sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=lambda v: (-len(v), v))
        )
        automaton: Automaton | None = None
        regex: RegexFinder | None = None
        finder: SecretFinder | None = None
        if len(maskable) > SMALL_SET:
            automaton = Automaton(maskable)
            finder = automaton
        elif maskable:
            regex = RegexFinder(re.compile("|".join(re.escape(v) for v in maskable)))
            finder = regex
        setattr_ = object.__setattr__
        setattr_(self, "values", values)
        setattr_(self, "maskable", maskable)
        setattr_(self, "finder", finder)
        setattr_(self, "automaton", automaton)
        setattr_(self, "regex", regex)
        setattr_(self, "has_star", any("*" in v for v in maskable))
        setattr_(self, "shortest", min(map(len, maskable), default=0))
        overlapping = frozenset() if regex is None else overlapping_lengths(maskable)
        setattr_(self, "overlapping", overlapping)
        setattr_(self, "_escaped", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SecretSet is immutable (cannot set {name})")

    @classmethod
    def of(cls, values: Iterable[str]) -> SecretSet:
        """Build a set from strings; empty strings are ignored.

        Raises ``TypeError`` for a value that is not a ``str``.
        """
        return cls(frozenset(secret_values(values)))

    def union(self, other: Iterable[str]) -> SecretSet:
        """A new set holding these values and ``other``'s."""
        return SecretSet(self.values | secret_values(other))

    def escaped(self) -> SecretSet:
        """This set plus every escaped form of its maskable values (see
        :mod:`reactive_entities.domain.secret_forms`), for masking messages and logs.
        Built once per set."""
        cached = self._escaped
        if cached is None:
            forms = escaped_forms_of(self.maskable)
            cached = SecretSet(self.values | secret_values(forms)) if forms else self
            object.__setattr__(self, "_escaped", cached)
        return cached

    def __bool__(self) -> bool:
        return self.finder is not None

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretSet):
            return NotImplemented
        return self.values == other.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return f"<SecretSet: {len(self.values)} values, {len(self.maskable)} maskable>"

    def __reduce__(self) -> tuple[object, ...]:
        return (SecretSet.of, ([str(v) for v in self.values],))


#: Beyond this many characters in all, every length counts as overlapping (the exact
#: answer would take every prefix of every value).
_OVERLAP_CHECK_LIMIT = 4096


def overlapping_lengths(values: tuple[str, ...]) -> frozenset[int]:
    """The lengths of the values that have a proper suffix which is a proper prefix of
    some value (itself included): only such an occurrence can be overlapped by another
    that reaches past its end.

    >>> sorted(overlapping_lengths(("abcd", "cdef", "wxyz")))
    [4]
    >>> sorted(overlapping_lengths(("abcd", "wxyz")))
    []
    """
    if sum(map(len, values)) > _OVERLAP_CHECK_LIMIT:
        return frozenset(map(len, values))
    prefixes = {value[:k] for value in values for k in range(1, len(value))}
    return frozenset(
        len(value) for value in values if any(value[k:] in prefixes for k in range(1, len(value)))
    )


def secret_values(values: Iterable[str]) -> set[str]:
    """``values`` as :class:`Secret` strings, empty ones dropped.

    Raises ``TypeError`` for a value that is not a ``str``.
    """
    kept: set[str] = set()
    for value in values:
        if type(value) is Secret:
            kept.add(value)
        elif isinstance(value, str):
            if value:
                kept.add(Secret(value))
        else:
            raise TypeError(f"a secret must be a str (got {type(value).__name__})")
    return kept


EMPTY_SECRETS = SecretSet.of(())

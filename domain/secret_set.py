"""The set of secret values of one run (SPEC §4).

A ``SecretSet`` keeps every registered non-empty string once. Values shorter than
``MIN_SECRET_LENGTH`` are kept (the registry reports them) but never masked: masking a
two-letter value would shred ordinary text without protecting anything.

The set compiles its matchers once, at construction, so masking a string costs one
regex search when no secret occurs in it.

>>> s = SecretSet.of(["supersecret", "secret", "ab"])
>>> s.maskable
('supersecret', 'secret')
>>> bool(SecretSet.of(["ab"]))
False
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

__all__ = ["MIN_SECRET_LENGTH", "SecretSet", "EMPTY_SECRETS"]

MIN_SECRET_LENGTH = 4


@attrs.frozen(eq=False)
class SecretSet:
    """An immutable, de-duplicated set of secret strings with precompiled matchers.

    Build one with :meth:`SecretSet.of`. Truthiness says whether anything is maskable.
    """

    values: frozenset[str]
    #: Maskable values, longest first (the order the matchers try them in).
    maskable: tuple[str, ...]
    #: Finds whether any maskable value occurs (fast rejection).
    finder: re.Pattern[str] | None = attrs.field(repr=False)
    #: Whether some maskable value contains the token's character ``*``.
    has_star: bool = attrs.field(repr=False)

    @classmethod
    def of(cls, values: Iterable[str]) -> SecretSet:
        """Build a set from strings; empty strings are ignored.

        Raises ``TypeError`` for a value that is not a ``str``.
        """
        kept: set[str] = set()
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"a secret must be a str (got {type(value).__name__})")
            if value:
                kept.add(value)
        maskable = tuple(
            sorted((v for v in kept if len(v) >= MIN_SECRET_LENGTH), key=lambda v: (-len(v), v))
        )
        if not maskable:
            return cls(frozenset(kept), (), None, False)
        alternation = "|".join(re.escape(v) for v in maskable)
        return cls(
            frozenset(kept), maskable, re.compile(alternation), any("*" in v for v in maskable)
        )

    def union(self, other: Iterable[str]) -> SecretSet:
        """A new set holding these values and ``other``'s."""
        return SecretSet.of([*self.values, *other])

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


EMPTY_SECRETS = SecretSet.of(())

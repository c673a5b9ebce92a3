"""Abstract fixtures: a contract's fixtures must be provided by the subclass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

__all__ = ["must_override"]


def must_override(message: str) -> Iterator[NoReturn]:
    """Raise at once; used as ``yield from must_override(...)`` in a base fixture so the
    fixture keeps the generator type its overrides use."""
    raise NotImplementedError(message)

"""The values a document may hold (SPEC §2, §16.5): JSON, storable alike by every store.

Valid values are null, bool, int of at most ``MAX_INT_DIGITS`` digits, finite float, str
without NUL or lone surrogates (PostgreSQL can store neither), and lists of valid values
and dicts with ``str`` keys, nested at most ``MAX_DEPTH`` deep. Every write checks both of
its documents, so the walk builds no path until it finds a problem.

>>> document_problems({"title": "ok", "tags": ["a", float("nan")]})
[('tags[1]', 'number is not finite (NaN or infinity has no JSON form)')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from reactive_entities.domain.validation import LONE_SURROGATE

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "document_problems"]

#: Integers with more digits than this have no JSON text in Python (its int → str limit),
#: so PostgreSQL's store cannot write them; every store refuses them alike (SPEC §16.5).
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS  # |n| < bound ⇔ at most MAX_INT_DIGITS digits
_INT_LOW = -_INT_BOUND  # negating a 4,300-digit int on every check would cost ~1 µs
#: Lists and dicts nested deeper than this are refused: encoding them as JSON would hit
#: Python's recursion limit in one store and not in the other.
MAX_DEPTH: Final = 256

#: ``(path below the value, reason)``; the path is "" for the value itself.
_Problems = list[tuple[str, str]]


def document_problems(doc: Mapping[str, object]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every value a document must not hold; empty when valid.

    Paths read ``status``, ``meta.region``, ``tags[1]``.
    """
    found: list[tuple[str, str]] = []
    for field, value in doc.items():
        below = _problems(value, 1)
        if below is not None:
            found.extend((field + path, reason) for path, reason in below)
    return found


def _problems(value: object, depth: int) -> _Problems | None:
    """The problems of ``value`` at nesting ``depth``, or None when it is valid."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        reason = _text_problem(value, "text")
        return None if reason is None else [("", reason)]
    if isinstance(value, int):
        if _INT_LOW < value < _INT_BOUND:
            return None
        return [("", f"integer with more than {MAX_INT_DIGITS} digits (it has no JSON text)")]
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return [("", "number is not finite (NaN or infinity has no JSON form)")]
    if isinstance(value, list | dict) and depth > MAX_DEPTH:
        return [("", f"nested deeper than {MAX_DEPTH} levels")]
    found: _Problems | None = None
    if isinstance(value, list):
        for i, item in enumerate(value):
            below = _problems(item, depth + 1)
            if below is not None:
                found = found or []
                found.extend((f"[{i}]{path}", reason) for path, reason in below)
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                below = [("", f"object key of type {type(key).__name__} (keys must be str)")]
            elif (reason := _text_problem(key, "object key")) is not None:
                below = [("", reason)]
            else:
                below = [(f".{key}{path}", why) for path, why in _problems(item, depth + 1) or ()]
            if below:
                found = found or []
                found.extend(below)
        return found
    return [("", f"unsupported value of type {type(value).__name__} (register a cattrs hook)")]


def _text_problem(text: str, what: str) -> str | None:
    if "\x00" in text:
        return f"{what} contains a NUL character"
    # Only non-ASCII text can hold a lone surrogate; ``isascii`` spares the search.
    if not text.isascii() and LONE_SURROGATE.search(text) is not None:
        return f"{what} contains a lone surrogate (not Unicode: it has no UTF-8 form)"
    return None

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
from collections.abc import Iterable, Mapping
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

# What a walk's entries are: a document's fields, a list's items, or a dict's entries.
_FIELDS, _ITEMS, _ENTRIES = 0, 1, 2


def document_problems(doc: Mapping[str, object]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every value a document must not hold; empty when valid.

    Paths read ``status``, ``meta.region``, ``tags[1]``.
    """
    found: list[tuple[str, str]] = []
    _walk(doc.items(), _FIELDS, 1, found)
    return found


def _walk(
    entries: Iterable[tuple[object, object]], kind: int, depth: int, found: list[tuple[str, str]]
) -> None:
    """Append ``(path below, reason)`` for each invalid entry at nesting ``depth``.

    The one walker of the rules. Valid scalars, the common case of every write, are
    passed over inline: a call per value would cost more than the check.
    """
    keyed = kind == _ENTRIES
    for key, value in entries:
        # ASCII text without NUL has nothing to check: the rule itself runs on the rest.
        if keyed and not (type(key) is str and key.isascii() and "\x00" not in key):
            reason = _key_problem(key)
            if reason is not None:
                found.append(("", reason))  # at the dict's own path
                continue
        # ``type(...) is``: exact types, cheaper than ``isinstance`` and narrowed alike.
        if type(value) is str:
            if value.isascii() and "\x00" not in value:
                continue
            if (reason := _text_problem(value, "text")) is None:
                continue
        elif value is None or type(value) is bool:
            continue
        elif type(value) is int:
            if _INT_LOW < value < _INT_BOUND:
                continue
            reason = f"integer with more than {MAX_INT_DIGITS} digits (it has no JSON text)"
        elif type(value) is float:
            if math.isfinite(value):
                continue
            reason = "number is not finite (NaN or infinity has no JSON form)"
        elif type(value) is list or type(value) is dict:
            if depth <= MAX_DEPTH:
                below: list[tuple[str, str]] = []
                if type(value) is dict:
                    _walk(value.items(), _ENTRIES, depth + 1, below)
                else:
                    _walk(enumerate(value), _ITEMS, depth + 1, below)
                if below:
                    label = _label(kind, key)
                    found.extend((label + path, why) for path, why in below)
                continue
            reason = f"nested deeper than {MAX_DEPTH} levels"
        else:
            reason = f"unsupported value of type {type(value).__name__} (register a cattrs hook)"
        found.append((_label(kind, key), reason))


def _label(kind: int, key: object) -> str:
    if kind == _ITEMS:
        return f"[{key}]"
    return f".{key}" if kind == _ENTRIES else f"{key}"


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"object key of type {type(key).__name__} (keys must be str)"
    return _text_problem(key, "object key")


def _text_problem(text: str, what: str) -> str | None:
    if "\x00" in text:
        return f"{what} contains a NUL character"
    if LONE_SURROGATE.search(text) is not None:
        return f"{what} contains a lone surrogate (not Unicode: it has no UTF-8 form)"
    return None

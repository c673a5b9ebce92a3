"""JSON values, canonical JSON and structural equality (SPEC §2).

A *document* is the JSON-compatible form of a state: a dict whose top-level keys are the
state's fields. Two values are *structurally equal* iff their canonical JSON is identical:
object key order does not matter, ``1.0`` equals ``1``, but ``true`` never equals ``1``.

>>> canonical_json({"b": 1.0, "a": [True, None, "x"]})
'{"a":[true,null,"x"],"b":1}'
>>> structurally_equal({"n": 1}, {"n": 1.0}), structurally_equal(True, 1)
(True, False)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TypeAlias

__all__ = [
    "JSONValue",
    "Document",
    "canonical_json",
    "structurally_equal",
    "copy_value",
    "copy_document",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
Document: TypeAlias = dict[str, JSONValue]

_ENCODE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def _normalized(value: object) -> object:
    """The value with every integral float written as an int (``1.0`` → ``1``)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number has no JSON form")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    return value


def canonical_json(value: object) -> str:
    """The canonical JSON text of ``value``: no whitespace, keys sorted by code point.

    Tuples are written as lists. Raises ``ValueError`` for a non-finite float
    (documents never hold one).
    """
    return _ENCODE(_normalized(value))


def structurally_equal(a: object, b: object) -> bool:
    """True iff ``canonical_json(a) == canonical_json(b)``, computed without encoding
    (a tuple compares like the list it encodes as)."""
    if a is b:
        return True
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # the same bool is the same object: ``a is b`` answered it
    if isinstance(a, (int, float)):
        # Python compares int and float exactly, which is what canonical JSON does once
        # an integral float is written as an int.
        return isinstance(b, (int, float)) and a == b
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and _items_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and _entries_equal(a, b)
    return False  # None is only equal to itself


def _items_equal(a: Sequence[object], b: Sequence[object]) -> bool:
    if len(a) != len(b):
        return False
    # A loop, not ``all(...)``: a generator costs CPython a frame per call.
    for x, y in zip(a, b, strict=True):  # noqa: SIM110
        # The identity test inline: unchanged items are usually the very same objects.
        if x is not y and not structurally_equal(x, y):
            return False
    return True


def _entries_equal(a: dict[object, object], b: dict[object, object]) -> bool:
    if len(a) != len(b):
        return False
    for key, x in a.items():
        if key not in b:
            return False
        y = b[key]
        if x is not y and not structurally_equal(x, y):
            return False
    return True


_CONTAINERS = frozenset((list, dict))


def copy_value(value: JSONValue) -> JSONValue:
    """A copy of ``value`` sharing no list or dict with it (scalars are immutable, so
    they are shared). Stores keep and hand out such copies: no receiver of an event or
    a history row can change what was recorded.

    >>> tags = ["a"]
    >>> copied = copy_value({"tags": tags})
    >>> copied == {"tags": ["a"]}, copied["tags"] is tags
    (True, False)
    """
    # Scalars are shared inline: a call per item would cost more than the copy.
    if type(value) is list:
        return [copy_value(v) if type(v) in _CONTAINERS else v for v in value]
    if type(value) is dict:
        return {k: copy_value(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    return value


def copy_document(doc: Document) -> Document:
    """A copy of a document sharing no list or dict with it (:func:`copy_value` of each
    field holding one; the scalars are shared as they are).

    >>> doc = {"status": "open", "tags": ["a"]}
    >>> copied = copy_document(doc)
    >>> copied == doc, copied is doc, copied["tags"] is doc["tags"]
    (True, False, False)
    """
    copied = doc.copy()
    for key, value in doc.items():
        if type(value) in _CONTAINERS:
            copied[key] = copy_value(value)
    return copied

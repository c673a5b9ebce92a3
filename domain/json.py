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
    kind = type(value)
    if kind is float:
        f: float = value  # type: ignore[assignment]
        if not math.isfinite(f):
            raise ValueError("non-finite number has no JSON form")
        return int(f) if f.is_integer() else f
    if kind is dict:
        return {k: _normalized(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is list or kind is tuple:
        return [_normalized(v) for v in value]  # type: ignore[attr-defined]
    return value


def canonical_json(value: JSONValue) -> str:
    """The canonical JSON text of ``value``: no whitespace, keys sorted by code point.

    Raises ``ValueError`` for a non-finite float (documents never hold one).
    """
    return _ENCODE(_normalized(value))


_PLAIN = frozenset((str, int, bool, type(None)))


def structurally_equal(a: JSONValue, b: JSONValue) -> bool:
    """True iff ``canonical_json(a) == canonical_json(b)``, computed without encoding.

    The fast paths (identity, same plain scalar type) make the common case of an
    unchanged field — or an unchanged list of strings — cost a comparison per item.
    """
    if a is b:
        return True
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is list:
            return _lists_equal(a, b)  # type: ignore[arg-type]
        if ta is dict:
            return _dicts_equal(a, b)  # type: ignore[arg-type]
        return a == b
    if ta is bool or tb is bool:
        return False
    if (ta is int and tb is float) or (ta is float and tb is int):
        # Python compares int and float exactly, which is what canonical JSON does once
        # an integral float is written as an int.
        return a == b
    if ta in _SEQUENCES and tb in _SEQUENCES:
        return _lists_equal(a, b)  # type: ignore[arg-type]
    return False


_SEQUENCES = (list, tuple)


def _lists_equal(a: list[JSONValue], b: list[JSONValue]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x is y:
            continue
        tx = type(x)
        if tx is type(y) and tx in _PLAIN:
            if x != y:
                return False
        elif not structurally_equal(x, y):
            return False
    return True


def _dicts_equal(a: dict[str, JSONValue], b: dict[str, JSONValue]) -> bool:
    if len(a) != len(b):
        return False
    for key, x in a.items():
        if key not in b:
            return False
        y = b[key]
        if x is y:
            continue
        tx = type(x)
        if tx is type(y) and tx in _PLAIN:
            if x != y:
                return False
        elif not structurally_equal(x, y):
            return False
    return True


def copy_value(value: JSONValue) -> JSONValue:
    """A copy of ``value`` sharing no list or dict with it (scalars are immutable, so
    they are shared). Stores keep and hand out such copies: no receiver of an event or
    a history row can change what was recorded.

    >>> tags = ["a"]
    >>> copied = copy_value({"tags": tags})
    >>> copied == {"tags": ["a"]}, copied["tags"] is tags
    (True, False)
    """
    kind = type(value)
    if kind is list:
        return [v if type(v) in _PLAIN else copy_value(v) for v in value]  # type: ignore[union-attr]
    if kind is dict:
        return {
            k: v if type(v) in _PLAIN else copy_value(v)
            for k, v in value.items()  # type: ignore[union-attr]
        }
    return value


def copy_document(doc: Document) -> Document:
    """A copy of a document sharing no list or dict with it: :func:`copy_value` for a
    top-level dict, faster when most fields hold scalars (they are shared as they are).

    >>> doc = {"status": "open", "tags": ["a"]}
    >>> copied = copy_document(doc)
    >>> copied == doc, copied is doc, copied["tags"] is doc["tags"]
    (True, False, False)
    """
    copied = doc.copy()
    for key, value in doc.items():
        kind = type(value)
        if kind is list or kind is dict:
            copied[key] = copy_value(value)
    return copied

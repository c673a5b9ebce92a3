"""Translation between the domain's values and the store's SQL parameters and rows.

JSON values travel as JSON text and are cast to ``jsonb`` by the statement; rows come
back with their ``jsonb`` columns cast to text, so SQL NULL (``from_value`` of a create:
:data:`ABSENT`) stays distinct from the JSON ``null`` (``None``).

One subtlety: ``jsonb`` stores numbers as ``numeric`` and prints them without an
exponent, so the float ``1e+300`` would come back as the int ``10**300``, which is not
structurally equal to it. Floats of magnitude 1e16 and more (the ones Python writes with
an exponent; all integral) are therefore written as the exact integer they equal, which
is how canonical JSON writes them anyway.

>>> encode_json({"a": [1.5, None, "é"]})
'{"a":[1.5,null,"é"]}'
>>> encode_json(1e300) == str(int(1e300))
True
>>> decode_from(None), decode_from("null")
(ABSENT, None)

Arrays of JSON texts travel as PostgreSQL array literals built here (``text_array``),
cast by the statement: quoting every element is all ``array_in`` needs, and it costs a
fraction of the driver's generic list adaptation (which escapes element by element with
regular expressions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import ABSENT, Absent, ChangeRecord, TransitionRecord
from reactive_entities.domain.json import JSONValue

__all__ = [
    "encode_json",
    "text_array",
    "bool_array",
    "decode_from",
    "utc",
    "transition_record",
    "change_record",
]

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


def _exact(value: Any) -> Any:
    """``value`` with every float written with an exponent replaced by its exact int."""
    kind = type(value)
    if kind is float:
        return int(value) if abs(value) >= 1e16 else value
    if kind is dict:
        return {k: _exact(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_exact(v) for v in value]
    return value


def encode_json(value: object) -> str:
    """Compact JSON text of a document or value, safe for a ``jsonb`` round trip."""
    text = _encode(value)
    if "e+" in text:  # rare: a big float (or merely a string containing "e+")
        text = _encode(_exact(value))
    return text


def text_array(values: Iterable[str | None]) -> str:
    r"""A ``text[]`` literal of ``values`` (None is NULL), for a ``%s::text[]`` parameter.

    >>> print(text_array(["a", None, 'say "hi"', "back\\slash", "{,}", ""]))
    {"a",NULL,"say \"hi\"","back\\slash","{,}",""}
    """
    parts = [
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in values
    ]
    return "{" + ",".join(parts) + "}"


def bool_array(values: Iterable[bool]) -> str:
    """A ``boolean[]`` literal of ``values``.

    >>> bool_array([True, False])
    '{t,f}'
    """
    return "{" + ",".join(["t" if value else "f" for value in values]) + "}"


def decode_from(text: str | None) -> JSONValue | Absent:
    """A ``from_value`` column (as text): SQL NULL is :data:`ABSENT`."""
    return ABSENT if text is None else _decode(text)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC (the driver returns the session's time zone)."""
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def transition_record(kind: str, entity_id: str, row: Sequence[Any]) -> TransitionRecord:
    """A row ``(field, from_value, to_value, masked, change_id, transitioned_at)``."""
    field, from_value, to_value, masked, change_id, stamp = row
    return TransitionRecord(
        kind,
        entity_id,
        field,
        ABSENT if from_value is None else _decode(from_value),
        _decode(to_value),
        masked,
        change_id,
        stamp if stamp.tzinfo is UTC else stamp.astimezone(UTC),
    )


def change_record(kind: str, entity_id: str, row: Sequence[Any]) -> ChangeRecord:
    """A row ``(op, change_id, occurred_at, changed_fields, actor, run_id)``."""
    op, change_id, stamp, changed_fields, actor, run_id = row
    return ChangeRecord(
        kind,
        entity_id,
        op,
        change_id,
        utc(stamp),
        tuple(changed_fields),
        Actor.from_dict(_decode(actor)),
        run_id,
    )

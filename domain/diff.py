"""Per-field diff of two documents (SPEC §3).

* create (``prev`` None): every field of ``next`` changed, nulls included; delta = next.
* update: a field changed iff its values are not structurally equal; delta maps each
  changed field to its next value. Nested values change as a whole.
* remove (``next`` None): every field of ``prev`` changed; delta is empty.
* both None, or nothing changed: no change — ``changed_fields`` is empty.

>>> diff({"a": 1, "b": [1]}, {"a": 1.0, "b": [2]})
(('b',), {'b': [2]})
>>> diff(None, None)
((), {})
"""

from __future__ import annotations

from reactive_entities.domain.json import Document, JSONValue, structurally_equal

__all__ = ["diff", "changed_fields"]

_MISSING: object = object()
_SCALARS = frozenset((str, int, bool, float))


def changed_fields(prev: Document, next: Document) -> tuple[str, ...]:
    """The sorted names of the fields whose values differ structurally.

    A key present on one side only counts as changed.
    """
    get = prev.get
    changed = []
    for field, value in next.items():
        old = get(field, _MISSING)
        if old is value:
            continue  # the same object: most fields of a write are untouched
        if type(old) is type(value) and type(value) in _SCALARS:
            # Two scalars of one type compare directly (no bool/int or int/float
            # subtlety arises within one type), without a call.
            if old != value:
                changed.append(field)
        elif old is _MISSING or not structurally_equal(old, value):
            changed.append(field)
    # Equal sizes and every key of ``next`` in ``prev`` mean equal key sets.
    if len(prev) != len(next) or any(field not in prev for field in changed):
        changed.extend(field for field in prev if field not in next)
    changed.sort()
    return tuple(changed)


def diff(
    prev: Document | None, next: Document | None
) -> tuple[tuple[str, ...], dict[str, JSONValue]]:
    """``(changed_fields, delta)`` for ``prev`` → ``next``; see the module docstring.

    For an update, a field missing from ``next`` appears in ``changed_fields`` with a
    ``None`` delta value.
    """
    if prev is None:
        if next is None:
            return (), {}
        return tuple(sorted(next)), dict(next)
    if next is None:
        return tuple(sorted(prev)), {}
    fields = changed_fields(prev, next)
    return fields, {f: next.get(f) for f in fields}

"""Building the transition rows of a change (SPEC §7).

One row per changed field of a create or update, in ``changed_fields`` order; a remove
has none. Values come from the *masked* documents; ``masked`` says whether masking changed
either side of the row (a sensitive field counts as masked whenever either side holds a
value: null is recorded as null, SPEC §16.2).
"""

from __future__ import annotations

from reactive_entities.domain.events import ABSENT, Absent, Transition
from reactive_entities.domain.json import Document, JSONValue

__all__ = ["build_transitions"]


def build_transitions(
    fields: tuple[str, ...],
    prev: Document | None,
    next: Document | None,
    masked_prev: Document | None,
    masked_next: Document | None,
    sensitive: frozenset[str] = frozenset(),
) -> tuple[Transition, ...]:
    """The rows for ``fields`` given raw and masked documents (``next`` None: no rows).

    Masking returns unchanged values as the very same objects, so ``is not`` tells
    whether masking touched a value.
    """
    if next is None or masked_next is None:
        return ()
    rows = []
    for field in fields:
        to_raw = next.get(field)
        to_value = masked_next.get(field)
        is_sensitive = field in sensitive
        masked = (is_sensitive and to_raw is not None) or to_value is not to_raw
        from_value: JSONValue | Absent
        if prev is None or masked_prev is None:
            from_value = ABSENT
        else:
            from_raw = prev.get(field)
            from_value = masked_prev.get(field)
            masked = masked or (is_sensitive and from_raw is not None) or from_value is not from_raw
        rows.append(Transition(field, from_value, to_value, masked))
    return tuple(rows)

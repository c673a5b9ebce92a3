"""Declarations of state that is deliberately *not* reactive (SPEC §10).

Some tables hold raw samples, secrets, data owned by another system, or bookkeeping;
declaring them documents why they do not go through ``mutate``.
"""

from __future__ import annotations

import attrs

from reactive_entities.domain.validation import NON_REACTIVE_REASONS, NonReactiveReason

__all__ = ["NonReactiveDeclaration", "declaration_problem"]


@attrs.frozen
class NonReactiveDeclaration:
    """One declared non-reactive table, why, and an optional note."""

    table: str
    reason: NonReactiveReason
    note: str | None = None


def declaration_problem(table: object, reason: object, note: object) -> str | None:
    """Why the arguments do not make a declaration, or None."""
    if not isinstance(table, str) or not table.strip():
        return f"table must be a non-empty str (got {table!r:.60})"
    if reason not in NON_REACTIVE_REASONS:
        return f"reason must be one of {', '.join(NON_REACTIVE_REASONS)} (got {reason!r:.60})"
    if note is not None and not isinstance(note, str):
        return f"note must be a str or None (got {type(note).__name__})"
    return None

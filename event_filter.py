"""Which events a subscription wants: one rule for every delivery (in-process handlers,
broadcasts, work queues) in both engines."""

from __future__ import annotations

from reactive_entities.domain.events import ChangeEvent

__all__ = ["wants"]


def wants(kind: str | None, fields: frozenset[str] | None, event: ChangeEvent) -> bool:
    """Whether ``event`` is of ``kind`` (any when None) and touches any of ``fields``
    (any when None)."""
    if kind is not None and event.kind != kind:
        return False
    return fields is None or not fields.isdisjoint(event.changed_fields)

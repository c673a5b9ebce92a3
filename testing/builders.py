"""Small builders for tests: changes planned by the real domain code."""

from __future__ import annotations

from datetime import datetime

from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.events import Change
from reactive_entities.domain.json import Document
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.ids import new_change_id

__all__ = ["make_change"]


def make_change(
    kind: str,
    entity_id: str,
    prev: Document | None,
    next: Document | None,
    *,
    at: datetime,
    actor: Actor = SYSTEM_ACTOR,
    run_id: str | None = None,
    secrets: SecretSet = EMPTY_SECRETS,
    sensitive: frozenset[str] = frozenset(),
    change_id: str | None = None,
) -> Change:
    """The change ``plan_change`` makes for ``prev`` → ``next``; fails on a no-op."""
    change = plan_change(
        kind,
        entity_id,
        prev,
        next,
        actor=actor,
        run_id=run_id,
        secrets=secrets,
        sensitive=sensitive,
        change_id=change_id if change_id is not None else new_change_id(),
        occurred_at=at,
    )
    if change is None:
        raise ValueError(f"{prev!r} -> {next!r} is a no-op; a contract test needs a change")
    return change

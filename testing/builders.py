"""Small builders for tests: plans made by the real domain code, and recording them."""

from __future__ import annotations

from datetime import datetime

from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.events import Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.ids import new_change_id
from reactive_entities.ports.store import EntityStore

__all__ = ["make_plan", "record"]


def make_plan(
    kind: str,
    entity_id: str,
    prev: Document | None,
    next: Document | None,
    *,
    actor: Actor = SYSTEM_ACTOR,
    run_id: str | None = None,
    secrets: SecretSet = EMPTY_SECRETS,
    sensitive: frozenset[str] = frozenset(),
    change_id: str | None = None,
) -> Plan:
    """The plan ``plan_change`` makes for ``prev`` → ``next``; fails on a no-op."""
    plan = plan_change(
        kind,
        entity_id,
        prev,
        next,
        actor=actor,
        run_id=run_id,
        secrets=secrets,
        sensitive=sensitive,
        change_id=change_id if change_id is not None else new_change_id(),
    )
    if plan is None:
        raise ValueError(f"{prev!r} -> {next!r} is a no-op; a contract test needs a change")
    return plan


def record(store: EntityStore, *plans: Plan) -> datetime:
    """Record ``plans`` in one write transaction of ``store`` (locking each entity), and
    commit; returns the stamp of the last one."""
    stamp: datetime | None = None
    with store.begin() as tx:
        for plan in plans:
            tx.lock(plan.kind, plan.entity_id)
            stamp = tx.record(plan)
        tx.commit()
    if stamp is None:
        raise ValueError("record needs at least one plan")
    return stamp

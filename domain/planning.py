"""``plan_change``: the single decision point of the library.

Given the previous and next documents of one entity, decide whether anything changed and,
if so, describe the change completely — the masked event and the masked transition rows.
The shell only executes the plan (record, then deliver). The change id and the secrets
arrive as arguments, so the function is deterministic; the plan carries no time, because
the store alone stamps a change (DESIGN §8).

Theory of operation: the diff runs on the **unmasked** documents, then everything that
leaves the process is masked. A change from one secret to another is therefore recorded
(both sides ``****``), never dropped as a no-op.
"""

from __future__ import annotations

import attrs

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.diff import changed_fields, diff
from reactive_entities.domain.events import Op, Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.masking import mask_document, mask_text
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.domain.transitions import build_transitions

__all__ = ["plan_change", "mask_actor"]


def plan_change(
    kind: str,
    entity_id: str,
    prev_doc: Document | None,
    next_doc: Document | None,
    *,
    actor: Actor,
    run_id: str | None,
    secrets: SecretSet,
    sensitive: frozenset[str],
    change_id: str,
) -> Plan | None:
    """The masked :class:`Plan` for ``prev_doc`` → ``next_doc``, or None for a no-op.

    ``secrets`` are the run's secrets (empty without a run); ``sensitive`` fields are
    replaced whole by the token whatever the run.
    """
    if prev_doc is not None and next_doc is not None:
        fields = changed_fields(prev_doc, next_doc)  # skips building an unmasked delta
    else:
        fields, _ = diff(prev_doc, next_doc)
    if not fields:
        return None
    op: Op = "create" if prev_doc is None else ("remove" if next_doc is None else "update")
    masked_prev: Document | None = None
    masked_next: Document | None = None
    if prev_doc is not None:
        masked_prev = mask_document(prev_doc, secrets, sensitive)
    if next_doc is not None:
        # Most fields of a write are untouched: their masked forms are the previous one's.
        before = None
        if secrets and prev_doc is not None and masked_prev is not None:
            before = (prev_doc, masked_prev)
        masked_next = mask_document(next_doc, secrets, sensitive, masked_before=before)
    if masked_next is None:
        delta: Document = {}
    elif op == "create":
        delta = dict(masked_next)
    else:
        delta = {f: masked_next.get(f) for f in fields}
    rows = build_transitions(fields, prev_doc, next_doc, masked_prev, masked_next, sensitive)
    return Plan(
        kind,
        entity_id,
        op,
        masked_prev,
        masked_next,
        delta,
        fields,
        mask_actor(actor, secrets),
        run_id,
        change_id,
        rows,
    )


def mask_actor(actor: Actor, secrets: SecretSet) -> Actor:
    """The actor with run secrets masked out of its id and name (usually itself)."""
    if not secrets:
        return actor
    masked_id = mask_text(actor.id, secrets)
    masked_name = None if actor.name is None else mask_text(actor.name, secrets)
    if masked_id is actor.id and masked_name is actor.name:
        return actor
    return attrs.evolve(actor, id=masked_id, name=masked_name)

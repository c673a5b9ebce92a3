"""The pure half of a write: validate what ``apply`` returned, then plan the change.

The shell (``engine``) reads the previous document and runs ``apply``; everything it then
has to decide is decided here, in one function returning a ``Result``. The shell unwraps
it in one place: a failure is raised, a success is recorded and delivered.

>>> import attrs
>>> from reactive_entities.domain.actor import SYSTEM_ACTOR
>>> from reactive_entities.domain.documents import make_converter
>>> from reactive_entities.domain.schema import build_schema
>>> from reactive_entities.domain.secret_set import EMPTY_SECRETS
>>> @attrs.frozen
... class Light:
...     on: bool
>>> schema = build_schema("light", Light, (), make_converter()).unwrap()
>>> planned = plan_write(schema, "l-1", None, {"on": True}, removing=False,
...     actor=SYSTEM_ACTOR, run_id=None, secrets=EMPTY_SECRETS, change_id="c-1").unwrap()
>>> planned.state, planned.plan.op, planned.plan.changed_fields
(Light(on=True), 'create', ('on',))
"""

from __future__ import annotations

from typing import Any

import attrs
from returns.result import Failure, Result, Success

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import MissingStateError, StateValidationError
from reactive_entities.domain.events import Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.schema import Schema
from reactive_entities.domain.secret_set import SecretSet

__all__ = ["Planned", "plan_write", "validate_state"]


@attrs.frozen(slots=False)  # transient, built on every write: dict-based init is faster
class Planned:
    """A write's outcome: the validated next state (unmasked; None for a remove) and
    the plan to record (None when nothing changed)."""

    state: Any
    plan: Plan | None


def validate_state(
    schema: Schema, entity_id: str, value: object, secrets: SecretSet, source: str
) -> Result[tuple[Any, Document], StateValidationError]:
    """``(state, document)`` for a value ``read`` or ``apply`` produced, or the
    (redacted) reason it is not a valid state of the kind."""
    doc = schema.instance_document(value)
    if doc is not None:
        return Success((value, doc))  # the common case, without building problems
    checked = schema.validate(value, secrets)
    if type(checked) is Failure:  # not isinstance: ABC checks cost 5x more
        return Failure(
            StateValidationError(
                schema.kind, entity_id, dict(checked.failure()), f"state returned by {source}"
            )
        )
    return Success(checked.unwrap())


def plan_write(
    schema: Schema,
    entity_id: str,
    prev_doc: Document | None,
    result: object,
    *,
    removing: bool,
    actor: Actor,
    run_id: str | None,
    secrets: SecretSet,
    change_id: str,
) -> Result[Planned, StateValidationError | MissingStateError]:
    """Validate ``result`` (what ``apply`` returned) and plan ``prev_doc`` → next.

    A remove ignores ``result``; a mutate needs a state (``MissingStateError`` for None)
    that validates (``StateValidationError``, redacted with ``secrets``).
    """
    state: Any = None
    next_doc: Document | None = None
    if not removing:
        if result is None:
            return Failure(
                MissingStateError(
                    f"apply returned None for {schema.kind}:{entity_id}: mutate needs the "
                    "resulting state (use remove to delete)"
                )
            )
        next_doc = schema.instance_document(result)  # the common case, without a Result
        if next_doc is not None:
            state = result
        else:
            checked = validate_state(schema, entity_id, result, secrets, "apply")
            if type(checked) is Failure:  # not isinstance: ABC checks cost 5x more
                return checked
            state, next_doc = checked.unwrap()
    plan = plan_change(
        schema.kind,
        entity_id,
        prev_doc,
        next_doc,
        actor=actor,
        run_id=run_id,
        secrets=secrets,
        sensitive=schema.sensitive,
        change_id=change_id,
    )
    return Success(Planned(state, plan))

"""The functional core: pure values and functions, no I/O, clock, randomness or logging.

Time, ids and secrets arrive as arguments. Everything here is immutable or returns new
values; fallible computations return ``returns.result.Result``.
"""

from reactive_entities.domain.actor import ACTOR_TYPES, SYSTEM_ACTOR, Actor, ActorType
from reactive_entities.domain.diff import changed_fields, diff
from reactive_entities.domain.documents import document_problems, make_converter
from reactive_entities.domain.events import (
    ABSENT,
    Absent,
    ChangeEvent,
    ChangeRecord,
    Op,
    Plan,
    Transition,
    TransitionRecord,
    iso_utc,
)
from reactive_entities.domain.json import Document, JSONValue, canonical_json, structurally_equal
from reactive_entities.domain.masking import TOKEN, mask_deep, mask_document, mask_text
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.schema import Schema, build_schema
from reactive_entities.domain.secret_set import EMPTY_SECRETS, MIN_SECRET_LENGTH, SecretSet
from reactive_entities.domain.transitions import build_transitions

__all__ = [
    "ABSENT",
    "ACTOR_TYPES",
    "Absent",
    "Actor",
    "ActorType",
    "Plan",
    "ChangeEvent",
    "ChangeRecord",
    "Document",
    "EMPTY_SECRETS",
    "JSONValue",
    "MIN_SECRET_LENGTH",
    "Op",
    "SYSTEM_ACTOR",
    "Schema",
    "SecretSet",
    "TOKEN",
    "Transition",
    "TransitionRecord",
    "build_schema",
    "build_transitions",
    "canonical_json",
    "changed_fields",
    "diff",
    "document_problems",
    "iso_utc",
    "make_converter",
    "mask_deep",
    "mask_document",
    "mask_text",
    "plan_change",
    "structurally_equal",
]

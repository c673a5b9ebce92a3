"""reactive-entities: make application-owned entity state reactive.

Funnel every write through ``handle.mutate(id, apply)``; the library diffs the state,
appends a durable transition log, masks secrets, and emits change events.

>>> import attrs
>>> from reactive_entities import compose
>>> @attrs.frozen
... class Light:
...     on: bool
>>> lights: dict[str, Light] = {}
>>> engine = compose.in_memory()
>>> handle = engine.define_entity(
...     "light", Light, read=lambda ids: {i: lights[i] for i in ids if i in lights}
... )
>>> def switch_on() -> Light:
...     lights["l-1"] = Light(on=True)
...     return lights["l-1"]
>>> handle.mutate("l-1", switch_on)
Light(on=True)
>>> [(row.field, row.from_value, row.to_value) for row in handle.history("l-1")]
[('on', ABSENT, True)]
"""

from reactive_entities import compose
from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.declarations import NonReactiveDeclaration
from reactive_entities.domain.errors import (
    DefinitionError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidReadError,
    MissingStateError,
    ReactiveEntitiesError,
    SchemaVersionError,
    StateValidationError,
    StoreError,
    UnknownFieldError,
    UnknownKindError,
)
from reactive_entities.domain.events import (
    ABSENT,
    ChangeEvent,
    ChangeRecord,
    Plan,
    Transition,
    TransitionRecord,
)
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.position import Position
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.domain.subscriptions import Broadcast, InProcess, WorkQueue
from reactive_entities.engine import Engine, EntityHandle, remove_through, write_through
from reactive_entities.native import compiled
from reactive_entities.ports import (
    Clock,
    Emitter,
    EntityStore,
    SecretRegistry,
    StoreTransaction,
    Subscription,
)
from reactive_entities.transaction import Transaction

__all__ = [
    # the build: True when the compiled hot path is in use
    "compiled",
    # composition and the shell
    "compose",
    "Engine",
    "EntityHandle",
    "Transaction",
    # delivery
    "InProcess",
    "Broadcast",
    "WorkQueue",
    "Position",
    "write_through",
    "remove_through",
    # values
    "ABSENT",
    "Actor",
    "SYSTEM_ACTOR",
    "ChangeEvent",
    "ChangeRecord",
    "Plan",
    "Transition",
    "TransitionRecord",
    "SecretSet",
    "NonReactiveDeclaration",
    "plan_change",
    # ports
    "Clock",
    "Emitter",
    "EntityStore",
    "StoreTransaction",
    "SecretRegistry",
    "Subscription",
    # errors
    "ReactiveEntitiesError",
    "DefinitionError",
    "InvalidReadError",
    "UnknownKindError",
    "UnknownFieldError",
    "InvalidArgumentError",
    "StateValidationError",
    "MissingStateError",
    "StoreError",
    "SchemaVersionError",
    "EngineClosedError",
]

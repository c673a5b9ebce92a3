"""The library's one exception family.

Every class derives from :class:`ReactiveEntitiesError` *and* from the built-in that fits,
so callers can catch either ``ReactiveEntitiesError`` or the natural built-in
(``except ValueError`` still catches a bad argument).

Messages name the kind, id and field involved and never carry a secret or the value of a
sensitive field: the shell builds them from masked data only.

>>> issubclass(UnknownKindError, LookupError)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
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


class ReactiveEntitiesError(Exception):
    """Root of every error this library raises."""


class DefinitionError(ReactiveEntitiesError, ValueError):
    """A kind could not be defined (bad name, duplicate, state not an attrs class, …)."""


class InvalidReadError(DefinitionError, TypeError):
    """The ``read`` accessor given to ``define_entity`` is not callable."""


class UnknownKindError(ReactiveEntitiesError, LookupError):
    """No kind of that name is defined on this engine."""


class UnknownFieldError(ReactiveEntitiesError, LookupError):
    """A field name is not a field of the kind's state class."""


class InvalidArgumentError(ReactiveEntitiesError, ValueError):
    """An argument is malformed: an id, an ``apply`` callable, a window, a reason, …"""


class StateValidationError(ReactiveEntitiesError, ValueError):
    """A state did not validate against its kind's schema.

    ``field_errors`` maps a path (``"status"``, ``"meta.region"``, or ``"$"`` for the
    whole state) to a reason. Reasons are redacted: they never contain a run secret or
    the value of a sensitive field.
    """

    kind: str
    entity_id: str | None
    field_errors: Mapping[str, str]

    def __init__(
        self, kind: str, entity_id: str | None, field_errors: Mapping[str, str], what: str
    ) -> None:
        self.kind = kind
        self.entity_id = entity_id
        self.field_errors = MappingProxyType(dict(field_errors))
        self._what = what
        where = f"{kind}:{entity_id}" if entity_id is not None else kind
        details = "; ".join(f"{path}: {reason}" for path, reason in self.field_errors.items())
        super().__init__(f"invalid {what} for {where}: {details}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable (multiprocessing, logging handlers) despite the
        # keyword-rich constructor.
        return (type(self), (self.kind, self.entity_id, dict(self.field_errors), self._what))


class MissingStateError(ReactiveEntitiesError, ValueError):
    """``mutate``'s ``apply`` returned ``None`` instead of the resulting state."""


class StoreError(ReactiveEntitiesError, RuntimeError):
    """The entity store failed; the original error is chained as ``__cause__``."""


class SchemaVersionError(StoreError):
    """The database schema is older or newer than this version of the library."""


class EngineClosedError(ReactiveEntitiesError, RuntimeError):
    """The engine was closed; create a new one."""


# Tracebacks and reprs show the public import path, not the private module.
for _cls in (
    ReactiveEntitiesError,
    DefinitionError,
    InvalidReadError,
    UnknownKindError,
    UnknownFieldError,
    InvalidArgumentError,
    StateValidationError,
    MissingStateError,
    StoreError,
    SchemaVersionError,
    EngineClosedError,
):
    _cls.__module__ = "reactive_entities"
del _cls

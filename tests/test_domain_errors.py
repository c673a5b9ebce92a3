"""The exception family (DESIGN §5, SPEC §13.2)."""

from __future__ import annotations

import pickle

import pytest

import reactive_entities
from reactive_entities.domain import errors
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


@pytest.mark.parametrize(
    ("error", "builtins"),
    [
        (DefinitionError, (ValueError,)),
        (InvalidReadError, (DefinitionError, TypeError, ValueError)),
        (UnknownKindError, (LookupError,)),
        (UnknownFieldError, (LookupError,)),
        (InvalidArgumentError, (ValueError,)),
        (StateValidationError, (ValueError,)),
        (MissingStateError, (ValueError,)),
        (StoreError, (RuntimeError,)),
        (SchemaVersionError, (StoreError, RuntimeError)),
        (EngineClosedError, (RuntimeError,)),
    ],
)
def test_each_error_is_also_a_fitting_builtin(
    error: type[Exception], builtins: tuple[type[Exception], ...]
) -> None:
    """Every error is a ``ReactiveEntitiesError`` and the built-in that fits it."""
    assert issubclass(error, ReactiveEntitiesError)
    for builtin in builtins:
        assert issubclass(error, builtin)


@pytest.mark.parametrize("name", errors.__all__)
def test_errors_are_exported_under_their_public_path(name: str) -> None:
    """Each error is exported by ``reactive_entities`` and shows that path."""
    cls = getattr(errors, name)
    assert getattr(reactive_entities, name) is cls
    assert cls.__module__ == "reactive_entities"


def test_errors_pickle() -> None:
    """Simple errors survive pickling (their module path resolves)."""
    error = UnknownKindError('unknown kind "x"')
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is UnknownKindError
    assert back.args == error.args


def test_state_validation_error_names_kind_id_and_paths() -> None:
    """The message names ``kind:id`` and each path with its reason."""
    error = StateValidationError(
        "incident", "inc-1", {"status": "bad value", "meta.region": "expected str"}, "state"
    )
    assert str(error) == (
        "invalid state for incident:inc-1: status: bad value; meta.region: expected str"
    )
    assert (error.kind, error.entity_id) == ("incident", "inc-1")


def test_state_validation_error_without_an_id_names_the_kind() -> None:
    """Without an id the message names the kind alone."""
    error = StateValidationError("incident", None, {"$": "expected a mapping"}, "read result")
    assert str(error) == "invalid read result for incident: $: expected a mapping"


def test_state_validation_error_field_errors_are_read_only() -> None:
    """``field_errors`` is a read-only copy of the mapping given."""
    given = {"status": "bad"}
    error = StateValidationError("incident", "inc-1", given, "state")
    given["other"] = "late"
    assert dict(error.field_errors) == {"status": "bad"}
    with pytest.raises(TypeError):
        error.field_errors["x"] = "y"  # type: ignore[index]


def test_state_validation_error_pickles() -> None:
    """A ``StateValidationError`` survives pickling with its details."""
    error = StateValidationError("incident", "inc-1", {"status": "bad"}, "state")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is StateValidationError
    assert str(back) == str(error)
    assert (back.kind, back.entity_id, dict(back.field_errors)) == (
        "incident",
        "inc-1",
        {"status": "bad"},
    )

"""Laws of the converter and schemas over generated attrs state classes (SPEC §2)."""

from __future__ import annotations

from typing import Any

from hypothesis import given

from reactive_entities.domain.documents import make_converter
from reactive_entities.domain.schema import Schema, build_schema
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import (
    LOGIN_SENSITIVE,
    Login,
    login_mappings,
    states,
)

CONVERTER = make_converter()


_SCHEMAS: dict[type[Any], Schema] = {}


def _schema(cls: type[Any]) -> Schema:
    """The schema of a generated state class, built once per class."""
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = build_schema("state", cls, (), CONVERTER).unwrap()
    return _SCHEMAS[cls]


@given(states())
def test_structure_round_trip(state: Any) -> None:
    """``structure(unstructure(x)) == x``, with the same types at every level."""
    laws.structure_round_trip(CONVERTER, state)


@given(states())
def test_validate_agrees_on_instance_and_document(state: Any) -> None:
    """``Schema.validate`` of a state and of its document agree."""
    laws.validate_agrees_on_instance_and_document(_schema(type(state)), state)


LOGIN = build_schema("login", Login, LOGIN_SENSITIVE, CONVERTER).unwrap()


@given(login_mappings())
def test_validation_reveals_no_secret_and_no_sensitive_value(
    scenario: tuple[dict[str, object], SecretSet],
) -> None:
    """Validation problems never reveal a run secret or the password, clear or escaped."""
    laws.validation_reveals_nothing(LOGIN, scenario[0], scenario[1])

"""Kind schemas: definition checks, state validation and redaction (SPEC §1, §2,
§13.2, §13.4)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from returns.result import Failure, Success

from reactive_entities.domain.documents import make_converter
from reactive_entities.domain.errors import (
    DefinitionError,
    StateValidationError,
    UnknownFieldError,
)
from reactive_entities.domain.schema import WITHHELD, Problems, Schema, build_schema
from reactive_entities.domain.secret_set import SecretSet


@attrs.frozen
class Incident:
    """A state whose status is checked by a validator."""

    status: str = attrs.field(validator=attrs.validators.in_(["open", "resolved"]))
    severity: int = 1
    labels: dict[str, int] = attrs.Factory(dict)


@attrs.frozen
class Account:
    """A state whose validators quote values; ``password`` is meant to be sensitive."""

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[a-z]+"))
    password: str = attrs.field(validator=attrs.validators.matches_re(r".{8,}"))
    labels: dict[str, int] = attrs.Factory(dict)
    ratio: float = 0.0

    def __attrs_post_init__(self) -> None:
        """Refuse a name containing the password, quoting both."""
        if self.password in self.name:
            raise ValueError(f"name {self.name!r} must not contain {self.password!r}")


def schema_of(state: type[Any], sensitive: tuple[str, ...] = ()) -> Schema:
    """The schema of ``state`` on a fresh converter."""
    return build_schema("kind", state, sensitive, make_converter()).unwrap()


def problems(result: Success[Any] | Failure[Problems] | Any) -> Problems:
    """The problems of a failed validation (fails the test on success)."""
    assert isinstance(result, Failure), result
    found: Problems = result.failure()
    return found


def error_text(found: Problems) -> str:
    """Everything a ``StateValidationError`` built from ``found`` would show."""
    error = StateValidationError("account", "acc-1", dict(found), "state")
    return f"{error} {error!r} {error.args!r} {dict(error.field_errors)!r}"


def test_build_schema_caches_fields_in_order() -> None:
    """A schema lists the state's fields in definition order and its sensitive ones."""
    schema = schema_of(Account, ("password",))
    assert schema.fields == ("name", "password", "labels", "ratio")
    assert schema.field_set == frozenset(schema.fields)
    assert schema.sensitive == frozenset({"password"})
    assert schema.state_class is Account


@pytest.mark.parametrize(("state", "got"), [(int, "int"), (Incident("open"), "Incident")])
def test_build_schema_refuses_non_attrs_states(state: object, got: str) -> None:
    """A state that is not an attrs class is a ``DefinitionError`` ending ``(got …)``."""
    result = build_schema("kind", state, (), make_converter())
    assert isinstance(result, Failure)
    error = result.failure()
    assert isinstance(error, DefinitionError)
    assert str(error).endswith(f"(got {got})")
    assert '"kind"' in str(error)


def test_build_schema_refuses_unknown_sensitive_fields() -> None:
    """Sensitive names that are not fields are an ``UnknownFieldError`` naming them."""
    result = build_schema("kind", Account, ("password", "pin"), make_converter())
    assert isinstance(result, Failure)
    error = result.failure()
    assert isinstance(error, UnknownFieldError)
    assert "'pin'" in str(error)
    assert '"kind"' in str(error)


def test_a_single_sensitive_name_may_be_a_bare_string() -> None:
    """``sensitive="password"`` names one field, not eight letters."""
    assert schema_of(Account, "password").sensitive == frozenset({"password"})  # type: ignore[arg-type]


def test_validate_accepts_an_instance() -> None:
    """An instance validates to itself and its document."""
    state = Incident("open", 2)
    assert schema_of(Incident).validate(state) == Success(
        (state, {"status": "open", "severity": 2, "labels": {}})
    )


def test_validate_structures_a_mapping_and_fills_defaults() -> None:
    """A mapping is structured into the state class with defaults filled in."""
    result = schema_of(Incident).validate({"status": "resolved"})
    assert result == Success(
        (Incident("resolved"), {"status": "resolved", "severity": 1, "labels": {}})
    )


def test_validate_rejects_unknown_keys() -> None:
    """Unknown keys in a mapping are refused."""
    assert problems(schema_of(Incident).validate({"status": "open", "zeta": 1})) == (
        ("$", "unknown fields: zeta"),
    )


def test_validate_rejects_nan_in_a_mapping_and_in_an_instance() -> None:
    """NaN is refused whether it arrives in a mapping or inside an instance."""
    schema = schema_of(Account)
    raw = {"name": "ada", "password": "12345678", "ratio": math.nan}
    assert [path for path, _ in problems(schema.validate(raw))] == ["ratio"]
    instance = Account("ada", "12345678", ratio=math.inf)
    assert [path for path, _ in problems(schema.validate(instance))] == ["ratio"]


def test_validate_rejects_other_values() -> None:
    """A value that is neither an instance nor a mapping is refused as a whole."""
    assert problems(schema_of(Incident).validate(["open"])) == (
        ("$", "expected Incident or a mapping (got list)"),
    )


def test_validate_reports_a_state_that_cannot_be_unstructured() -> None:
    """An instance holding a naive datetime is refused, not crashed on."""

    @attrs.frozen
    class Meeting:
        """A state holding one datetime."""

        at: datetime

    found = problems(schema_of(Meeting).validate(Meeting(datetime(2024, 1, 1))))  # noqa: DTZ001
    assert found[0][0] == "$"
    assert "naive" in found[0][1]
    assert schema_of(Meeting).validate(Meeting(datetime(2024, 1, 1, tzinfo=UTC))) == Success(
        (Meeting(datetime(2024, 1, 1, tzinfo=UTC)), {"at": "2024-01-01T00:00:00.000000Z"})
    )


def test_validator_messages_mask_run_secrets() -> None:
    """An attrs validator quoting a run secret shows it masked."""
    secrets = SecretSet.of(["hunter22"])
    found = problems(schema_of(Incident).validate({"status": "hunter22"}, secrets))
    assert [path for path, _ in found] == ["status"]
    assert "****" in found[0][1]
    assert "hunter22" not in error_text(found)


def test_problems_about_a_sensitive_field_are_withheld() -> None:
    """Whatever is wrong with a sensitive field, its reason is withheld."""
    found = problems(schema_of(Account, ("password",)).validate({"name": "ada", "password": "pw1"}))
    assert found == (("password", WITHHELD),)
    assert "pw1" not in error_text(found)


def test_any_reason_quoting_a_sensitive_value_is_withheld() -> None:
    """A reason about another field that quotes the sensitive value is withheld too."""
    raw = {"name": "xlongpassword", "password": "longpassword"}
    found = problems(schema_of(Account, ("password",)).validate(raw))
    assert found == (("$", WITHHELD),)
    assert "longpassword" not in error_text(found)


def test_a_path_holding_a_sensitive_value_is_withheld() -> None:
    """A dict key equal to the sensitive value never shows in a problem's path."""
    raw = {"name": "ada", "password": "longpassword", "labels": {"longpassword": "x"}}
    found = problems(schema_of(Account, ("password",)).validate(raw))
    assert [reason for _, reason in found] == [WITHHELD]
    assert "longpassword" not in error_text(found)


def test_a_path_holding_a_run_secret_is_masked() -> None:
    """A dict key holding a run secret shows masked in the problem's path."""
    secrets = SecretSet.of(["hunter22"])
    found = problems(
        schema_of(Incident).validate({"status": "open", "labels": {"hunter22": "x"}}, secrets)
    )
    assert [path for path, _ in found] == ["labels['****']"]
    assert "hunter22" not in error_text(found)


@pytest.mark.parametrize("secret", ["back\\slash", "new\nline", "both'\"quotes", "tab\there"])
def test_run_secrets_escaped_by_repr_are_masked(secret: str) -> None:
    """A run secret escaped by ``repr`` in a validator message is masked too."""
    secrets = SecretSet.of([secret])
    found = problems(schema_of(Incident).validate({"status": secret}, secrets))
    text = error_text(found)
    assert secret not in text
    assert repr(secret)[1:-1] not in text


def test_sensitive_values_escaped_by_repr_are_withheld() -> None:
    """A sensitive value with characters ``repr`` escapes is still recognised."""
    raw = {"name": "ada", "password": "long\\pass\nword", "labels": {"long\\pass\nword": "x"}}
    found = problems(schema_of(Account, ("password",)).validate(raw))
    text = error_text(found)
    assert "long\\pass\nword" not in text
    assert repr("long\\pass\nword")[1:-1] not in text


def test_redaction_keeps_problems_that_reveal_nothing() -> None:
    """Reasons without a secret or sensitive value are kept verbatim."""
    found = problems(
        schema_of(Account, ("password",)).validate(
            {"name": "ada", "password": "12345678", "ratio": "x"}
        )
    )
    assert found == (("ratio", "TypeError: expected a number, got str"),)

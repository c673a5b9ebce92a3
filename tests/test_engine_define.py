"""SPEC §1 — defining a kind: the checks, their order, and that failures register nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from reactive_entities import (
    DefinitionError,
    Engine,
    InvalidReadError,
    UnknownFieldError,
    UnknownKindError,
    compose,
)
from reactive_entities.testing.examples import Incident


def _read(ids: Any) -> dict[str, Incident]:
    return {}


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh in-memory engine."""
    with compose.in_memory() as engine:
        yield engine


@pytest.mark.parametrize(
    "kind",
    ["", " ", "in cident", "a:b", "-lead", "_lead", ".lead", "x" * 65, "tab\t", "é", "new\nline"],
)
def test_spec_1_bad_kind_names_raise_definition_error(engine: Engine, kind: str) -> None:
    """SPEC §1.1: a kind must match [A-Za-z0-9][A-Za-z0-9_.-]* within 64 characters."""
    with pytest.raises(DefinitionError):
        engine.define_entity(kind, Incident, read=_read)
    assert engine.kinds() == ()


@pytest.mark.parametrize("kind", [None, 5, b"incident", ("incident",)])
def test_spec_1_non_str_kind_raises_definition_error(engine: Engine, kind: object) -> None:
    """SPEC §1.1: a non-str kind is a DefinitionError (also a ValueError)."""
    with pytest.raises(DefinitionError) as caught:
        engine.define_entity(kind, Incident, read=_read)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert engine.kinds() == ()


@pytest.mark.parametrize("kind", ["a", "A1", "incident", "it.v2", "x-y_z", "9", "x" * 64])
def test_spec_1_good_kind_names_are_accepted(engine: Engine, kind: str) -> None:
    """SPEC §1.1: names of 1–64 allowed characters are accepted."""
    handle = engine.define_entity(kind, Incident, read=_read)
    assert handle.kind == kind
    assert engine.kinds() == (kind,)


def test_spec_1_duplicate_kind_message(engine: Engine) -> None:
    """SPEC §1.2: a second definition raises with `duplicate kind "<kind>"` and keeps the first."""
    first = engine.define_entity("incident", Incident, read=_read)
    with pytest.raises(DefinitionError, match='duplicate kind "incident"'):
        engine.define_entity("incident", Incident, read=_read)
    assert engine.handle("incident") is first


def test_spec_1_kinds_compare_exactly(engine: Engine) -> None:
    """SPEC §13.6: `incident` and `Incident` are different kinds."""
    engine.define_entity("incident", Incident, read=_read)
    engine.define_entity("Incident", Incident, read=_read)
    assert engine.kinds() == ("incident", "Incident")


def test_spec_1_read_not_callable(engine: Engine) -> None:
    """SPEC §1.3: a non-callable read raises InvalidReadError, a TypeError and DefinitionError."""
    with pytest.raises(InvalidReadError) as caught:
        engine.define_entity("incident", Incident, read={"a": 1})  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, DefinitionError)
    assert engine.kinds() == ()


@pytest.mark.parametrize(("state", "name"), [(dict, "dict"), (int, "int"), ("Incident", "str")])
def test_spec_1_state_must_be_an_attrs_class(engine: Engine, state: object, name: str) -> None:
    """SPEC §1.4: a state that is not an attrs class: DefinitionError ending in (got <type>)."""
    with pytest.raises(DefinitionError) as caught:
        engine.define_entity("incident", state, read=_read)  # type: ignore[arg-type]
    assert str(caught.value).endswith(f"(got {name})")
    assert engine.kinds() == ()


def test_spec_1_attrs_instance_is_not_a_class(engine: Engine) -> None:
    """SPEC §1.4: an attrs *instance* is rejected naming its type."""
    with pytest.raises(DefinitionError, match=r"\(got Incident\)$"):
        engine.define_entity("incident", Incident("open", "low"), read=_read)  # type: ignore[arg-type]


def test_spec_1_unknown_sensitive_field(engine: Engine) -> None:
    """SPEC §1.5: a sensitive name that is not a field raises UnknownFieldError naming it."""
    with pytest.raises(UnknownFieldError, match="'password'") as caught:
        engine.define_entity("incident", Incident, read=_read, sensitive=["token", "password"])
    assert isinstance(caught.value, LookupError)
    assert engine.kinds() == ()


def test_spec_1_checks_run_in_order(engine: Engine) -> None:
    """SPEC §1: with several problems, the earliest check in SPEC order wins."""
    with pytest.raises(DefinitionError) as bad_kind:
        engine.define_entity("bad kind", int, read=None, sensitive=["nope"])  # type: ignore[arg-type]
    assert not isinstance(bad_kind.value, InvalidReadError)
    engine.define_entity("incident", Incident, read=_read)
    with pytest.raises(DefinitionError, match="duplicate"):
        engine.define_entity("incident", int, read=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidReadError):
        engine.define_entity("other", int, read=None)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"\(got int\)"):
        engine.define_entity("other", int, read=_read, sensitive=["nope"])  # type: ignore[arg-type]
    assert engine.kinds() == ("incident",)


def test_spec_1_kinds_returns_a_new_tuple_in_order(engine: Engine) -> None:
    """SPEC §1: kinds() lists kinds in registration order, a new tuple each call."""
    for kind in ("c", "a", "b"):
        engine.define_entity(kind, Incident, read=_read)
    first = engine.kinds()
    assert first == ("c", "a", "b")
    assert isinstance(first, tuple)
    engine.define_entity("d", Incident, read=_read)
    assert first == ("c", "a", "b")
    assert engine.kinds() == ("c", "a", "b", "d")


def test_spec_1_handle_unknown_kind(engine: Engine) -> None:
    """SPEC §1: handle() of an undefined kind raises UnknownKindError (a LookupError)."""
    engine.define_entity("incident", Incident, read=_read)
    with pytest.raises(UnknownKindError, match='"Incident"') as caught:
        engine.handle("Incident")
    assert isinstance(caught.value, LookupError)


def test_spec_1_handle_metadata(engine: Engine) -> None:
    """A handle exposes its kind, state class, fields and sensitive fields."""
    handle = engine.define_entity("incident", Incident, read=_read, sensitive=("token",))
    assert engine.handle("incident") is handle
    assert handle.state_class is Incident
    assert handle.fields == tuple(a.name for a in attrs.fields(Incident))
    assert handle.sensitive == frozenset({"token"})

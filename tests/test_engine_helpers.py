"""SPEC §10 — derivers, payload mappers, write_through/remove_through, declarations."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from reactive_entities import (
    ChangeEvent,
    DefinitionError,
    Engine,
    InvalidArgumentError,
    NonReactiveDeclaration,
    remove_through,
    write_through,
)
from reactive_entities import compose as compose_module
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.examples import Incident, define_incidents

T = __import__("datetime").datetime(2024, 1, 1, tzinfo=__import__("datetime").UTC)


def _event(kind: str = "incident", run_id: str | None = None) -> ChangeEvent:
    return make_plan(kind, "inc-1", None, {"status": "open"}, run_id=run_id).event(T)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An in-memory engine."""
    with compose_module.in_memory() as engine:
        yield engine


def test_spec_10_derive_dedupes_in_first_seen_order(engine: Engine) -> None:
    """SPEC §10: ids from each deriver in registration order, de-duplicated, non-empty str."""
    engine.register_deriver("incident", lambda e: ["sys-2", "sys-1", "sys-2"])
    engine.register_deriver("incident", lambda e: ["", "sys-3", "sys-1", 7])  # type: ignore[list-item]
    engine.register_deriver("other", lambda e: ["never"])
    assert engine.derive(_event()) == ("sys-2", "sys-1", "sys-3")


def test_spec_10_same_deriver_twice_is_one_registration(engine: Engine) -> None:
    """SPEC §10: registering the same function twice registers it once."""

    def derive(event: ChangeEvent) -> list[str]:
        return ["a", "b"]

    engine.register_deriver("incident", derive)
    engine.register_deriver("incident", derive)
    calls: list[str] = []

    def counting(event: ChangeEvent) -> list[str]:
        calls.append("x")
        return []

    engine.register_deriver("incident", counting)
    assert engine.derive(_event()) == ("a", "b")
    assert calls == ["x"]


def test_spec_10_failing_deriver_is_skipped_and_logged_masked(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC §10/§13.1: a raising deriver is skipped and logged, masked with run secrets."""
    engine.secrets.register("run-1", ["deriver-secret"])

    def broken(event: ChangeEvent) -> list[str]:
        raise ValueError("leaked deriver-secret in message")

    engine.register_deriver("incident", broken)
    engine.register_deriver("incident", lambda e: ["ok"])
    with caplog.at_level(logging.WARNING):
        assert engine.derive(_event(run_id="run-1")) == ("ok",)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "leaked ****" in text
    assert "deriver-secret" not in text
    assert all(r.levelno >= logging.WARNING for r in caplog.records)


def test_spec_10_payload_mapper(engine: Engine) -> None:
    """SPEC §10: payload() maps through the kind's mapper, None without one."""

    def to_payload(event: ChangeEvent) -> dict[str, object]:
        return {"id": event.entity_id, "op": event.op}

    engine.register_deriver("incident", lambda e: [], to_payload)
    engine.register_deriver("incident", lambda e: ["x"], to_payload)  # same mapper: fine
    assert engine.payload(_event()) == {"id": "inc-1", "op": "create"}
    assert engine.payload(_event("other")) is None


def test_spec_10_second_different_payload_mapper_registers_nothing(engine: Engine) -> None:
    """SPEC §10: a second different mapper raises DefinitionError and registers nothing."""
    engine.register_deriver("incident", lambda e: ["a"], lambda e: {"v": 1})

    def new_deriver(event: ChangeEvent) -> list[str]:
        return ["b"]

    with pytest.raises(DefinitionError, match="payload mapper"):
        engine.register_deriver("incident", new_deriver, lambda e: {"v": 2})
    assert engine.derive(_event()) == ("a",)
    assert engine.payload(_event()) == {"v": 1}


def test_spec_10_register_deriver_validates(engine: Engine) -> None:
    """register_deriver checks the kind name and that the functions are callable."""
    with pytest.raises(DefinitionError):
        engine.register_deriver("bad kind", lambda e: [])
    with pytest.raises(InvalidArgumentError):
        engine.register_deriver("incident", "nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        engine.register_deriver("incident", lambda e: [], 5)  # type: ignore[arg-type]


def test_spec_10_write_through_without_handle_runs_apply(engine: Engine) -> None:
    """SPEC §10: with no handle, write_through/remove_through just run apply, return None."""
    calls: list[str] = []
    assert write_through(None, "x", lambda: calls.append("w")) is None  # type: ignore[func-returns-value]
    assert remove_through(None, "x", lambda: calls.append("r")) is None  # type: ignore[func-returns-value]
    assert calls == ["w", "r"]


def test_spec_10_write_through_with_handle_delegates(engine: Engine) -> None:
    """SPEC §10: with a handle, write_through/remove_through delegate and return None."""
    handle, storage = define_incidents(engine)
    events: list[ChangeEvent] = []
    engine.subscribe(events.append)
    result = write_through(  # type: ignore[func-returns-value]
        handle, "i", storage.put("i", Incident("open", "low")), run_id="r-1"
    )
    assert result is None
    assert remove_through(handle, "i", storage.delete("i")) is None  # type: ignore[func-returns-value]
    assert [(e.op, e.run_id) for e in events] == [("create", "r-1"), ("remove", None)]


@pytest.mark.parametrize("reason", ["raw-sample", "sensitive", "externally-owned", "bookkeeping"])
def test_spec_10_declare_non_reactive_state(engine: Engine, reason: str) -> None:
    """SPEC §10: each allowed reason is recorded and listed as a tuple."""
    declared = engine.declare_non_reactive_state(table="samples", reason=reason, note="why")
    assert declared == NonReactiveDeclaration("samples", reason, "why")  # type: ignore[arg-type]
    assert engine.non_reactive_declarations() == (declared,)


@pytest.mark.parametrize(
    ("table", "reason"),
    [("samples", "because"), ("samples", ""), ("", "raw-sample"), (5, "raw-sample")],
)
def test_spec_10_bad_declaration(engine: Engine, table: object, reason: str) -> None:
    """SPEC §10: an unknown reason (or a bad table) raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        engine.declare_non_reactive_state(table=table, reason=reason)  # type: ignore[arg-type]
    assert engine.non_reactive_declarations() == ()


def test_spec_10_declarations_keep_order_and_dedupe(engine: Engine) -> None:
    """Declarations keep their order; declaring the same thing twice keeps one."""
    a = engine.declare_non_reactive_state(table="a", reason="bookkeeping")
    b = engine.declare_non_reactive_state(table="b", reason="sensitive", note=None)
    engine.declare_non_reactive_state(table="a", reason="bookkeeping")
    assert engine.non_reactive_declarations() == (a, b)

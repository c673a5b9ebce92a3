"""SPEC §4, §13.1, §13.2 — no run secret reaches an event, a history row, a log line or an
exception message, for random states and secrets (hypothesis)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reactive_entities import ChangeEvent, StateValidationError, compose
from reactive_entities.domain.secret_set import MIN_SECRET_LENGTH
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.secrecy import (
    ALPHABET,
    LOCALS_ALPHABET,
    PLACEHOLDER,
    incidents_and_secrets,
    invalid_incident_states,
    leaks,
    texts,
    without_generated,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incidents_and_secrets())
def test_no_secret_in_events_rows_or_logs(
    caplog: pytest.LogCaptureFixture, case: tuple[list[Incident], list[str]]
) -> None:
    """Random writes of a run: events, history, log lines and handler failures are masked."""
    states, secrets = case
    caplog.clear()
    with caplog.at_level(logging.DEBUG), compose.in_memory(log_events=True) as engine:
        handle, storage = define_incidents(engine)
        engine.secrets.register("run-1", secrets)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)

        def failing(event: ChangeEvent) -> None:
            quoted = [json.dumps(secrets), repr(secrets), repr(repr(secrets))]
            raise RuntimeError(f"handler saw {quoted} and {event.to_dict()}")

        engine.subscribe(failing)
        engine.register_deriver(
            "incident", lambda e: (_ for _ in ()).throw(ValueError(str(secrets)))
        )
        for state in states:
            handle.mutate("inc-1", storage.put("inc-1", state), run_id="run-1")
        for event in events:
            engine.derive(event)
        handle.remove("inc-1", storage.delete("inc-1"), run_id="run-1")

        # Change ids and stamps are generated, not data: a secret spelling part of one
        # ("0000" in a random change id) is no leak.
        dumped = without_generated(
            json.dumps([e.to_dict() for e in events], ensure_ascii=False), events
        )
        assert not leaks(dumped, secrets)
        for row in handle.history("inc-1"):
            assert not leaks(json.dumps([repr(row.from_value), row.to_value]), secrets)
        for record in caplog.records:
            # A secret that is part of the library's fixed wording ("fail" in "failed")
            # is not data that leaked: only secrets absent from the template are judged.
            judged = [s for s in secrets if s not in str(record.msg)]
            assert not leaks(without_generated(record.getMessage(), events), judged)
            assert record.exc_info is None
        assert all(e.next is None or e.next["token"] == "****" for e in events)
        assert all(e.prev is None or e.prev["token"] == "****" for e in events)
        token_rows = handle.history("inc-1", field="token")
        assert all(r.to_value == "****" and r.masked for r in token_rows)


def _validation_error_texts(handle: Any, value: str, pin: str, run_id: str | None) -> str:
    """Everything the errors of four invalid states holding ``value`` and ``pin`` say."""
    seen: list[str] = []
    for bad in invalid_incident_states(value, pin):
        with pytest.raises(StateValidationError) as caught:
            handle.mutate("inc-1", lambda bad=bad: bad, run_id=run_id)
        error = caught.value
        assert error.__cause__ is None
        assert error.__context__ is None
        seen += [str(error), repr(error), *error.field_errors, *error.field_errors.values()]
    return "\n".join(seen)


@settings(max_examples=60)
@given(secret=st.text(ALPHABET, min_size=MIN_SECRET_LENGTH, max_size=12), pin=texts)
def test_no_secret_or_sensitive_value_in_validation_errors(secret: str, pin: str) -> None:
    """SPEC §13.2: StateValidationError never quotes a run secret or a sensitive value."""
    with compose.in_memory() as engine:
        handle, _ = define_incidents(engine)
        # What the messages say besides data — the library's wording, the kind and id,
        # the allowed values: a secret that is part of it is not data that leaked.
        assume(secret not in _validation_error_texts(handle, PLACEHOLDER, PLACEHOLDER, None))
        engine.secrets.register("run-1", [secret])
        assert secret not in _validation_error_texts(handle, secret, pin, "run-1")


def _registered(engine: Any, values: list[str]) -> None:
    engine.secrets.register("run-1", values)


@settings(max_examples=40)
@given(st.lists(st.text(LOCALS_ALPHABET, min_size=MIN_SECRET_LENGTH, max_size=12), max_size=80))
def test_no_secret_in_captured_locals_of_failing_calls(values: list[str]) -> None:
    """SPEC §16.3: tracebacks of a failing mutate or register, locals captured, hold no
    run secret in any escaped form (small sets and automaton-sized ones alike)."""
    import traceback

    def formatted(error: BaseException) -> str:
        exception = traceback.TracebackException.from_exception(error, capture_locals=True)
        # The test's own frames hold the drawn values; the library's frames are checked.
        return "".join(
            f"{frame.filename}: {frame.locals}\n"
            for frame in exception.stack
            if frame.locals is not None and "test_engine_secrecy" not in frame.filename
        )

    engine = compose.in_memory()
    handle, _ = define_incidents(engine)
    _registered(engine, values)

    def apply() -> Incident:
        raise RuntimeError("plugin failed")

    texts = []
    try:
        handle.mutate("inc-1", apply, run_id="run-1")
    except RuntimeError as error:
        texts.append(formatted(error))
    engine.close()
    try:
        engine.secrets.register("run-1", values)
    except Exception as error:
        texts.append(formatted(error))
    assert len(texts) == 2
    assert not leaks("\n".join(texts), values)

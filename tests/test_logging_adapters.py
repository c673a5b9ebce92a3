"""The logging adapters: one structured record per change, DEBUG call logs, never a secret."""

from __future__ import annotations

import logging

import pytest

from reactive_entities import compose
from reactive_entities.adapters.logging import (
    LoggedEmitter,
    LoggedSecretRegistry,
    LoggedStore,
)
from reactive_entities.adapters.memory import (
    InMemoryEntityStore,
    InMemorySecretRegistry,
    InProcessEmitter,
)
from reactive_entities.testing.examples import Incident, define_incidents

SECRET = "correct-horse-battery"


def _failing_apply() -> Incident:
    raise RuntimeError("apply failed")


def test_logging_emitter_one_structured_masked_record(caplog: pytest.LogCaptureFixture) -> None:
    """log_events=True: one INFO record per change, carrying the masked event dict."""
    with (
        caplog.at_level(logging.INFO, "reactive_entities.events"),
        compose.in_memory(log_events=True) as engine,
    ):
        handle, storage = define_incidents(engine)
        engine.secrets.register("run-1", [SECRET])
        handle.mutate(
            "i", storage.put("i", Incident("open", "low", f"t {SECRET}", "tok")), run_id="run-1"
        )
        handle.mutate("i", storage.patch("i", status="resolved"), run_id="run-1")
        handle.mutate("i", storage.patch("i", status="resolved"))  # no-op: no record
    records = [r for r in caplog.records if r.name == "reactive_entities.events"]
    assert len(records) == 2
    first = records[0]
    assert first.levelno == logging.INFO
    assert "create incident:i" in first.getMessage()
    event = first.event  # type: ignore[attr-defined]
    assert event["next"]["title"] == "t ****"
    assert event["next"]["token"] == "****"
    assert all(SECRET not in r.getMessage() and SECRET not in str(r.__dict__) for r in records)


def test_logging_emitter_is_silent_when_level_disabled(caplog: pytest.LogCaptureFixture) -> None:
    """A disabled level costs nothing and logs nothing."""
    logger = logging.getLogger("test.quiet")
    logger.setLevel(logging.ERROR)
    with compose.in_memory(log_events=True, logger=logger) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("i", storage.put("i", Incident("open", "low")))
    assert [r for r in caplog.records if r.name == "test.quiet"] == []


def test_logged_decorators_log_calls_with_durations_and_no_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged* wrappers log each port and transaction call at DEBUG, timed, never a value."""
    logger = logging.getLogger("test.calls")
    store = LoggedStore(InMemoryEntityStore(), logger)
    secrets = LoggedSecretRegistry(InMemorySecretRegistry(), logger)
    hub = InProcessEmitter()
    with (
        caplog.at_level(logging.DEBUG, "test.calls"),
        compose.in_memory(
            store=store, secrets=secrets, emitter=LoggedEmitter(hub, logger)
        ) as engine,
    ):
        handle, storage = define_incidents(engine)
        engine.secrets.register("run-1", [SECRET])
        handle.mutate("i", storage.put("i", Incident("open", "low", SECRET)), run_id="run-1")
        with pytest.raises(RuntimeError, match="apply failed"):
            handle.mutate("i", _failing_apply)
        handle.history("i")
        handle.transition_count("i", "status", window=__import__("datetime").timedelta(1))
    messages = [r.getMessage() for r in caplog.records if r.name == "test.calls"]
    assert any(m.startswith("secrets.register run=run-1 values=1 ok in") for m in messages)
    assert any(m.startswith("store.begin ok in") for m in messages)
    assert any(m.startswith("store.lock incident:i ok in") for m in messages)
    assert any(m.startswith("store.record create incident:i rows=5 ok in") for m in messages)
    assert any(m.startswith("store.commit ok in") for m in messages)
    assert any(m.startswith("store.rollback ok in") for m in messages)
    assert any(m.startswith("emitter.emit create incident:i ok in") for m in messages)
    assert any(m.startswith("store.transitions incident:i ok") for m in messages)
    assert any(m.startswith("store.count_transitions incident:i.status ok") for m in messages)
    assert all("µs" in m for m in messages)
    assert all(SECRET not in m for m in messages)


def test_logged_store_reports_failures(caplog: pytest.LogCaptureFixture) -> None:
    """A failing call is logged as failed and the error still propagates."""

    class Broken(InMemoryEntityStore):
        def now(self):  # type: ignore[no-untyped-def]
            raise OSError("down")

    store = LoggedStore(Broken(), logging.getLogger("test.fail"))
    with caplog.at_level(logging.DEBUG, "test.fail"), pytest.raises(OSError, match="down"):
        store.now()
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["store.now failed"]

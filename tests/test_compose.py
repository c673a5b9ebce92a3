"""The composition root: fully wired engines, every adapter overridable, nothing at import."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from reactive_entities import ChangeEvent, Engine, InvalidArgumentError, StoreError, compose
from reactive_entities.adapters.memory import (
    InMemoryEntityStore,
    InMemorySecretRegistry,
    ManualClock,
)
from reactive_entities.domain.documents import make_converter
from reactive_entities.testing.examples import Incident, define_incidents


class Recording:
    """A custom emitter that records what it gets."""

    def __init__(self) -> None:
        self.sent: list[ChangeEvent] = []

    def emit(self, event: ChangeEvent) -> None:
        self.sent.append(event)


def test_in_memory_returns_a_working_engine() -> None:
    """compose.in_memory() alone is enough to define, mutate and query."""
    engine = compose.in_memory()
    assert isinstance(engine, Engine)
    handle, storage = define_incidents(engine)
    handle.mutate("i", storage.put("i", Incident("open", "low")))
    assert len(handle.history("i")) == 5
    engine.close()


def test_every_adapter_can_be_replaced() -> None:
    """clock, store, secrets, emitter and converter are all injectable."""
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = InMemoryEntityStore(clock)
    secrets = InMemorySecretRegistry()
    converter = make_converter()
    emitter = Recording()
    with compose.in_memory(
        clock=clock, store=store, secrets=secrets, emitter=emitter, converter=converter
    ) as engine:
        assert engine.store is store
        assert engine.secrets.registry is secrets  # behind the engine-bound view
        assert engine.converter is converter
        handle, storage = define_incidents(engine)
        subscribed: list[ChangeEvent] = []
        engine.subscribe(subscribed.append)
        handle.mutate("i", storage.put("i", Incident("open", "low")))
    assert emitter.sent == subscribed
    assert emitter.sent[0].occurred_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert store.changes_recorded == 1


def test_an_injected_clock_stamps_the_changes() -> None:
    """Without a store, compose.in_memory(clock=...) builds the store on that clock."""
    clock = ManualClock(datetime(2031, 5, 6, tzinfo=UTC))
    with compose.in_memory(clock=clock) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("i", storage.put("i", Incident("open", "low")))
        assert {r.transitioned_at for r in handle.history("i")} == {clock.now()}
        assert engine.store.now() == clock.now()


def test_in_memory_lock_timeout_bounds_the_wait() -> None:
    """A write waiting past ``lock_timeout`` for an entity gets StoreError naming it."""
    with compose.in_memory(lock_timeout=timedelta(milliseconds=100)) as engine:
        handle, storage = define_incidents(engine)
        failures: list[tuple[StoreError, float]] = []

        def contend() -> None:
            started = time.monotonic()
            try:
                handle.mutate("i", storage.put("i", Incident("open", "high")))
            except StoreError as error:
                failures.append((error, time.monotonic() - started))

        with engine.transaction() as tx:
            handle.mutate("i", storage.put("i", Incident("open", "low")), tx=tx)
            thread = threading.Thread(target=contend)
            thread.start()
            thread.join(timeout=10)
        [(error, waited)] = failures
        assert "incident:i" in str(error)
        assert waited >= 0.09
        assert handle.get("i") == Incident("open", "low")
        assert len(handle.history("i", field="severity")) == 1


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 5, 0.5, None], ids=repr)
def test_lock_timeout_must_be_a_positive_timedelta(bad: object) -> None:
    """Both compositions reject a lock_timeout that is not a positive timedelta, at once."""
    with pytest.raises(InvalidArgumentError, match="lock_timeout"):
        compose.in_memory(lock_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="lock_timeout"):
        compose.postgres("host=/nonexistent", lock_timeout=bad)  # type: ignore[arg-type]


def test_postgres_lock_timeout_reaches_the_store(pg_dsn: str, pg_schema: str) -> None:
    """compose.postgres(lock_timeout=...) configures the store's bound on lock waits."""
    wait = timedelta(milliseconds=250)
    with compose.postgres(pg_dsn, schema=pg_schema, lock_timeout=wait) as engine:
        assert getattr(engine.store, "lock_timeout", None) == wait


def test_failing_custom_emitter_does_not_fail_the_write() -> None:
    """A raising custom emitter is isolated: subscribers still get the event."""

    class Boom:
        def emit(self, event: ChangeEvent) -> None:
            raise RuntimeError("emitter down")

    with compose.in_memory(emitter=Boom()) as engine:
        handle, storage = define_incidents(engine)
        got: list[ChangeEvent] = []
        engine.subscribe(got.append)
        assert handle.mutate("i", storage.put("i", Incident("open", "low"))).status == "open"
    assert len(got) == 1


def test_engines_are_independent() -> None:
    """Two composed engines share nothing (kinds, secrets, subscriptions)."""
    a, b = compose.in_memory(), compose.in_memory()
    define_incidents(a)
    a.secrets.register("run", ["shared-secret"])
    assert b.kinds() == ()
    assert not b.secrets.secrets_for("run")
    a.close()
    b.close()


def test_importing_connects_to_nothing() -> None:
    """Importing the package and compose opens no connection and starts no thread."""
    code = (
        "import threading, socket\n"
        "opened = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or real(self, *a)\n"
        "import reactive_entities, reactive_entities.compose, reactive_entities.testing\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert opened == [], opened\n"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, timeout=60)

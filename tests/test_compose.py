"""The composition root: fully wired engines, every adapter overridable, nothing at import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from reactive_entities import ChangeEvent, Engine, compose
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

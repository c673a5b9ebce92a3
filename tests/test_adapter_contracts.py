"""The memory and logging adapters pass the public contract suites (``testing/``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest

from reactive_entities.adapters.logging import (
    LoggedEmitter,
    LoggedSecretRegistry,
    LoggedStore,
    LoggingEmitter,
)
from reactive_entities.adapters.memory import (
    FanOutEmitter,
    InMemoryEntityStore,
    InMemorySecretRegistry,
    InProcessEmitter,
    ManualClock,
    SystemClock,
)
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.ports import Clock, Emitter, EntityStore, SecretRegistry
from reactive_entities.testing import (
    ClockContract,
    EmitterContract,
    EntityStoreContract,
    SecretRegistryContract,
)


class TestInMemoryStore(EntityStoreContract):
    """``InMemoryEntityStore`` honours the store contract."""

    @pytest.fixture
    def store(self, clock: ManualClock) -> Iterator[EntityStore]:
        """The store under test."""
        yield InMemoryEntityStore(clock)


class TestLoggedStore(EntityStoreContract):
    """``LoggedStore`` wrapping the memory store honours the store contract."""

    @pytest.fixture
    def store(self, clock: ManualClock) -> Iterator[EntityStore]:
        """The store under test, with DEBUG logging on."""
        logger = logging.getLogger("test.logged_store")
        logger.setLevel(logging.DEBUG)
        yield LoggedStore(InMemoryEntityStore(clock), logger)


class _Collector:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []


class TestInProcessEmitter(EmitterContract):
    """``InProcessEmitter`` delivers to a subscriber as the contract demands."""

    @pytest.fixture
    def emitter(self) -> Iterator[Emitter]:
        """An emitter with one collecting subscriber."""
        hub = InProcessEmitter()
        collector = _Collector()
        hub.subscribe(collector.events.append)
        hub.collector = collector  # type: ignore[attr-defined]
        yield hub

    def delivered(self, emitter: Emitter) -> Sequence[ChangeEvent]:
        """What the subscriber received."""
        return emitter.collector.events  # type: ignore[attr-defined,no-any-return]


class TestFanOutAndLoggedEmitter(EmitterContract):
    """``FanOutEmitter`` and ``LoggedEmitter`` pass events through unchanged."""

    @pytest.fixture
    def emitter(self) -> Iterator[Emitter]:
        """A logged fan-out to a logging emitter and a subscribed hub."""
        hub = InProcessEmitter()
        collector = _Collector()
        hub.subscribe(collector.events.append)
        fan_out = FanOutEmitter([LoggingEmitter(), hub])
        logged = LoggedEmitter(fan_out)
        logged.collector = collector  # type: ignore[attr-defined]
        yield logged

    def delivered(self, emitter: Emitter) -> Sequence[ChangeEvent]:
        """What the hub's subscriber received."""
        return emitter.collector.events  # type: ignore[attr-defined,no-any-return]


class TestInMemorySecretRegistry(SecretRegistryContract):
    """``InMemorySecretRegistry`` honours the registry contract."""

    @pytest.fixture
    def registry(self) -> Iterator[SecretRegistry]:
        """The registry under test."""
        yield InMemorySecretRegistry()


class TestLoggedSecretRegistry(SecretRegistryContract):
    """``LoggedSecretRegistry`` honours the registry contract."""

    @pytest.fixture
    def registry(self) -> Iterator[SecretRegistry]:
        """The wrapped registry under test."""
        yield LoggedSecretRegistry(InMemorySecretRegistry())


class TestSystemClock(ClockContract):
    """The system clock honours the clock contract."""

    @pytest.fixture
    def clock(self) -> Iterator[Clock]:
        """The clock under test."""
        yield SystemClock()


class TestManualClock(ClockContract):
    """The manual clock honours the clock contract."""

    @pytest.fixture
    def clock(self) -> Iterator[Clock]:
        """The clock under test."""
        yield ManualClock()

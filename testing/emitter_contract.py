"""The ``Emitter`` contract: a pytest suite for emitter adapters.

An emitter is observable only through what it delivers, so the subclass provides the
``emitter`` fixture and a ``delivered`` method returning what reached its destination::

    class TestMyEmitter(EmitterContract):
        @pytest.fixture
        def emitter(self):
            yield MyEmitter()

        def delivered(self, emitter):
            return emitter.sent
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.json import Document
from reactive_entities.ports.emitter import Emitter
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.overrides import must_override

__all__ = ["EmitterContract", "sample_events"]


def sample_events(n: int, kind: str = "contract", entity_id: str = "e-1") -> list[ChangeEvent]:
    """``n`` distinct events of one entity: a create, then updates."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    events = []
    prev: Document | None = None
    for i in range(n):
        nxt: Document = {"status": f"s{i}", "n": i}
        events.append(make_plan(kind, entity_id, prev, nxt).event(t0 + timedelta(seconds=i)))
        prev = nxt
    return events


class EmitterContract:
    """Behaviour every ``Emitter`` must show."""

    @pytest.fixture
    def emitter(self) -> Iterator[Emitter]:
        """Override: yield the emitter under test."""
        yield from must_override("subclass EmitterContract and provide an `emitter` fixture")

    def delivered(self, emitter: Emitter) -> Sequence[ChangeEvent]:
        """Override: the events that reached the emitter's destination, in order."""
        raise NotImplementedError("subclass EmitterContract and implement `delivered`")

    def test_delivers_each_event_once_in_order(self, emitter: Emitter) -> None:
        """Events arrive once each, in emission order, unchanged."""
        events = sample_events(5)
        for event in events:
            emitter.emit(event)
        assert list(self.delivered(emitter)) == events

    def test_does_not_mutate_events(self, emitter: Emitter) -> None:
        """Emitting leaves the event's documents untouched."""
        event = sample_events(2)[1]
        before = event.to_dict()
        emitter.emit(event)
        assert event.to_dict() == before

    def test_concurrent_emits_are_all_delivered(self, emitter: Emitter) -> None:
        """Emits from 8 threads all arrive (none lost, none duplicated)."""
        per_thread = 25
        batches = [sample_events(per_thread, entity_id=f"e-{t}") for t in range(8)]

        def run(batch: list[ChangeEvent]) -> None:
            for event in batch:
                emitter.emit(event)

        threads = [threading.Thread(target=run, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        got = list(self.delivered(emitter))
        assert sorted(e.change_id for e in got) == sorted(e.change_id for b in batches for e in b)
        for b in batches:  # per-entity order is kept
            ids = [e.change_id for e in got if e.entity_id == b[0].entity_id]
            assert ids == [e.change_id for e in b]

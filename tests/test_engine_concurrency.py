"""SPEC §11 in one process — 8 threads mutating one entity keep the log a chain."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import attrs
import pytest

from reactive_entities import ABSENT, ChangeEvent, compose
from reactive_entities.adapters.memory import InMemoryEntityStore
from reactive_entities.testing.examples import Incident, Status, define_incidents

STATUSES: tuple[Status, ...] = ("open", "investigating", "resolved")


def _run_once(threads: int = 8, writes_per_thread: int = 25) -> None:
    store = InMemoryEntityStore()
    with compose.in_memory(store=store) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        start = threading.Barrier(threads)
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                start.wait()
                for i in range(writes_per_thread):
                    status = STATUSES[(n + i) % 3]
                    title = f"t{n}-{i % 2}"

                    def apply(status: Status = status, title: str = title) -> Incident:
                        # A real plugin does I/O here: yield the GIL between the engine's
                        # read and this write, which is exactly where an unlocked writer
                        # would interleave.
                        time.sleep(0)
                        current = storage.rows.get("inc-1", Incident("open", "low"))
                        return storage.put(
                            "inc-1", attrs.evolve(current, status=status, title=title)
                        )()

                    handle.mutate("inc-1", apply)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert not errors

        rows = handle.history("inc-1")
        by_field: dict[str, list[object]] = defaultdict(list)
        for row in rows:
            previous = by_field[row.field]
            if previous:
                assert row.from_value == previous[-1], f"broken chain on {row.field}"
            else:
                assert row.from_value is ABSENT
            previous.append(row.to_value)
        assert len(events) == store.changes_recorded
        assert len({e.change_id for e in events}) == len(events)
        assert [e.change_id for e in events] == [
            c.change_id for c in store.changes("incident", "inc-1")
        ]
        final = handle.get("inc-1")
        assert final is not None
        assert by_field["status"][-1] == final.status
        assert by_field["title"][-1] == final.title


@pytest.mark.parametrize("run", range(20))
def test_spec_11_eight_threads_one_entity_keep_a_chain(run: int) -> None:
    """8 threads × 25 writes on one entity: every row's from_value is the previous to_value,
    and the event count equals the number of recorded changes (run 20 times)."""
    _run_once()

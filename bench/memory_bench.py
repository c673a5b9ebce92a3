"""In-memory scenarios (a)–(f) of BENCHMARKS.md §3.6, plus the no-library baseline (z)
and the store's memory per transition row.

Each scenario builds its fixture outside the timed region and returns the wall time of
the timed loop and the counts the quick mode checks.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import attrs
from returns.result import Success
from workload import (
    KIND,
    RUN_ID,
    SECRETS,
    It,
    entity_id,
    initial,
    initial_state,
    mutations,
    patch,
)

from reactive_entities import ChangeEvent, compose
from reactive_entities.adapters.memory import InMemoryEntityStore
from reactive_entities.domain.diff import diff
from reactive_entities.domain.masking import mask_deep
from reactive_entities.domain.schema import build_schema
from reactive_entities.domain.secret_set import SecretSet

IDS = 1000


@attrs.define
class Result:
    """One timed run: ops performed, seconds taken, and counts for the quick checks."""

    ops: int
    seconds: float
    counts: dict[str, Any]

    @property
    def ops_per_s(self) -> float:
        """Throughput."""
        return self.ops / self.seconds


def _engine_fixture(
    mapping: bool, feed: bool = False
) -> tuple[Any, Any, dict[str, Any], InMemoryEntityStore, list[int]]:
    if feed:
        # As composed by default: the store hands every commit to the in-memory feed.
        engine = compose.in_memory()
        store = engine.store
        assert isinstance(store, InMemoryEntityStore)
    else:
        # A store built without an ``on_commit`` hook: the engine has no change feed.
        store = InMemoryEntityStore()
        engine = compose.in_memory(store=store)
    engine.secrets.register(RUN_ID, SECRETS)
    events = [0]

    def on_event(event: ChangeEvent) -> None:
        # The workload's one no-op subscriber; counting is the cheapest observable work.
        events[0] += 1

    engine.subscribe(on_event)
    current: dict[str, Any] = {
        entity_id(k): (initial(k) if mapping else initial_state(k)) for k in range(IDS)
    }

    def read(ids: Any) -> dict[str, Any]:
        return {i: current[i] for i in ids if i in current}

    handle = engine.define_entity(KIND, It, read=read)
    return engine, handle, current, store, events


def mutate_run(
    n: int,
    *,
    run_id: str | None,
    noop: bool,
    mapping: bool,
    plan: list[tuple[str, Any]],
    feed: bool = True,
) -> Result:
    """Scenarios (a), (b), (c): ``n`` sequential mutates; instance or mapping apply.
    ``feed``: the engine as ``compose.in_memory()`` builds it, with its change feed
    (what users get); False: a store without one (the feed's overhead, by difference)."""
    engine, handle, current, store, events = _engine_fixture(mapping, feed)
    mutate = handle.mutate
    evolve = attrs.evolve
    gc.collect()
    started = time.perf_counter()
    if mapping:
        for eid, changes in plan[:n]:

            def apply(eid: str = eid, changes: dict[str, Any] = changes) -> dict[str, Any]:
                nxt = {**current[eid]} if noop else {**current[eid], **changes}
                current[eid] = nxt
                return nxt

            mutate(eid, apply, run_id=run_id)
    else:
        for eid, changes in plan[:n]:

            def evolve_apply(eid: str = eid, changes: dict[str, Any] = changes) -> It:
                nxt: It = evolve(current[eid]) if noop else evolve(current[eid], **changes)
                current[eid] = nxt
                return nxt

            mutate(eid, evolve_apply, run_id=run_id)
    seconds = time.perf_counter() - started
    rows = handle.history  # keep the engine alive until counted
    leaked = 0
    if run_id is not None:
        for k in range(min(IDS, n)):
            for row in rows(entity_id(k)):
                text = f"{row.from_value!r}{row.to_value!r}"
                leaked += any(s in text for s in SECRETS)
    counts = {"rows": store.rows_recorded, "events": events[0], "rows_with_secret": leaked}
    if feed:
        counts["feed_changes"] = engine.feed.head().sequence if engine.feed is not None else -1
    engine.close()
    return Result(n, seconds, counts)


def bare_plugin_run(n: int, *, plan: list[tuple[str, Any]]) -> Result:
    """Baseline (z): the plugin's own read + apply with no library in between."""
    current: dict[str, Any] = {entity_id(k): initial_state(k) for k in range(IDS)}
    evolve = attrs.evolve

    def read(ids: Any) -> dict[str, Any]:
        return {i: current[i] for i in ids if i in current}

    gc.collect()
    started = time.perf_counter()
    for eid, changes in plan[:n]:
        read([eid])
        current[eid] = evolve(current[eid], **changes)
    return Result(n, time.perf_counter() - started, {})


def diff_run(n: int) -> Result:
    """Scenario (d): ``diff`` on ``pairs[i % 1000]``."""
    pairs = []
    for k in range(1000):
        prev = initial(k)
        pairs.append((prev, {**prev, **patch(k, k % 5, 1)}))
    gc.collect()
    two = 0
    started = time.perf_counter()
    for i in range(n):
        prev, nxt = pairs[i % 1000]
        fields, _ = diff(prev, nxt)
        two += len(fields) == 2
    return Result(n, time.perf_counter() - started, {"calls_with_two_fields": two})


def mask_run(n: int) -> Result:
    """Scenario (e): ``mask_deep`` of ``initial(i % 1000)`` with the 5 run secrets."""
    secrets = SecretSet.of(SECRETS)
    docs = [initial(k) for k in range(1000)]
    gc.collect()
    leaked = 0
    started = time.perf_counter()
    for i in range(n):
        masked = mask_deep(docs[i % 1000], secrets)
    seconds = time.perf_counter() - started
    for doc in docs[: min(n, 1000)]:
        text = repr(mask_deep(doc, secrets))
        leaked += any(s in text for s in SECRETS)
    del masked
    return Result(n, seconds, {"docs_with_secret": leaked})


def validate_run(n: int) -> Result:
    """Scenario (f, extra): schema validation (structuring) of ``initial(i % 1000)``."""
    engine = compose.in_memory()
    schema = build_schema(KIND, It, (), engine.converter).unwrap()
    docs = [initial(k) for k in range(1000)]
    gc.collect()
    ok = 0
    started = time.perf_counter()
    for i in range(n):
        ok += isinstance(schema.validate(docs[i % 1000]), Success)
    seconds = time.perf_counter() - started
    engine.close()
    return Result(n, seconds, {"valid": ok})


def memory_per_row(rows_wanted: int) -> dict[str, float]:
    """Bytes the in-memory store retains per transition row after ``rows_wanted`` rows."""
    n = rows_wanted // 2
    plan = mutations(n, IDS)
    engine, handle, current, store, _ = _engine_fixture(False)
    evolve = attrs.evolve
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for eid, changes in plan:
        handle.mutate(eid, _setter(current, eid, evolve(current[eid], **changes)))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rows = store.rows_recorded
    engine.close()
    return {"rows": float(rows), "bytes_per_row": (after - before) / rows}


def _setter(current: dict[str, Any], eid: str, state: It) -> Callable[[], It]:
    def apply() -> It:
        current[eid] = state
        return state

    return apply

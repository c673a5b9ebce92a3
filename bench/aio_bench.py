"""The asyncio engine on PostgreSQL (issue 14), beside the sync engine in the same run.

Scenarios, on the tables and the reset of ``postgres_bench`` (IDS = 500, N = 5,000):

* (t) and (t8) — the sync engine's transactional mutate, 1 and 8 threads (as there);
* (at) — ``async with engine.transaction() as tx: await handle.mutate(eid, apply, tx=tx)``
  on ``reactive_entities.aio``, 1 task: ``read`` and ``apply`` are coroutines running the
  plugin's ``SELECT`` and upsert on ``tx.connection`` (a ``psycopg.AsyncConnection``);
* (at8) — (at) from 8 tasks on one event loop, shared out as (t8).

Target (issue 14): (at8) ops/s ≥ (t8)'s, round by round. Rounds are interleaved so they
share the machine's noise; every run starts from the same reset.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from postgres_bench import (
    CLIENTS,
    IDS,
    READ,
    SCHEMA,
    UPSERT,
    Bench,
    N,
    PgRun,
    _row_params,
)
from stats import latency_summary, median_range
from workload import KIND, It, mutations

from reactive_entities import aio
from reactive_entities.domain.events import ChangeEvent

SYNC = ("t", "t8")
ASYNC = ("at", "at8")
TASKS = {"at": 1, "at8": CLIENTS}
TEXT = {
    "t": "sync `mutate` in `engine.transaction()`, 1 thread",
    "t8": "sync, 8 threads",
    "at": "`await mutate` in `async with engine.transaction()`, 1 task",
    "at8": "async, 8 tasks on one event loop",
}
#: (at8) ops/s over (t8)'s.
TARGET = 1.0

AsyncConn = psycopg.AsyncConnection[Any]


async def read_on(ids: Sequence[str], connection: AsyncConn) -> dict[str, It]:
    """The plugin's ``SELECT`` on the connection it is given, rows mapped to ``It``."""
    cursor = await connection.execute(READ, (list(ids),), prepare=True)
    return {row[0]: It(*row[1:]) for row in await cursor.fetchall()}


async def upsert_on(connection: AsyncConn, eid: str, state: dict[str, Any]) -> It:
    """The plugin's upsert on ``tx.connection``; the returned row mapped back to ``It``."""
    cursor = await connection.execute(UPSERT, _row_params(eid, state), prepare=True)
    row = await cursor.fetchone()
    assert row is not None
    return It(*row[1:])


async def _async_run(bench: Bench, tasks: int, plan: list[tuple[str, dict[str, Any]]]) -> PgRun:
    """Time ``plan`` through the async engine with ``tasks`` tasks (after the reset)."""
    current = bench.current
    events: list[None] = []

    def on_event(event: ChangeEvent) -> None:
        events.append(None)

    async with await aio.compose.postgres(
        bench.dsn, schema=SCHEMA, pool_size=CLIENTS + 2, migrate=False
    ) as engine:
        await engine.subscribe(on_event)
        handle = engine.define_entity(KIND, It, read=read_on)
        begin = engine.transaction
        mutate = handle.mutate

        async def step(eid: str, changes: dict[str, Any]) -> None:
            async with begin() as tx:
                connection = tx.connection

                async def apply() -> It:
                    nxt = {**current[eid], **changes}
                    current[eid] = nxt
                    return await upsert_on(connection, eid, nxt)

                await mutate(eid, apply, tx=tx)

        shares: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(tasks)]
        for eid, changes in plan:
            shares[int(eid[3:]) % tasks].append((eid, changes))
        latencies: list[list[float]] = [[] for _ in range(tasks)]

        async def client(w: int) -> None:
            clock = time.perf_counter
            out = latencies[w]
            for eid, changes in shares[w]:
                started = clock()
                await step(eid, changes)
                out.append((clock() - started) * 1e6)

        # Warm the pool's connections (and their prepared statements) untimed.
        await asyncio.gather(*(engine.handle(KIND).get(eid) for eid, _ in plan[:tasks]))
        gc.collect()
        started = time.perf_counter()
        await asyncio.gather(*(client(w) for w in range(tasks)))
        seconds = time.perf_counter() - started
    counts = bench.counts()
    counts["events"] = len(events)
    merged = [us for out in latencies for us in out]
    return PgRun(len(plan), seconds, merged, counts)


def run_one(bench: Bench, scenario: str, plan: list[tuple[str, dict[str, Any]]]) -> PgRun:
    """One timed run of ``scenario`` from the reset."""
    if scenario in SYNC:
        return bench.run(scenario, plan)
    bench.reset()
    return asyncio.run(_async_run(bench, TASKS[scenario], plan))


def aio_section(bench: Bench, quick: bool, rounds: int) -> tuple[dict[str, Any], list[str]]:
    """Warm-up, then interleaved rounds of (t), (at), (t8), (at8)."""
    n = 200 if quick else N
    plan = mutations(n, IDS)
    order = ("t", "at", "t8", "at8")
    if not quick:
        for name in order:
            run_one(bench, name, plan)
    results: dict[str, list[PgRun]] = {name: [] for name in order}
    for r in range(1 if quick else rounds):
        for name in order:
            run = run_one(bench, name, plan)
            results[name].append(run)
            print(f"  round {r + 1} {name}: {run.ops_per_s:,.0f} ops/s", flush=True)
    section: dict[str, Any] = {"n_mutations": n, "scenarios": {}}
    problems: list[str] = []
    for name, runs in results.items():
        section["scenarios"][name] = {
            "what": TEXT[name],
            "ops_per_s": median_range([r.ops_per_s for r in runs]),
            "latency": latency_summary([us for r in runs for us in r.latencies_us]),
            "counts": runs[-1].counts,
        }
        counts = runs[-1].counts
        want = {
            "changes": n,
            "transitions": 2 * n,
            "events": n,
            "rows_matching_mirror": IDS,
            "rows_committed_with_change": min(n, IDS),
        }
        for key, value in want.items():
            if counts.get(key) != value:
                problems.append(f"aio ({name}) {key}: expected {value}, got {counts.get(key)}")
    for fast, slow in (("at", "t"), ("at8", "t8")):
        section[f"{fast}_over_{slow}"] = median_range(
            [a.ops_per_s / s.ops_per_s for a, s in zip(results[fast], results[slow], strict=True)]
        )
    ratio = section["at8_over_t8"]
    ratio["target"] = TARGET
    ratio["meets_target"] = ratio["median"] >= TARGET
    section["markdown"] = aio_markdown(section)
    return section, problems


def aio_markdown(section: dict[str, Any]) -> str:
    """The asyncio table."""
    lines = [
        "## asyncio on PostgreSQL (ops/s, median (min–max))",
        "",
        "| scenario | ops/s | p50 µs | p99 µs |",
        "|---|---|---|---|",
    ]
    for name, entry in section["scenarios"].items():
        ops = entry["ops_per_s"]
        latency = entry["latency"]
        lines.append(
            f"| ({name}) {entry['what']} | {ops['median']:,.0f} ({ops['min']:,.0f}–"
            f"{ops['max']:,.0f}) | {latency['p50_us']:,.0f} | {latency['p99_us']:,.0f} |"
        )
    one, eight = section["at_over_t"], section["at8_over_t8"]
    lines += [
        "",
        f"(at) over (t): {one['median']:.2f}× ({one['min']:.2f}–{one['max']:.2f}); "
        f"(at8) over (t8): {eight['median']:.2f}× ({eight['min']:.2f}–{eight['max']:.2f}), "
        f"target ≥ {TARGET:.1f}×: {'met' if eight['meets_target'] else 'missed'}.",
    ]
    return "\n".join(lines)


def run(quick: bool, rounds: int, dsn: str) -> dict[str, Any]:
    """The asyncio section on ``dsn``."""
    bench = Bench(dsn)
    try:
        started = time.perf_counter()
        section, problems = aio_section(bench, quick, rounds)
        section["seconds"] = time.perf_counter() - started
    finally:
        bench.close()
    return {"report": {"aio": section}, "problems": problems}

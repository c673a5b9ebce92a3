"""The change feed's figures (BENCHMARKS.md §4, issue 11): commit → handler latency in
another process, a Broadcast consumer's lag behind 8 writers, and the feed's overhead on
the in-memory mutate (a).

    run(quick, rounds, dsn) -> {"report": {"feed": ...}, "problems": [...]}

The consumer is a separate OS process: this file run as a script,

    python bench/feed_bench.py consume DSN SCHEMA CONSUMER EXPECTED TIMEOUT

opens an engine on the same schema, subscribes a handler to kind ``it`` with
``Broadcast()`` (``Broadcast(consumer=CONSUMER)`` when CONSUMER is not empty), prints
``ready``, and records for each change the time its handler was called; once EXPECTED
changes arrived (or after TIMEOUT seconds) it prints them as one JSON line and exits.
Both processes read ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for the whole
machine on Linux), so the parent subtracts its commit times from the consumer's times.

Scenarios (the PostgreSQL ones on their own schema ``re_feed_bench``, created fresh for
each; the plugin's state is a dict in the writing process, so the writers are as fast as
the library lets them be):

* **latency**: one client mutates N entities once each (N = 500; quick 50), one mutate
  every 20 ms so it measures latency, not throughput, after a few unrecorded warm-up
  mutates. Latency = the consumer's handler time − the time ``mutate`` returned (the
  commit is inside the call, so a change can reach the other process before the call
  returns: a few samples may be ≤ 0); also reported from the call's start (an upper
  bound). Targets: p50 ≤ 5 ms, p99 ≤ 50 ms (on an idle machine).
* **lag**: 8 writer threads, each over its own entities (client w takes the mutations
  with ``k % 8 == w``, as §3.7 (b)), mutate as fast as they can (N = 20,000 over 500
  entities; quick 1,000 over 200) while the consumer process counts. Run twice: an
  anonymous ``Broadcast()`` and a named ``Broadcast(consumer="bench-lag")`` (which
  stores its cursor after every change, and which ``engine.consumers()`` reports).
  Every 100 ms the parent samples its committed count and, for the named consumer,
  ``engine.consumers()``'s ``lag_changes`` / ``lag_seconds``. Afterwards the exact lag
  is computed from both processes' timestamps: committed − received at every instant
  (max, and at the 100 ms samples), the age of the oldest committed-but-unreceived
  change (max lag in seconds), each change's delay, and the time from the last
  writer's return to the consumer's last change (catch-up). Target: lag bounded.
* **overhead** (in-memory, BENCHMARKS §3.6 (a), N = 100,000; quick 2,000): the engine
  as ``compose.in_memory()`` composes it (the store feeds an in-memory feed) against one
  built on ``InMemoryEntityStore()`` without an ``on_commit`` hook (no feed: the
  fixture the in-memory section uses), same timed loop (``memory_bench.mutate_run``),
  interleaved rounds (which goes first alternates). Overhead = time per op with the
  feed over without it, − 1, per round. Target ≤ 5 %. On PostgreSQL the feed's cost
  (the change's ``xid`` and the ``pg_notify`` in the write transaction) is always
  inside the postgres section's (a): there is no feedless PostgreSQL engine.

Every scenario checks its own result (every change received exactly once, in feed order,
with the fields its mutation changed; the named consumer's reported lag back to 0; the
rows and feed length of the overhead runs), so ``--quick`` fails loudly.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import json
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import attrs
import memory_bench
import psycopg
from psycopg import sql
from stats import median_range, percentile
from workload import KIND, It, entity_id, initial_state, mutations, patch

from reactive_entities import Broadcast, ChangeEvent, compose
from reactive_entities.domain.position import Position
from reactive_entities.engine import Engine, EntityHandle

SCHEMA = "re_feed_bench"
WRITERS = 8
NAMED_CONSUMER = "bench-lag"
#: Latency: mutations (one per entity), warm-up mutates (unrecorded), spacing (s).
LATENCY_N = 500
LATENCY_N_QUICK = 50
LATENCY_WARMUP = 20
LATENCY_WARMUP_QUICK = 5
LATENCY_SPACING = 0.020
#: Lag: mutations over entities, 8 writers; sampling period (s).
LAG_N, LAG_IDS = 20_000, 500
LAG_N_QUICK, LAG_IDS_QUICK = 1_000, 200
SAMPLE_EVERY = 0.1
#: Overhead: in-memory mutates per run.
OVERHEAD_N = 100_000
OVERHEAD_N_QUICK = 2_000
#: Targets (BENCHMARKS §4).
P50_TARGET_MS = 5.0
P99_TARGET_MS = 50.0
OVERHEAD_TARGET = 0.05
#: How long the consumer process may take to start, and to receive everything.
READY_TIMEOUT = 60.0
CONSUMER_TIMEOUT = 600.0
CONSUMER_TIMEOUT_QUICK = 120.0

Plan = list[tuple[str, dict[str, Any]]]
#: One change as the consumer saw it: entity id, monotonic ns, changed fields, position.
Received = tuple[str, int, str, str]


# -- the consumer process ----------------------------------------------------------------


def _no_state(ids: Sequence[str]) -> dict[str, It]:
    """The consumer never writes: its kind needs a ``read`` all the same."""
    return {}


def consume(dsn: str, schema: str, consumer: str, expected: int, timeout: float) -> int:
    """Body of the consumer process (see the module docstring)."""
    clock = time.monotonic_ns
    received: list[Received] = []
    done = threading.Event()

    def handler(event: ChangeEvent) -> None:
        at = clock()
        fields = ",".join(sorted(event.changed_fields))
        received.append((event.entity_id, at, fields, str(event.position)))
        if len(received) >= expected:
            done.set()

    with compose.postgres(dsn, schema=schema, migrate=False, pool_size=2) as engine:
        engine.define_entity(KIND, It, read=_no_state)
        delivery = Broadcast(consumer=consumer) if consumer else Broadcast()
        engine.subscribe(handler, kind=KIND, delivery=delivery)
        print("ready", flush=True)
        finished = done.wait(timeout)
        if finished:
            time.sleep(0.2)  # anything delivered twice would arrive now
        got = list(received)
    print(json.dumps({"finished": finished, "received": got}), flush=True)
    return 0


def _start_consumer(dsn: str, consumer: str | None, expected: int, timeout: float) -> Consumer:
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "consume",
            dsn,
            SCHEMA,
            consumer or "",
            str(expected),
            str(timeout),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if line.strip() != "ready":
        process.kill()
        process.wait()
        raise RuntimeError(f"the consumer process did not start (said {line!r})")
    return Consumer(process, timeout)


@attrs.define
class Consumer:
    """The consumer process, started and subscribed."""

    process: subprocess.Popen[str]
    timeout: float

    def result(self) -> tuple[list[Received], list[str]]:
        """Wait for the process to report; what it received and what went wrong."""
        try:
            out, _ = self.process.communicate(timeout=self.timeout + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            return [], ["the consumer process did not finish"]
        problems = []
        if self.process.returncode != 0:
            problems.append(f"the consumer process exited with {self.process.returncode}")
        lines = out.strip().splitlines()
        if not lines:
            return [], [*problems, "the consumer process reported nothing"]
        report = json.loads(lines[-1])
        if not report["finished"]:
            problems.append("the consumer timed out before receiving every change")
        return [(e, int(at), f, p) for e, at, f, p in report["received"]], problems

    def kill(self) -> None:
        """Stop it if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- shared pieces -----------------------------------------------------------------------


def _fresh_engine(dsn: str, pool_size: int) -> Engine:
    """An engine on a newly created ``SCHEMA`` (so no consumer cursor survives a run)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    return compose.postgres(dsn, schema=SCHEMA, pool_size=pool_size)


def _drop_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def _plugin(engine: Engine, ids: int) -> tuple[EntityHandle[It], dict[str, It]]:
    """Kind ``it`` whose plugin state is a dict holding ``initial(k)`` for ``ids`` ids."""
    current = {entity_id(k): initial_state(k) for k in range(ids)}

    def read(wanted: Sequence[str]) -> dict[str, It]:
        return {i: current[i] for i in wanted if i in current}

    return engine.define_entity(KIND, It, read=read), current


def _apply(current: dict[str, It], eid: str, changes: dict[str, Any]) -> Callable[[], It]:
    def apply() -> It:
        nxt = attrs.evolve(current[eid], **changes)
        current[eid] = nxt
        return nxt

    return apply


def _match(plan: Plan, received: list[Received], extra: set[str]) -> tuple[list[int], list[str]]:
    """The consumer's time for each mutation of ``plan`` (matched per entity, in order:
    a Broadcast delivers each entity's changes in recording order), and the problems:
    missing, duplicated or unexpected changes, wrong fields, out of feed order.
    Changes of the ids in ``extra`` (warm-up) are expected once and otherwise ignored."""
    problems: list[str] = []
    by_entity: dict[str, list[tuple[int, str]]] = {}
    positions = []
    for eid, at, fields, position in received:
        by_entity.setdefault(eid, []).append((at, fields))
        positions.append(Position.parse(position))
    unordered = sum(1 for a, b in itertools.pairwise(positions) if not a < b)
    if unordered:
        problems.append(f"{unordered} changes arrived out of feed order (or twice)")
    times = [-1] * len(plan)
    taken: dict[str, int] = {}
    wrong = missing = 0
    for i, (eid, changes) in enumerate(plan):
        j = taken.get(eid, 0)
        taken[eid] = j + 1
        got = by_entity.get(eid, [])
        if j >= len(got):
            missing += 1
            continue
        at, fields = got[j]
        wrong += fields != ",".join(sorted(changes))
        times[i] = at
    surplus = sum(
        max(len(got) - taken.get(eid, 0), 0) for eid, got in by_entity.items() if eid not in extra
    )
    surplus += sum(max(len(by_entity.get(eid, [])) - 1, 0) for eid in extra)
    unknown = sum(1 for eid in extra if eid not in by_entity)
    for count, what in (
        (missing, "never received"),
        (surplus, "received more than once or not written"),
        (wrong, "received with other fields than written"),
        (unknown, "of the warm-up never received"),
    ):
        if count:
            problems.append(f"{count} changes {what}")
    return times, problems


def _ms_summary(ns: Sequence[int]) -> dict[str, float]:
    """p50, p99 (nearest rank), max, min and mean of durations in ns, as ms."""
    ordered = sorted(ns)
    if not ordered:
        return {"n": 0.0}
    return {
        "p50_ms": percentile(ordered, 50) / 1e6,
        "p99_ms": percentile(ordered, 99) / 1e6,
        "max_ms": ordered[-1] / 1e6,
        "min_ms": ordered[0] / 1e6,
        "mean_ms": statistics.fmean(ordered) / 1e6,
        "n": float(len(ordered)),
    }


# -- commit → handler latency ------------------------------------------------------------


def latency_scenario(dsn: str, quick: bool) -> tuple[dict[str, Any], list[str]]:
    """One client, one mutate every ``LATENCY_SPACING`` s; see the module docstring."""
    n = LATENCY_N_QUICK if quick else LATENCY_N
    warmup = LATENCY_WARMUP_QUICK if quick else LATENCY_WARMUP
    timeout = CONSUMER_TIMEOUT_QUICK if quick else CONSUMER_TIMEOUT
    plan = mutations(n, n)  # entity k once each
    warm = [(entity_id(n + j), patch(n + j, 0, 1)) for j in range(warmup)]
    engine = _fresh_engine(dsn, pool_size=4)
    try:
        handle, current = _plugin(engine, n + warmup)
        consumer = _start_consumer(dsn, None, n + warmup, timeout)
        try:
            clock = time.monotonic_ns
            for eid, changes in warm:
                handle.mutate(eid, _apply(current, eid, changes))
                time.sleep(LATENCY_SPACING)
            called = [0] * n
            returned = [0] * n
            gc.collect()
            began = time.monotonic()
            for i, (eid, changes) in enumerate(plan):
                wait = began + i * LATENCY_SPACING - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                apply = _apply(current, eid, changes)
                called[i] = clock()
                handle.mutate(eid, apply)
                returned[i] = clock()
            received, problems = consumer.result()
        finally:
            consumer.kill()
    finally:
        engine.close()
        _drop_schema(dsn)
    times, found = _match(plan, received, {eid for eid, _ in warm})
    problems += found
    ok = [i for i in range(n) if times[i] >= 0]
    section: dict[str, Any] = {
        "n": n,
        "warmup": warmup,
        "spacing_ms": LATENCY_SPACING * 1e3,
        "received": len(received),
        "from_return": _ms_summary([times[i] - returned[i] for i in ok]),
        "from_call": _ms_summary([times[i] - called[i] for i in ok]),
        "mutate": _ms_summary([returned[i] - called[i] for i in range(n)]),
        "received_before_return": sum(1 for i in ok if times[i] < returned[i]),
    }
    got = section["from_return"]
    if ok:
        section["meets_p50"] = got["p50_ms"] <= P50_TARGET_MS
        section["meets_p99"] = got["p99_ms"] <= P99_TARGET_MS
    return section, [f"feed latency: {p}" for p in problems]


# -- lag behind 8 writers ----------------------------------------------------------------


def lag_scenario(
    dsn: str, quick: bool, consumer_name: str | None
) -> tuple[dict[str, Any], list[str]]:
    """8 writers flat out, one consumer process; see the module docstring."""
    n = LAG_N_QUICK if quick else LAG_N
    ids = LAG_IDS_QUICK if quick else LAG_IDS
    timeout = CONSUMER_TIMEOUT_QUICK if quick else CONSUMER_TIMEOUT
    plan = mutations(n, ids)
    shares: list[list[int]] = [[] for _ in range(WRITERS)]
    for i in range(n):
        shares[(i % ids) % WRITERS].append(i)
    called = [0] * n
    returned = [0] * n
    progress = [0] * WRITERS
    samples: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    clock = time.monotonic_ns
    engine = _fresh_engine(dsn, pool_size=WRITERS + 2)
    try:
        handle, current = _plugin(engine, ids)
        consumer = _start_consumer(dsn, consumer_name, n, timeout)
        try:
            barrier = threading.Barrier(WRITERS + 1)
            stop_sampling = threading.Event()

            def writer(w: int) -> None:
                try:
                    mutate = handle.mutate
                    barrier.wait(timeout=60)
                    for i in shares[w]:
                        eid, changes = plan[i]
                        apply = _apply(current, eid, changes)
                        called[i] = clock()
                        mutate(eid, apply)
                        returned[i] = clock()
                        progress[w] += 1
                except BaseException as error:
                    errors.append(error)
                    barrier.abort()

            def sample() -> None:
                while True:
                    samples.append(_sample(engine, consumer_name, clock(), sum(progress)))
                    if stop_sampling.wait(SAMPLE_EVERY):
                        return

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
            for thread in threads:
                thread.start()
            gc.collect()
            sampler = threading.Thread(target=sample, name="bench-lag-sampler")
            with suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=60)
            started = clock()
            sampler.start()
            for thread in threads:
                thread.join()
            writers_done = clock()
            if errors:
                stop_sampling.set()
                raise errors[0]
            received, problems = consumer.result()
            stop_sampling.set()
            sampler.join()
            final = _sample(engine, consumer_name, clock(), sum(progress))
        finally:
            consumer.kill()
    finally:
        engine.close()
        _drop_schema(dsn)
    times, found = _match(plan, received, set())
    problems += found
    section = _lag_report(n, ids, consumer_name, started, writers_done, returned, times)
    for s in [*samples, final]:
        s["t_s"] = (s.pop("at_ns") - started) / 1e9
    section["parent_samples"] = samples
    section["final_sample"] = final
    reported = [s for s in samples if "reported_lag_changes" in s]
    if consumer_name is not None:
        if reported:
            section["reported_max_lag_changes"] = max(s["reported_lag_changes"] for s in reported)
            section["reported_max_lag_seconds"] = max(
                s["reported_lag_seconds"] or 0.0 for s in reported
            )
        if final.get("reported_lag_changes") != 0:
            problems.append(
                f"engine.consumers() still reports {final.get('reported_lag_changes')} changes"
                f" of lag for {consumer_name!r} after it received everything"
            )
    label = consumer_name or "anonymous"
    return section, [f"feed lag ({label}): {p}" for p in problems]


def _sample(engine: Engine, consumer: str | None, at: int, committed: int) -> dict[str, Any]:
    """The parent's view at ``at``: committed so far and, for a named consumer, the lag
    ``engine.consumers()`` reports."""
    out: dict[str, Any] = {"at_ns": at, "committed": committed}
    if consumer is None:
        return out
    try:
        status = next((c for c in engine.consumers() if c.name == consumer), None)
    except Exception as error:  # reported, not fatal: the next sample may work
        out["error"] = f"{type(error).__name__}: {error}"
        return out
    if status is not None:  # listed once it saved a cursor
        out["reported_lag_changes"] = status.lag_changes
        out["reported_lag_seconds"] = status.lag_seconds
    return out


def _lag_report(
    n: int,
    ids: int,
    consumer: str | None,
    started: int,
    writers_done: int,
    returned: list[int],
    received: list[int],
) -> dict[str, Any]:
    """Exact lag from both processes' timestamps (ns, one machine-wide clock)."""
    got = [i for i in range(n) if received[i] >= 0]
    commits = sorted(returned)
    arrivals = sorted(received[i] for i in got)
    last = arrivals[-1] if arrivals else writers_done
    # committed − received at every event (an arrival can precede its mutate's return).
    events = sorted([(t, 1) for t in commits] + [(t, -1) for t in arrivals])
    depth = max_depth = 0
    for _, step in events:
        depth += step
        max_depth = max(max_depth, depth)
    # At every 100 ms: lag in changes, and the age of the oldest committed change not
    # yet received (lag in seconds).
    by_commit = sorted(range(n), key=lambda i: returned[i])
    samples = []
    step_ns = int(SAMPLE_EVERY * 1e9)
    oldest = 0  # index into by_commit: everything before it was received by ``t``
    for t in range(started, max(last, writers_done) + step_ns, step_ns):
        committed = bisect.bisect_right(commits, t)
        arrived = bisect.bisect_right(arrivals, t)
        while oldest < n and 0 <= received[by_commit[oldest]] <= t:
            oldest += 1
        age = 0.0
        for i in itertools.islice(by_commit, oldest, None):
            if returned[i] > t:
                break
            if not 0 <= received[i] <= t:
                age = (t - returned[i]) / 1e9
                break
        samples.append(
            {
                "t_s": (t - started) / 1e9,
                "lag_changes": max(committed - arrived, 0),
                "lag_seconds": age,
            }
        )
    delays = [received[i] - returned[i] for i in got]
    writing = (writers_done - started) / 1e9
    return {
        "consumer": consumer or "anonymous Broadcast()",
        "n": n,
        "ids": ids,
        "writers": WRITERS,
        "received": len(got),
        "writers_seconds": writing,
        "writers_ops_per_s": n / writing if writing > 0 else 0.0,
        "consumer_seconds": (last - started) / 1e9,
        "max_lag_changes": max_depth,
        "max_lag_changes_sampled": max((s["lag_changes"] for s in samples), default=0),
        "max_lag_seconds": max((s["lag_seconds"] for s in samples), default=0.0),
        "catch_up_seconds": max(last - writers_done, 0) / 1e9,
        "delay": _ms_summary(delays),
        "samples": samples,
    }


# -- in-memory overhead ------------------------------------------------------------------


def overhead_section(quick: bool, rounds: int) -> tuple[dict[str, Any], list[str]]:
    """In-memory (a) with the default feed against no feed; interleaved rounds."""
    n = OVERHEAD_N_QUICK if quick else OVERHEAD_N
    plan = mutations(n, memory_bench.IDS)

    def run(feed: bool) -> memory_bench.Result:
        return memory_bench.mutate_run(
            n, run_id=None, noop=False, mapping=False, plan=plan, feed=feed
        )

    if not quick:
        run(False)
        run(True)
    runs: dict[bool, list[memory_bench.Result]] = {False: [], True: []}
    for r in range(1 if quick else rounds):
        for feed in (False, True) if r % 2 == 0 else (True, False):
            runs[feed].append(run(feed))
        print(
            f"  round {r + 1} overhead: no feed {1e6 / runs[False][-1].ops_per_s:.1f} µs/op,"
            f" feed {1e6 / runs[True][-1].ops_per_s:.1f} µs/op",
            flush=True,
        )
    overhead = [
        with_feed.seconds / without.seconds - 1
        for with_feed, without in zip(runs[True], runs[False], strict=True)
    ]
    section: dict[str, Any] = {
        "n": n,
        "rounds": len(overhead),
        "us_per_op_no_feed": median_range([1e6 / r.ops_per_s for r in runs[False]]),
        "us_per_op_feed": median_range([1e6 / r.ops_per_s for r in runs[True]]),
        "overhead": median_range(overhead),
        "target": OVERHEAD_TARGET,
        "meets_target": statistics.median(overhead) <= OVERHEAD_TARGET,
        "counts_feed": runs[True][-1].counts,
        "counts_no_feed": runs[False][-1].counts,
    }
    problems = []
    expect = {"rows": 2 * n, "events": n}
    for feed, counts in ((True, section["counts_feed"]), (False, section["counts_no_feed"])):
        want = {**expect, "feed_changes": n} if feed else expect
        for key, value in want.items():
            if counts.get(key) != value:
                label = "feed" if feed else "no feed"
                problems.append(
                    f"feed overhead ({label}) {key}: expected {value}, got {counts.get(key)}"
                )
    if "feed_changes" in section["counts_no_feed"]:
        problems.append("feed overhead: the feedless engine has a feed")
    return section, problems


# -- the section -------------------------------------------------------------------------


def run(quick: bool, rounds: int, dsn: str) -> dict[str, Any]:
    """Every feed scenario; a scenario that fails outright is a problem, not a crash."""
    section: dict[str, Any] = {}
    problems: list[str] = []
    scenarios: list[tuple[str, Callable[[], tuple[dict[str, Any], list[str]]]]] = [
        ("overhead", lambda: overhead_section(quick, rounds)),
        ("latency", lambda: latency_scenario(dsn, quick)),
        ("lag_anonymous", lambda: lag_scenario(dsn, quick, None)),
        ("lag_named", lambda: lag_scenario(dsn, quick, NAMED_CONSUMER)),
    ]
    for name, scenario in scenarios:
        print(f"  feed: {name}", flush=True)
        started = time.perf_counter()
        try:
            section[name], found = scenario()
        except Exception as error:
            problems.append(f"feed {name}: {type(error).__name__}: {error}")
            continue
        section[name]["seconds"] = time.perf_counter() - started
        problems += found
        print(f"  feed: {name} done in {section[name]['seconds']:.1f} s", flush=True)
    section["markdown"] = feed_markdown(section)
    return {"report": {"feed": section}, "problems": problems}


def feed_markdown(section: dict[str, Any]) -> str:
    """The feed tables."""
    lines = ["## Change feed (BENCHMARKS §4)", ""]
    latency = section.get("latency")
    if latency:
        r, c = latency["from_return"], latency["from_call"]
        lines += [
            f"Commit → handler in another process (`Broadcast()`), 1 client, one mutate every "
            f"{latency['spacing_ms']:.0f} ms, N = {latency['n']} (ms):",
            "",
            "| measured from | p50 | p99 | max | min | target |",
            "|---|---|---|---|---|---|",
        ]
        if "p50_ms" in r:
            verdict = (
                f"p50 ≤ {P50_TARGET_MS:g}: {'met' if latency['meets_p50'] else 'missed'}; "
                f"p99 ≤ {P99_TARGET_MS:g}: {'met' if latency['meets_p99'] else 'missed'}"
            )
            lines += [
                f"| `mutate` returned | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['max_ms']:.2f} | {r['min_ms']:.2f} | {verdict} |",
                f"| `mutate` called | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
                f"{c['max_ms']:.2f} | {c['min_ms']:.2f} | – |",
            ]
        lines += [
            "",
            f"`mutate` itself: p50 {latency['mutate'].get('p50_ms', 0):.2f} ms; "
            f"{latency['received_before_return']} of {latency['n']} changes reached the "
            "other process before `mutate` returned. Targets hold on an idle machine.",
            "",
        ]
    lags = [section[k] for k in ("lag_anonymous", "lag_named") if k in section]
    if lags:
        lines += [
            f"A Broadcast consumer in another process behind {WRITERS} writer threads "
            "(flat out, plugin state in a dict):",
            "",
            "| consumer | N / ids | writers ops/s | max lag (changes) | max lag (s) | "
            "delay p50 / p99 / max (ms) | catch-up after writers stop (s) | "
            "`consumers()` max lag (changes, s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lag in lags:
            d = lag["delay"]
            reported = "–"
            if "reported_max_lag_changes" in lag:
                reported = (
                    f"{lag['reported_max_lag_changes']:,}, {lag['reported_max_lag_seconds']:.2f}"
                )
            delay = (
                f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} / {d['max_ms']:.1f}"
                if "p50_ms" in d
                else "–"
            )
            lines.append(
                f"| {lag['consumer']} | {lag['n']:,} / {lag['ids']} | "
                f"{lag['writers_ops_per_s']:,.0f} | {lag['max_lag_changes']:,} | "
                f"{lag['max_lag_seconds']:.2f} | {delay} | {lag['catch_up_seconds']:.2f} | "
                f"{reported} |"
            )
        lines += [
            "",
            "Lag in changes: committed − received (exact, from both processes' clocks); in "
            "seconds: age of the oldest committed change not yet received, at 100 ms "
            "samples. Target: bounded (the figures above).",
            "",
        ]
    overhead = section.get("overhead")
    if overhead:
        o = overhead["overhead"]
        verdict = "met" if overhead["meets_target"] else "missed"
        lines += [
            f"Feed overhead on in-memory mutate (a), N = {overhead['n']:,}, "
            f"{overhead['rounds']} interleaved round(s): "
            f"{overhead['us_per_op_feed']['median']:.2f} µs/op with the default feed, "
            f"{overhead['us_per_op_no_feed']['median']:.2f} without; overhead "
            f"{o['median']:+.1%} ({o['min']:+.1%} to {o['max']:+.1%}); target ≤ "
            f"{OVERHEAD_TARGET:.0%}: {verdict}. On PostgreSQL the feed (the change's `xid`, "
            "one `pg_notify` per write transaction) is inside the postgres section's (a).",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``consume DSN SCHEMA CONSUMER EXPECTED TIMEOUT``: the consumer process."""
    if len(argv) != 6 or argv[0] != "consume":
        print(__doc__, file=sys.stderr)
        return 2
    _, dsn, schema, consumer, expected, timeout = argv
    return consume(dsn, schema, consumer, int(expected), float(timeout))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

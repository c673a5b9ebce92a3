"""Issue 11 — the change feed across OS processes: 3 processes with 8 writer threads in
all write over disjoint entities; a ``Broadcast`` subscriber in each process receives
every change exactly once, in the log's per-entity order, and a ``WorkQueue`` group
spread over the 3 processes handles each change exactly once.

The default run is small (2,000 changes over 50 entities); ``RE_FEED_SOAK=1``
(``make feed-soak``) runs the full size: 20,000 changes over 200 entities.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from reactive_entities import compose
from reactive_entities.testing.feed_workers import (
    GO,
    KIND,
    READY,
    WorkerProcess,
    read_report,
    soak_args,
)

pytestmark = pytest.mark.postgres

FULL = os.environ.get("RE_FEED_SOAK") == "1"
TOTAL = 20_000 if FULL else 2_000
ENTITIES = 200 if FULL else 50
PROCESSES = 3
THREADS = 8
#: How long a process may take from "go" to having received everything.
TIMEOUT = 600.0 if FULL else 50.0


def _log(dsn: str, schema: str) -> list[tuple[str, str, int]]:
    """``(change_id, entity_id, position)`` of every change, in position order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT change_id::text, entity_id, position FROM {} WHERE kind = %s"
                " ORDER BY position"
            ).format(sql.Identifier(schema, "changes")),
            [KIND],
        ).fetchall()
    return [(str(c), str(e), int(p)) for c, e, p in rows]


def _per_entity(rows: list[list[str]]) -> dict[str, list[str]]:
    """Change ids by entity, in the order given."""
    out: dict[str, list[str]] = {}
    for change_id, entity_id, *_ in rows:
        out.setdefault(entity_id, []).append(change_id)
    return out


def test_three_processes_broadcast_each_change_once_and_share_the_work_queue(
    pg_dsn: str, pg_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each process's Broadcast gets every change once, per-entity order; the group each once."""
    with compose.postgres(pg_dsn, schema=pg_schema):
        pass  # migrate once, before the processes start
    threads = [[t for t in range(THREADS) if t % PROCESSES == p] for p in range(PROCESSES)]
    outs = [tmp_path / f"process-{p}.json" for p in range(PROCESSES)]
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                WorkerProcess(
                    soak_args(
                        pg_dsn,
                        pg_schema,
                        threads=threads[p],
                        thread_count=THREADS,
                        entities=ENTITIES,
                        total=TOTAL,
                        out=str(outs[p]),
                        timeout=TIMEOUT,
                    )
                )
            )
            for p in range(PROCESSES)
        ]
        for worker in workers:  # every process subscribed before anyone writes
            assert worker.read_line(30.0) == READY
        started = time.monotonic()
        for worker in workers:
            worker.send(GO)
        for worker in workers:
            worker.finish(TIMEOUT + 30.0)
        elapsed = time.monotonic() - started
    reports = [read_report(out) for out in outs]
    log = _log(pg_dsn, pg_schema)

    for report in reports:
        assert report["errors"] == []
        assert not report["timed_out"], f"process {report['pid']} did not receive everything"
    assert sum(len(r["threads"]) for r in reports) == THREADS
    assert sum(r["written"] for r in reports) == TOTAL
    assert len(log) == TOTAL
    assert len({entity for _, entity, _ in log}) == ENTITIES

    every = Counter(change_id for change_id, _, _ in log)
    log_order = _per_entity([[c, e] for c, e, _ in log])
    duplicates = 0
    for report in reports:
        received = Counter(row[0] for row in report["broadcast"])
        duplicates += sum(received.values()) - len(received)
        assert received == every, f"process {report['pid']}: not every change exactly once"
        assert _per_entity(report["broadcast"]) == log_order, "per-entity order differs"
    handled = Counter(row[0] for report in reports for row in report["work"])
    duplicates += sum(handled.values()) - len(handled)
    assert handled == every, "the work-queue group did not handle every change exactly once"
    assert all(report["work"] for report in reports), "the group ran in every process"

    write_seconds = max(r["write_seconds"] for r in reports)
    broadcast_seconds = max(r["broadcast_seconds"] for r in reports)
    receive_seconds = max(r["receive_seconds"] for r in reports)
    with capsys.disabled():  # the figures, even under -q
        print(
            f"\nfeed processes: {TOTAL} changes over {ENTITIES} entities, {PROCESSES} processes,"
            f" {THREADS} writer threads: written in {write_seconds:.1f} s"
            f" ({TOTAL / write_seconds:,.0f}/s); every broadcast complete after"
            f" {broadcast_seconds:.1f} s, the work queue after {receive_seconds:.1f} s"
            f" ({TOTAL / receive_seconds:,.0f}/s); whole run {elapsed:.1f} s;"
            f" work split {[len(r['work']) for r in reports]}; duplicates {duplicates}"
        )

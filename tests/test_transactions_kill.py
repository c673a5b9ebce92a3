"""Issue 10 — ``kill -9`` at random points during transactional mutates: two worker
processes write the same entities (the app's rows and the log in one transaction) and
are killed again and again; the log then agrees with the app's rows exactly, and every
field's chain of transitions is intact.

The default run is small (about 6 kills); ``RE_SOAK_KILLS=60`` (``make soak``) runs that
many.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from reactive_entities.testing.kill_soak import (
    check,
    prepare,
    run_soak,
    sessions_left,
    worker,
)

pytestmark = pytest.mark.postgres

KILLS = int(os.environ.get("RE_SOAK_KILLS", "6"))
#: A time budget for the soak (a worker takes about half a second to start).
SECONDS = 15.0 + 2.5 * KILLS


def test_kill_9_leaves_no_gap_between_the_log_and_the_app_rows(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``KILLS`` SIGKILLs of 2 writers: zero gaps, every chain intact."""
    report = run_soak(pg_dsn, pg_schema, kills=KILLS, seconds=SECONDS)
    with capsys.disabled():  # the figures, even under -q
        print(f"\nkill soak: {report.summary()}")

    assert report.kills == KILLS
    assert report.problems == ()
    assert report.changes > 0
    assert report.updates > 0
    assert report.entities > 0
    assert check(pg_dsn, pg_schema)["problems"] == ()  # the check is repeatable
    assert _no_sessions_left(pg_dsn)  # every worker, killed or stopped, is gone


def _no_sessions_left(dsn: str) -> bool:
    deadline = time.monotonic() + 10.0
    while sessions_left(dsn):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def control_schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A schema of its own for the negative control; dropped afterwards."""
    name = f"{pg_schema}_control"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_the_check_finds_gaps(pg_dsn: str, control_schema: str) -> None:
    """Negative control: an app row changed behind the log and a rowless change are found."""
    prepare(pg_dsn, control_schema)
    counts = worker(pg_dsn, control_schema, seed=7, lifetime=0.5)
    assert counts.commits > 0
    assert check(pg_dsn, control_schema)["problems"] == ()

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT min(id) FROM {}").format(sql.Identifier(control_schema, "soak_items"))
        ).fetchone()
        assert row is not None
        entity_id = row[0]
        assert entity_id is not None
        conn.execute(  # the app's write commits, the log never hears of it
            sql.SQL("UPDATE {} SET doc = jsonb_set(doc, '{{counter}}', '-1') WHERE id = %s").format(
                sql.Identifier(control_schema, "soak_items")
            ),
            [entity_id],
        )
        conn.execute(  # a change row whose transition rows are missing
            sql.SQL(
                "INSERT INTO {} (change_id, entity_key, kind, entity_id, op, actor, prev, next,"
                " delta, changed_fields, occurred_at) SELECT gen_random_uuid(), entity_key,"
                " kind, 'item-x', 'create', actor, NULL, '{{}}', '{{}}', '{{status}}', now()"
                " FROM {} LIMIT 1"
            ).format(
                sql.Identifier(control_schema, "changes"),
                sql.Identifier(control_schema, "changes"),
            )
        )

    problems = check(pg_dsn, control_schema)["problems"]
    assert any(p.startswith(f"{entity_id}.counter: newest to_value") for p in problems)
    assert any("item-x" in p and "without transition rows" in p for p in problems)

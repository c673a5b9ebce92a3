"""The ``reactive-entities`` command against a real PostgreSQL: ``migrate``, ``history``
and ``demo --dsn``, in process and once as ``python -m reactive_entities``."""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg
import pytest
from psycopg import sql

from reactive_entities import compose
from reactive_entities.adapters.postgres.migrations import latest_version
from reactive_entities.cli import main
from reactive_entities.testing.examples import Incident, define_incidents

pytestmark = pytest.mark.postgres


def test_migrate_creates_and_reports_the_version(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``migrate`` brings a fresh schema to the latest version, and again is a no-op."""
    for _ in range(2):
        assert main(["migrate", "--dsn", pg_dsn, "--schema", pg_schema]) == 0
        out = capsys.readouterr().out
        assert f"schema {pg_schema} is at version {latest_version()}" in out


def test_history_prints_the_rows_of_an_entity(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``history`` prints an entity's rows oldest first; ``--field``/``--limit`` filter."""
    with compose.postgres(pg_dsn, schema=pg_schema) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("cli-1", storage.put("cli-1", Incident("open", "low", token="t0k3n-value")))
        handle.mutate("cli-1", storage.patch("cli-1", status="investigating"))
        handle.mutate("cli-1", storage.patch("cli-1", status="resolved"))
    assert main(["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "cli-1"]) == 0
    out = capsys.readouterr().out
    assert out.index('"open" → "investigating"') < out.index('"investigating" → "resolved"')
    assert '- → "****"' in out  # the sensitive token, masked as stored
    assert "t0k3n-value" not in out
    argv = ["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "cli-1"]
    assert main([*argv, "--field", "status", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert '"investigating" → "resolved"' in out
    assert "open" not in out
    assert main(["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "nope"]) == 0
    assert "no transitions recorded for incident:nope" in capsys.readouterr().out


def test_history_on_an_unmigrated_schema_says_how_to_migrate(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``history`` never migrates: an empty schema exits 1 with the fix on stderr."""
    schema = f"{pg_schema}_empty"
    assert main(["history", "--dsn", pg_dsn, "--schema", schema, "incident", "x"]) == 1
    err = capsys.readouterr().err
    assert "reactive-entities migrate --dsn" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A DSN nobody answers gives exit status 1 and libpq's reason on one line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    assert main(["migrate", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert "could not connect" in err
    assert len(err.strip().splitlines()) == 1


def test_demo_on_postgres_leaves_a_log_history_can_read(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``demo --dsn`` runs the scenario on PostgreSQL; ``history`` then reads its log."""
    schema = f"{pg_schema}_demo"
    try:
        assert main(["demo", "--dsn", pg_dsn, "--schema", schema]) == 0
        out = capsys.readouterr().out
        assert f'PostgreSQL, schema "{schema}"' in out
        assert "create  incident:inc-1" in out
        assert main(["history", "--dsn", pg_dsn, "--schema", schema, "incident", "inc-1"]) == 0
        history = capsys.readouterr().out
        assert '"open" → "investigating"' in history
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_python_dash_m_runs_the_command(pg_dsn: str, pg_schema: str) -> None:
    """``python -m reactive_entities migrate`` works from a fresh interpreter."""
    argv = ["migrate", "--dsn", pg_dsn, "--schema", pg_schema]
    result = subprocess.run(
        [sys.executable, "-P", "-m", "reactive_entities", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"is at version {latest_version()}" in result.stdout

"""The ``reactive-entities`` command against a real PostgreSQL: ``migrate``, ``history``
and ``demo --dsn``, in process and once as ``python -m reactive_entities``; the ``PG*``
environment as the default DSN; read-only commands never migrate."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from reactive_entities import Actor, compose
from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres.migrations import latest_version
from reactive_entities.cli import main
from reactive_entities.domain.position import Position
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


def test_history_shows_op_actor_and_run_id_of_each_row(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each row carries its change's op, ``type:id`` actor and run id (``-`` without one)."""
    with compose.postgres(pg_dsn, schema=pg_schema) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("who-1", storage.put("who-1", Incident("open", "low")))
        handle.mutate(
            "who-1",
            storage.patch("who-1", status="resolved"),
            actor=Actor.user("u-7", "Ann"),
            run_id="run-42",
        )
    argv = ["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "who-1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert " ".join(lines[0].split()) == "time (UTC) field from → to masked op actor run change"
    status_rows = [line for line in lines[2:] if " status " in line]
    assert status_rows[0].split()[-4:-1] == ["create", "system:system", "-"]
    assert status_rows[1].split()[-4:-1] == ["update", "user:u-7", "run-42"]


def test_history_since_keeps_rows_at_or_after_an_aware_time(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--since`` is inclusive and honours the offset it is given."""
    clock = ManualClock(datetime(2024, 5, 1, 9, 0, tzinfo=UTC))
    with compose.postgres(pg_dsn, schema=pg_schema, clock=clock) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("since-1", storage.put("since-1", Incident("open", "low")))
        for status in ("investigating", "resolved"):
            clock.advance(timedelta(minutes=10))
            handle.mutate("since-1", storage.patch("since-1", status=status))
    argv = ["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "since-1"]
    assert main([*argv, "--field", "status", "--since", "2024-05-01T11:10:00+02:00"]) == 0
    out = capsys.readouterr().out
    assert '"open" → "investigating"' in out
    assert '"investigating" → "resolved"' in out
    assert '- → "open"' not in out
    assert main([*argv, "--since", "2024-05-01T09:20:00.000001Z"]) == 0
    out = capsys.readouterr().out
    assert out == "no transitions recorded for incident:since-1 since 2024-05-01T09:20:00.000001Z\n"


def test_history_json_prints_one_object_per_row(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json``: an object per row, with op/actor/run/position; a create has no from_value."""
    with compose.postgres(pg_dsn, schema=pg_schema) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("json-1", storage.put("json-1", Incident("open", "low", token="s3cr3t-tok")))
        handle.mutate("json-1", storage.patch("json-1", status="resolved"), run_id="run-7")
    argv = ["history", "--dsn", pg_dsn, "--schema", pg_schema, "incident", "json-1", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-tok" not in out
    rows = [json.loads(line) for line in out.splitlines()]
    by_field = {(row["field"], row["op"]): row for row in rows}
    token = by_field["token", "create"]
    assert "from_value" not in token
    assert token["to_value"] == "****"
    assert token["masked"] is True
    assert token["actor"] == {"type": "system", "id": "system", "name": "System"}
    update = by_field["status", "update"]
    assert (update["from_value"], update["to_value"], update["run_id"]) == (
        "open",
        "resolved",
        "run-7",
    )
    assert Position.parse(token["position"]) < Position.parse(update["position"])
    assert datetime.fromisoformat(update["transitioned_at"]).tzinfo is not None
    assert {"kind", "entity_id", "field", "masked", "change_id", "actor"} <= set(update)


READ_ONLY_COMMANDS = [
    ["history", "incident", "x"],
    ["tail", "--limit-seconds", "1"],
    ["consumers"],
    ["dead-letters", "list", "g"],
    ["dead-letters", "retry", "g"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_read_only_commands_refuse_an_older_schema_and_leave_it(
    pg_dsn: str, pg_schema: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema one version behind: exit 1 with the fix on one line, nothing migrated."""
    schema = f"{pg_schema}_old"
    with compose.postgres(pg_dsn, schema=schema):
        pass
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations = sql.Identifier(schema, "schema_migrations")
        conn.execute(sql.SQL("DELETE FROM {} WHERE version > 1").format(migrations))
        try:
            assert main([*command, "--dsn", pg_dsn, "--schema", schema]) == 1
            err = capsys.readouterr().err
            assert f'database schema "{schema}" is at version 1' in err
            assert f"reactive-entities migrate --dsn … --schema {schema}" in err
            assert len(err.strip().splitlines()) == 1
            version = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(migrations))
            assert version.fetchone() == (1,)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_without_dsn_the_pg_environment_is_used(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ``--dsn``: ``migrate`` and ``history`` reach the server named by ``PGHOST``…"""
    variables = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
    for key, value in conninfo_to_dict(pg_dsn).items():
        if key in variables:
            monkeypatch.setenv(variables[key], str(value))
    assert main(["migrate", "--schema", pg_schema]) == 0
    assert f"schema {pg_schema} is at version" in capsys.readouterr().out
    assert main(["history", "--schema", pg_schema, "incident", "nobody"]) == 0
    assert "no transitions recorded for incident:nobody" in capsys.readouterr().out


def test_a_password_in_the_dsn_never_shows_in_an_error(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that accepts the DSN, then an error (unmigrated schema): no password."""
    parts = conninfo_to_dict(pg_dsn)
    dsn = (
        f"postgresql://{parts.get('user', 'postgres')}:Hunter2-Zq81x@{parts['host']}:"
        f"{parts['port']}/{parts.get('dbname', 'postgres')}"
    )
    assert main(["consumers", "--dsn", dsn, "--schema", f"{pg_schema}_none"]) == 1
    captured = capsys.readouterr()
    assert "is not migrated" in captured.err
    assert "Hunter2" not in captured.out + captured.err

"""The feed's commands against a real PostgreSQL: ``tail`` (in process, and as a process
picking up another engine's commit or stopped with Ctrl-C), ``consumers`` and
``dead-letters list``/``retry``."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from reactive_entities import ChangeEvent, compose
from reactive_entities.adapters.postgres.feed import channel_for
from reactive_entities.cli import main
from reactive_entities.domain.position import Position
from reactive_entities.domain.subscriptions import Broadcast, WorkQueue
from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.plugin import DictStorage

_numbers = itertools.count(1)
#: The application's incidents, shared by the engines of a test (its schema's log).
_STORAGE: DictStorage[Incident] = DictStorage()


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A migrated schema of this test's own (so consumers and the feed start empty), and
    an application holding no incidents yet."""
    name = f"{pg_schema}_{next(_numbers)}"
    _STORAGE.rows.clear()
    with compose.postgres(pg_dsn, schema=name):
        pass
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _incidents(engine: Engine) -> EntityHandle[Incident]:
    """The ``incident`` kind on ``engine``, defined once per engine."""
    if "incident" in engine.kinds():
        return engine.handle("incident")
    return define_incidents(engine, _STORAGE)[0]


def _write(pg_dsn: str, schema: str, *steps: tuple[str, dict[str, str]]) -> None:
    """Record ``steps`` with an engine of their own (see :func:`_write_with`)."""
    with compose.postgres(pg_dsn, schema=schema) as engine:
        _write_with(engine, *steps)


def _write_with(engine: Engine, *steps: tuple[str, dict[str, str]]) -> None:
    """Record ``steps``: (entity id, fields), a create the first time, else a patch."""
    handle = _incidents(engine)
    for entity_id, fields in steps:
        if entity_id in _STORAGE.rows:
            handle.mutate(entity_id, _STORAGE.patch(entity_id, **fields))
        else:
            state = Incident(**fields)  # type: ignore[arg-type]
            handle.mutate(entity_id, _STORAGE.put(entity_id, state))


def _tail(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[list[str], str]:
    """Run ``tail`` in process for half a second: its stdout lines and its stderr."""
    assert main(["tail", *argv, "--limit-seconds", "0.5"]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


# -- tail ------------------------------------------------------------------------------


def test_tail_from_start_prints_every_change_in_feed_order(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line per change: position, time, kind:id, op, changed fields, actor, run id."""
    _write(
        pg_dsn,
        schema,
        ("t-1", {"status": "open", "severity": "low", "token": "tok-Zq81x"}),
        ("t-2", {"status": "open", "severity": "high"}),
        ("t-1", {"status": "resolved"}),
    )
    lines, err = _tail(capsys, "--dsn", pg_dsn, "--schema", schema, "--from-start")
    assert f"following schema {schema} from the start" in err
    assert [line.split()[2:4] for line in lines] == [
        ["incident:t-1", "create"],
        ["incident:t-2", "create"],
        ["incident:t-1", "update"],
    ]
    positions = [Position.parse(line.split()[0]) for line in lines]
    assert positions == sorted(positions)
    assert lines[2].split()[4:] == ["status", "system:system", "-"]
    assert "tok-Zq81x" not in "\n".join(lines)


def test_tail_after_a_position_and_of_one_kind(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--after POS`` prints only later changes; ``--kind`` only changes of that kind."""
    _write(
        pg_dsn,
        schema,
        ("a-1", {"status": "open", "severity": "low"}),
        ("a-1", {"status": "investigating"}),
        ("a-1", {"status": "resolved"}),
    )
    everything, _ = _tail(capsys, "--dsn", pg_dsn, "--schema", schema, "--from-start")
    first = everything[0].split()[0]
    later, err = _tail(capsys, "--dsn", pg_dsn, "--schema", schema, "--after", first)
    assert f"after {first}" in err
    assert later == everything[1:]
    argv = ["--dsn", pg_dsn, "--schema", schema, "--from-start"]
    assert _tail(capsys, *argv, "--kind", "incident")[0] == everything
    assert _tail(capsys, *argv, "--kind", "satellite")[0] == []


def test_tail_by_default_prints_only_new_changes(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default only changes committed while ``tail`` runs are printed, none before."""
    _write(pg_dsn, schema, ("old-1", {"status": "open", "severity": "low"}))
    lines, err = _tail(capsys, "--dsn", pg_dsn, "--schema", schema)
    assert lines == []
    assert "(new changes only)" in err
    with compose.postgres(pg_dsn, schema=schema) as writer:
        _incidents(writer)
        done = threading.Event()

        def write_soon() -> None:
            time.sleep(0.2)
            _write_with(writer, ("new-1", {"status": "open", "severity": "low"}))
            done.set()

        thread = threading.Thread(target=write_soon)
        thread.start()
        assert main(["tail", "--dsn", pg_dsn, "--schema", schema, "--limit-seconds", "1.5"]) == 0
        thread.join()
    assert done.is_set()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2:4] for line in lines] == [["incident:new-1", "create"]]


def test_tail_json_picks_up_a_change_another_engine_commits(pg_dsn: str, schema: str) -> None:
    """``tail --json`` as a process prints another engine's new commit, masked, no password."""
    parts = conninfo_to_dict(pg_dsn)
    dsn = (
        f"postgresql://{parts.get('user', 'postgres')}:Hunter2-Zq81x@{parts['host']}:"
        f"{parts['port']}/{parts.get('dbname', 'postgres')}"
    )
    argv = ["tail", "--dsn", dsn, "--schema", schema, "--json", "--limit-seconds", "2"]
    with compose.postgres(pg_dsn, schema=schema) as engine:
        _incidents(engine)
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "reactive_entities", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        try:
            assert process.stderr is not None
            header = process.stderr.readline()  # printed once tail is at the head
            assert "following schema" in header, header
            _write_with(
                engine, ("live-1", {"status": "open", "severity": "high", "token": "tok-Zq81x"})
            )
            recorded = engine.handle("incident").changes("live-1")
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 1
    event = events[0]
    assert event == recorded[0].to_dict()
    assert (event["kind"], event["entity_id"], event["op"]) == ("incident", "live-1", "create")
    assert event["next"]["token"] == "****"
    assert "tok-Zq81x" not in out + header + err
    assert "Hunter2" not in out + header + err
    assert err == ""


def test_tail_stops_with_exit_0_on_ctrl_c(pg_dsn: str, schema: str) -> None:
    """SIGINT (Ctrl-C) ends a ``tail`` that has no time limit, quietly, with status 0."""
    argv = ["tail", "--dsn", pg_dsn, "--schema", schema]
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "reactive_entities", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "following schema" in process.stderr.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Traceback" not in err
    assert out == ""


def test_tail_reports_a_lost_listen_connection_as_a_warning(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A killed LISTEN connection: a redacted warning on stderr, later changes still arrive."""
    dsn = conninfo_to_dict(pg_dsn) | {"password": "Hunter2-Zq81x"}
    dsn_text = " ".join(f"{key}='{value}'" for key, value in dsn.items())
    statuses: list[int] = []
    thread = threading.Thread(
        target=lambda: statuses.append(
            main(["tail", "--dsn", dsn_text, "--schema", schema, "--limit-seconds", "3"])
        )
    )
    thread.start()
    listening = f'LISTEN "{channel_for(schema)}"'
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        pids: list[tuple[int]] = []
        for _ in range(250):
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query = %s", (listening,)
            ).fetchall()
            if pids:
                break
            time.sleep(0.02)
        assert pids, "the feed never listened"
        conn.execute("SELECT pg_terminate_backend(%s)", pids[0])
    time.sleep(0.5)
    _write(pg_dsn, schema, ("after-kill", {"status": "open", "severity": "low"}))
    thread.join(timeout=30)
    assert statuses == [0]
    captured = capsys.readouterr()
    assert "reactive-entities tail: warning: change feed listener lost its connection" in (
        captured.err
    )
    assert "Hunter2" not in captured.err + captured.out
    assert [line.split()[2] for line in captured.out.splitlines()] == ["incident:after-kill"]


# -- consumers and dead letters --------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def dead_letter(pg_dsn: str, schema: str) -> str:
    """A schema holding a broadcast consumer ``audit`` that handled one change, and a
    work-queue group ``billing`` whose handler failed it into a dead letter; then one
    more change neither has seen. Returns the failed change's id."""
    with compose.postgres(pg_dsn, schema=schema) as engine:
        handle = _incidents(engine)
        engine.secrets.register("run-dl", ["acct-Zq81x"])
        seen: list[ChangeEvent] = []

        def fail(event: ChangeEvent) -> None:
            raise RuntimeError(f"no route to acct-Zq81x for {event.entity_id}")

        audit = engine.subscribe(seen.append, kind="incident", delivery=Broadcast("audit"))
        billing = engine.subscribe(
            fail, kind="incident", delivery=WorkQueue(group="billing", max_retries=0)
        )
        handle.mutate("dl-1", _STORAGE.put("dl-1", Incident("open", "low")), run_id="run-dl")
        _wait_for(lambda: len(seen) == 1 and engine.dead_letters("billing") != (), "delivery")
        audit.cancel()
        billing.cancel()
        _write_with(engine, ("dl-2", {"status": "open", "severity": "low"}))
        return seen[0].change_id


def test_consumers_lists_cursor_lag_claims_and_dead_letters(
    pg_dsn: str, schema: str, dead_letter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each named consumer and group: mode, cursor, lag in changes and seconds, dead letters."""
    assert main(["consumers", "--dsn", pg_dsn, "--schema", schema]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = " ".join(lines[0].split())
    assert header == "name mode cursor lag lag (s) in flight waiting dead letters"
    audit, billing = (line.split() for line in lines[2:])
    assert audit[:2] == ["audit", "broadcast"]
    assert audit[3] == "1"  # dl-2, after its cursor
    assert float(audit[4]) >= 0
    assert audit[5:] == ["-", "-", "-"]
    assert billing[:2] == ["billing", "work-queue"]
    assert billing[5:] == ["0", "0", "1"]
    assert main(["consumers", "--dsn", pg_dsn, "--schema", schema, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["name"], row["mode"], row["dead_letters"]) for row in rows] == [
        ("audit", "broadcast", 0),
        ("billing", "work-queue", 1),
    ]
    assert rows[0]["lag_changes"] == 1
    assert isinstance(rows[0]["lag_seconds"], float)
    assert Position.parse(rows[0]["position"]) > Position(0, 0)


def test_consumers_on_a_schema_without_any(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No consumer has run yet: a sentence, not an empty table; ``--json`` prints nothing."""
    assert main(["consumers", "--dsn", pg_dsn, "--schema", schema]) == 0
    assert (
        capsys.readouterr().out == f"no named consumers or work-queue groups in schema {schema}\n"
    )
    assert main(["consumers", "--dsn", pg_dsn, "--schema", schema, "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_dead_letters_list_then_retry(
    pg_dsn: str, schema: str, dead_letter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``list`` shows the dead letter, error masked; ``retry`` requeues it and says how many."""
    base = ["--dsn", pg_dsn, "--schema", schema]
    assert main(["dead-letters", "list", "billing", *base]) == 0
    out = capsys.readouterr().out
    row = out.splitlines()[2]
    assert row.split()[1:4] == [dead_letter[:8], "incident:dl-1", "1"]
    assert "RuntimeError: no route to **** for dl-1" in row
    assert "acct-Zq81x" not in out
    assert main(["dead-letters", "list", "billing", *base, "--json"]) == 0
    (letter,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert letter["change_id"] == dead_letter
    assert letter["group"] == "billing"
    assert letter["attempts"] == 1
    assert letter["last_error"] == "RuntimeError: no route to **** for dl-1"

    assert main(["dead-letters", "retry", "billing", *base]) == 0
    assert capsys.readouterr().out == 'requeued 1 dead letter of work-queue group "billing"\n'
    assert main(["dead-letters", "list", "billing", *base]) == 0
    assert capsys.readouterr().out == 'no dead letters in work-queue group "billing"\n'
    assert main(["consumers", *base, "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert (rows["billing"]["waiting"], rows["billing"]["dead_letters"]) == (1, 0)


def test_dead_letters_of_an_unknown_group_say_so(
    pg_dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group name no member ever used (a typo?) is pointed out, with status 0."""
    base = ["--dsn", pg_dsn, "--schema", schema]
    assert main(["dead-letters", "list", "bililng", *base]) == 0
    assert capsys.readouterr().out == (
        f'no dead letters in work-queue group "bililng" (no such group in schema {schema})\n'
    )
    assert main(["dead-letters", "retry", "bililng", *base]) == 0
    assert capsys.readouterr().out == (
        'requeued 0 dead letters of work-queue group "bililng"'
        f" (no such group in schema {schema})\n"
    )

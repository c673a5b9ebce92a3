"""The ``reactive-entities`` command: the in-memory demo, argument handling, exit codes,
``--version``, passwords kept out of every message, and the plain-text output it prints."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import reactive_entities
from reactive_entities import ABSENT, Actor, ChangeEvent, StoreError, TransitionRecord, cli
from reactive_entities.demo import RUN_SECRET, SENSITIVE_VALUE
from reactive_entities.domain.position import Position
from reactive_entities.ports.feed import ConsumerStatus, DeadLetter
from reactive_entities.tables import (
    change_line,
    consumer_table,
    dead_letter_table,
    format_table,
    format_value,
    history_table,
    transition_table,
)


@pytest.fixture(scope="module")
def demo_output() -> str:
    """What ``reactive-entities demo`` prints (run once for the module)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["demo"]) == 0
    return out.getvalue()


def _section(output: str, title: str) -> str:
    """The lines of one ``== title ==`` section of the demo's output."""
    start = output.index(f"== {title}")
    end = output.find("\n== ", start + 1)
    return output[start : end if end != -1 else len(output)]


# -- the demo --------------------------------------------------------------------------


def test_demo_prints_each_change_event(demo_output: str) -> None:
    """Every recorded change is printed once, with op, kind:id, changed fields and delta."""
    events = _section(demo_output, "Change events")
    heads = re.findall(r"^\d\d:\d\d:\d\d  (create|update|remove)  (incident:inc-\d)", events, re.M)
    assert heads == [
        ("create", "incident:inc-1"),
        ("create", "incident:inc-2"),
        ("update", "incident:inc-1"),
        ("update", "incident:inc-1"),
        ("update", "incident:inc-1"),
        ("update", "incident:inc-1"),
        ("update", "incident:inc-1"),
        ("update", "incident:inc-1"),
        ("remove", "incident:inc-2"),
    ]
    assert events.count("changed  status\n") == 3
    assert 'delta    {"severity":"high"}' in events
    assert "in run run-1" in events
    assert "no event, no row" in events


def test_demo_prints_the_history_table(demo_output: str) -> None:
    """The history of inc-1 is a table with the create rows, the flap and masked rows."""
    history = _section(demo_output, "Transition history of incident:inc-1")
    assert re.search(r"^time \(UTC\)\s+field\s+from → to\s+masked\s+change$", history, re.M)
    statuses = re.findall(r"^\S+\s+status\s+(.+?)\s+[0-9a-f]{8}$", history, re.M)
    assert statuses == [
        '- → "open"',
        '"open" → "investigating"',
        '"investigating" → "open"',
        '"open" → "investigating"',
    ]
    # The token was unset (null) before: null stays null, the set value is masked.
    assert re.search(r'^09:25:00\s+api_token\s+null → "\*\*\*\*"\s+yes\s', history, re.M)


def test_demo_answers_the_temporal_questions(demo_output: str) -> None:
    """The temporal answers for the live incident follow from the scripted timeline."""
    answers = _section(demo_output, "Temporal questions about incident:inc-1")
    expected = {
        r"in_state_since\(status\)": "09:12:00",
        r"in_state_for\(status\)": "0:28:00",
        r"transition_count\(status, window=1h\)": "4",
        r"transition_count\(status, window=30m\)": "1",
        r"value_at\(status, 09:10:00\)": '"open"',
        r"value_at\(severity, 09:02:00\)": '"low"',
        r"value_at\(title, 09:22:00\)": r'"Rollback with token \*\*\*\* failed"',
    }
    for question, answer in expected.items():
        assert re.search(rf"^{question}\s+{answer}$", answers, re.M), question


def test_demo_never_prints_the_secret_or_the_sensitive_value(demo_output: str) -> None:
    """The run's secret and the sensitive field show as ``****``, never in clear."""
    assert RUN_SECRET not in demo_output
    assert SENSITIVE_VALUE not in demo_output
    assert '"title":"Rollback with token **** failed"' in demo_output
    assert '{"api_token":"****"}' in demo_output


def test_demo_output_is_the_same_on_every_run(demo_output: str) -> None:
    """On the manual clock only the random change ids differ between two runs."""
    again = subprocess.run(
        [sys.executable, "-P", "-m", "reactive_entities", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        env=_utf8_env(),
    ).stdout

    def without_ids(text: str) -> str:
        return re.sub(r"[0-9a-f]{8}$", "<id>", text, flags=re.M)

    assert without_ids(again) == without_ids(demo_output)


def test_python_dash_m_runs_the_demo(tmp_path: Path) -> None:
    """``python -m reactive_entities demo`` exits 0 and prints the demo, masked."""
    done = subprocess.run(
        [sys.executable, "-m", "reactive_entities", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=_utf8_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "== Change events" in done.stdout
    assert "== Temporal questions" in done.stdout
    assert RUN_SECRET not in done.stdout + done.stderr
    assert SENSITIVE_VALUE not in done.stdout + done.stderr


def _utf8_env() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


def _free_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- arguments and exit codes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["--help"], "usage: reactive-entities [-h] [--version]"),
        (["demo", "--help"], "usage: reactive-entities demo [-h] [--dsn DSN] [--schema NAME]"),
        (["migrate", "--help"], "usage: reactive-entities migrate [-h] [--dsn DSN]"),
        (["history", "-h"], "usage: reactive-entities history [-h] [--dsn DSN]"),
        (["tail", "-h"], "usage: reactive-entities tail [-h] [--dsn DSN]"),
        (["consumers", "-h"], "usage: reactive-entities consumers [-h] [--dsn DSN]"),
        (["dead-letters", "-h"], "usage: reactive-entities dead-letters [-h] {list,retry}"),
        (["dead-letters", "list", "-h"], "usage: reactive-entities dead-letters list [-h]"),
        (["dead-letters", "retry", "-h"], "usage: reactive-entities dead-letters retry [-h]"),
    ],
    ids=[
        "top",
        "demo",
        "migrate",
        "history",
        "tail",
        "consumers",
        "dead-letters",
        "dead-letters-list",
        "dead-letters-retry",
    ],
)
def test_help_exits_0_on_every_level(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` prints the usage of the command or subcommand and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(usage)
    assert "show this help message and exit" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["demo", "--bogus"],
        ["history", "--dsn", "postgresql://x/y", "incident"],
        ["history", "--dsn", "postgresql://x/y", "incident", "inc-1", "--limit", "0"],
        ["history", "--dsn", "postgresql://x/y", "incident", "inc-1", "--limit", "many"],
        ["history", "incident", "inc-1", "--since", "2024-05-01T09:00:00"],
        ["history", "incident", "inc-1", "--since", "yesterday"],
        ["tail", "--after", "12"],
        ["tail", "--from-start", "--after", "1-2"],
        ["tail", "--limit-seconds", "0"],
        ["tail", "--limit-seconds", "nan"],
        ["dead-letters"],
        ["dead-letters", "list"],
        ["dead-letters", "retry", "billing", "extra"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "unknown-option",
        "history-without-id",
        "zero-limit",
        "non-integer-limit",
        "naive-since",
        "unparseable-since",
        "bad-position",
        "from-start-and-after",
        "zero-seconds",
        "nan-seconds",
        "dead-letters-without-action",
        "dead-letters-without-group",
        "dead-letters-extra-argument",
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors exit 2 with argparse's message on stderr, before any work is done."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "usage: reactive-entities" in captured.err
    assert captured.out == ""


def test_library_error_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``ReactiveEntitiesError`` becomes exit status 1 and one line on stderr."""

    def failing_run(*args: object, **kwargs: object) -> None:
        raise StoreError("could not reach the store\n  (connection refused)")

    monkeypatch.setattr("reactive_entities.demo.run", failing_run)
    assert cli.main(["demo"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "reactive-entities demo: could not reach the store (connection refused)\n"
    )
    assert captured.out == ""


def test_a_naive_since_is_a_usage_error_that_asks_for_an_offset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``history --since`` without a UTC offset exits 2 and says what is missing."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["history", "incident", "inc-1", "--since", "2024-05-01T09:00:00"])
    assert exit_info.value.code == 2
    assert "needs a UTC offset" in capsys.readouterr().err


def test_version_prints_the_package_version_and_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--version`` prints the installed version and whether the compiled build runs."""
    version = importlib.metadata.version("reactive-entities")
    monkeypatch.setattr(reactive_entities, "compiled", False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"reactive-entities {version} (pure Python)\n"
    monkeypatch.setattr(reactive_entities, "compiled", True, raising=False)
    assert cli.version_text() == f"reactive-entities {version} (compiled)"


def test_other_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only library errors become exit status 1; a bug still raises with its traceback."""

    def buggy_run(*args: object, **kwargs: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr("reactive_entities.demo.run", buggy_run)
    with pytest.raises(KeyError, match="bug"):
        cli.main(["demo"])


# -- passwords never reach the output --------------------------------------------------

PASSWORD = "Pw-Zq81x%zz"
DATABASE_COMMANDS = [
    ["migrate"],
    ["history", "incident", "inc-1"],
    ["tail", "--limit-seconds", "1"],
    ["consumers"],
    ["dead-letters", "list", "billing"],
    ["dead-letters", "retry", "billing"],
]
DATABASE_IDS = ["migrate", "history", "tail", "consumers", "dl-list", "dl-retry"]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=DATABASE_IDS)
def test_an_unparseable_dsn_never_shows_its_password(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """libpq quotes the bad part of a malformed DSN, here its password: it is redacted."""
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:1/db"
    assert cli.main([*command, "--dsn", dsn]) == 1
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "Zq81x" not in captured.out + captured.err
    label = " ".join(command[:2]) if command[0] == "dead-letters" else command[0]
    assert captured.err.startswith(f"reactive-entities {label}: could not connect")
    assert "invalid percent-encoded token" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=DATABASE_IDS)
@pytest.mark.parametrize("form", ["url", "key-value"])
def test_an_unreachable_server_never_shows_the_password(
    command: list[str], form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Connection refused: exit 1, libpq's reason on one line, no password, no DSN."""
    port = _free_port()
    dsn = (
        f"postgresql://app:S3cret-pw@127.0.0.1:{port}/db"
        if form == "url"
        else f"host=127.0.0.1 port={port} user=app password='S3cret pw' dbname=db"
    )
    assert cli.main([*command, "--dsn", dsn]) == 1
    captured = capsys.readouterr()
    assert "S3cret" not in captured.out + captured.err
    assert dsn not in captured.err
    assert "could not connect" in captured.err
    assert f"port {port} failed" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_without_dsn_libpq_reads_the_pg_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ``--dsn``: libpq connects where ``PGHOST``/``PGPORT`` say; ``PGPASSWORD`` never shows."""
    port = _free_port()
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(port))
    monkeypatch.setenv("PGPASSWORD", "env-Pa55word")
    assert cli.main(["consumers"]) == 1
    err = capsys.readouterr().err
    assert f'connection to server at "127.0.0.1", port {port} failed' in err
    assert "env-Pa55word" not in err


def test_a_dsn_given_without_dsn_is_redacted_in_the_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A DSN passed as a stray argument is echoed by argparse, without its password."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["consumers", "postgresql://app:Hunter2-pw@db.example/app"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: postgresql://app:****@db.example/app" in err
    assert "Hunter2" not in err


# -- tables ----------------------------------------------------------------------------


def test_format_table_pads_columns_to_the_widest_cell() -> None:
    """Columns are left-aligned, separated by two spaces, with a rule under the header."""
    table = format_table(("a", "long header"), [("wide cell", "x"), ("y", "z")])
    assert table.splitlines() == [
        "a          long header",
        "---------  -----------",
        "wide cell  x",
        "y          z",
    ]


def test_format_table_rejects_a_ragged_row() -> None:
    """A row with the wrong number of cells is an error, not a shifted table."""
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        format_table(("a", "b"), [("1", "2", "3")])


def test_format_value_shows_absent_json_and_cuts_long_values() -> None:
    """``ABSENT`` prints as ``-``, values as compact JSON, long ones cut with an ellipsis."""
    assert format_value(ABSENT) == "-"
    assert format_value(None) == "null"
    assert format_value({"b": [1.0, True], "a": "é"}) == '{"a":"é","b":[1,true]}'
    cut = format_value("x" * 100, limit=12)
    assert cut == '"xxxxxxxxxx…'
    assert len(cut) == 12


def test_transition_table_marks_masked_rows_and_shortens_change_ids() -> None:
    """Each row shows UTC time, field, from → to, ``yes`` when masked, and 8 id chars."""
    at = datetime(2024, 5, 1, 9, 5, 30, 123456, tzinfo=UTC)
    rows = [
        TransitionRecord("k", "e", "token", ABSENT, "****", True, "abcdef0123456789", at),
        TransitionRecord("k", "e", "n", 1, 2, False, "0123456789abcdef", at),
    ]
    lines = transition_table(rows).splitlines()
    assert lines[2] == '2024-05-01 09:05:30.123456  token  - → "****"  yes     abcdef01'
    assert lines[3] == "2024-05-01 09:05:30.123456  n      1 → 2               01234567"


def _event(**changes: object) -> ChangeEvent:
    """A change event as the feed returns it (with a position)."""
    base: dict[str, object] = {
        "kind": "incident",
        "entity_id": "inc-1",
        "op": "update",
        "prev": {"status": "open"},
        "next": {"status": "closed"},
        "delta": {"status": "closed"},
        "changed_fields": ("status",),
        "actor": Actor.user("u-7", "Ann"),
        "run_id": "run-9",
        "occurred_at": datetime(2024, 5, 1, 9, 5, 30, tzinfo=UTC),
        "change_id": "0c5e1f2a-0000-4000-8000-000000000000",
        "position": Position(812, 40),
    }
    base.update(changes)
    return ChangeEvent(**base)  # type: ignore[arg-type]


def test_change_line_shows_position_time_entity_op_fields_actor_and_run() -> None:
    """``tail``'s line: position, ISO time, kind:id, op, changed fields, actor, run id."""
    assert change_line(_event()) == (
        "812-40  2024-05-01T09:05:30.000000Z  incident:inc-1  update  status  user:u-7  run-9"
    )
    removed = change_line(_event(op="remove", changed_fields=(), run_id=None))
    assert removed.endswith("incident:inc-1  remove  -  user:u-7  -")


def test_change_line_escapes_characters_that_would_break_the_line() -> None:
    """An id holding a newline or a tab is printed escaped: one change, one line."""
    line = change_line(_event(entity_id="inc\n2\tx"))
    assert "\n" not in line
    assert "incident:inc\\n2\\tx" in line


def test_history_table_adds_op_actor_and_run_to_each_row() -> None:
    """Each transition row shows its change's op, actor and run id; unknown ones ``?``."""
    at = datetime(2024, 5, 1, 9, 5, 30, tzinfo=UTC)
    event = _event()
    rows = [
        TransitionRecord(
            "incident", "inc-1", "status", "open", "closed", False, event.change_id, at
        ),
        TransitionRecord("incident", "inc-1", "title", ABSENT, "x", False, "ffffffff-1", at),
    ]
    lines = history_table(rows, {event.change_id: event}, time_format="%H:%M").splitlines()
    assert re.match(
        r"^time \(UTC\)\s+field\s+from → to\s+masked\s+op\s+actor\s+run\s+change$", lines[0]
    )
    assert re.match(
        r'^09:05\s+status\s+"open" → "closed"\s+update\s+user:u-7\s+run-9\s+0c5e1f2a$', lines[2]
    )
    assert re.match(r'^09:05\s+title\s+- → "x"\s+\?\s+\?\s+\?\s+ffffffff$', lines[3])


def test_consumer_table_shows_work_queue_columns_only_for_groups() -> None:
    """A broadcast consumer has no claims or dead letters: those cells show ``-``."""
    table = consumer_table(
        [
            ConsumerStatus("audit", "broadcast", Position(7, 40), 2, 3.04, 0, 0, 0),
            ConsumerStatus("billing", "work-queue", None, 0, None, 1, 2, 3),
        ]
    )
    lines = table.splitlines()
    assert lines[2].split() == ["audit", "broadcast", "7-40", "2", "3.0", "-", "-", "-"]
    assert lines[3].split() == ["billing", "work-queue", "-", "0", "-", "1", "2", "3"]


def test_dead_letter_table_puts_the_last_error_on_one_line() -> None:
    """A multi-line error is joined into one cell and cut, so the table stays a table."""
    letter = DeadLetter(
        "billing",
        "0c5e1f2a-0000",
        Position(9, 2),
        "incident",
        "inc-1",
        4,
        "RuntimeError: " + "x" * 200 + "\n  second line",
        datetime(2024, 5, 1, 9, 5, tzinfo=UTC),
    )
    lines = dead_letter_table([letter]).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith(
        "9-2       0c5e1f2a  incident:inc-1  4         2024-05-01 09:05:00  "
    )
    assert lines[2].endswith("x…")
    assert "second line" not in lines[2]

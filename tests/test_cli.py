"""The ``reactive-entities`` command: the in-memory demo, argument handling, exit codes,
and the plain-text tables it prints."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reactive_entities import ABSENT, StoreError, TransitionRecord, cli
from reactive_entities.demo import RUN_SECRET, SENSITIVE_VALUE
from reactive_entities.tables import format_table, format_value, transition_table


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


# -- arguments and exit codes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["--help"], "usage: reactive-entities [-h] {demo,migrate,history}"),
        (["demo", "--help"], "usage: reactive-entities demo [-h] [--dsn DSN] [--schema NAME]"),
        (["migrate", "--help"], "usage: reactive-entities migrate [-h] --dsn DSN"),
        (["history", "-h"], "usage: reactive-entities history [-h] --dsn DSN"),
    ],
    ids=["top", "demo", "migrate", "history"],
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
        ["migrate"],
        ["history", "--dsn", "postgresql://x/y", "incident"],
        ["history", "--dsn", "postgresql://x/y", "incident", "inc-1", "--limit", "0"],
        ["history", "--dsn", "postgresql://x/y", "incident", "inc-1", "--limit", "many"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "unknown-option",
        "migrate-without-dsn",
        "history-without-id",
        "zero-limit",
        "non-integer-limit",
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


def test_other_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only library errors become exit status 1; a bug still raises with its traceback."""

    def buggy_run(*args: object, **kwargs: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr("reactive_entities.demo.run", buggy_run)
    with pytest.raises(KeyError, match="bug"):
        cli.main(["demo"])


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

"""Checks on names and arguments (SPEC §1, §12, §13.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactive_entities.domain.validation import (
    MAX_KIND_LENGTH,
    NON_REACTIVE_REASONS,
    aware_datetime_problem,
    callable_problem,
    id_problem,
    kind_problem,
    limit_problem,
    window_problem,
)


@pytest.mark.parametrize("kind", ["incident", "Incident", "a", "x1.y_z-2", "9lives", "k" * 64])
def test_valid_kinds(kind: str) -> None:
    """Kinds of 1–64 characters matching ``[A-Za-z0-9][A-Za-z0-9_.-]*`` are fine."""
    assert kind_problem(kind) is None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("", "must not be empty"),
        (" ", "must match"),
        ("bad kind", "must match"),
        ("ns:kind", "must match"),
        ("_private", "must match"),
        ("-dash", "must match"),
        ("kind\n", "must match"),
        ("café", "must match"),
        ("k" * 65, "at most 64 characters (got 65)"),
        (42, "must be a str (got int)"),
        (None, "must be a str (got NoneType)"),
    ],
)
def test_invalid_kinds(kind: object, reason: str) -> None:
    """Blank, spaced, ``:``, ``_``/``-``-led, non-ASCII, long and non-str kinds are refused."""
    problem = kind_problem(kind)
    assert problem is not None
    assert reason in problem
    assert MAX_KIND_LENGTH == 64


@pytest.mark.parametrize(
    "entity_id", ["inc-1", "x", 'it\'s "quoted"', "'; DROP TABLE x;--", "ü" * 10_000]
)
def test_valid_ids(entity_id: str) -> None:
    """Any non-blank str without NUL is an id: quotes, SQL, unicode, 10 KB."""
    assert id_problem(entity_id) is None


@pytest.mark.parametrize(
    ("entity_id", "reason"),
    [
        ("", "must not be empty or blank"),
        ("  \t", "must not be empty or blank"),
        ("a\x00b", "NUL"),
        (7, "must be a str (got int)"),
        (None, "must be a str (got NoneType)"),
    ],
)
def test_invalid_ids(entity_id: object, reason: str) -> None:
    """Blank, NUL-holding and non-str ids are refused."""
    problem = id_problem(entity_id)
    assert problem is not None
    assert reason in problem


def test_positive_windows() -> None:
    """A positive ``timedelta`` is a window, however small."""
    assert window_problem(timedelta(minutes=10)) is None
    assert window_problem(timedelta(microseconds=1)) is None


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        (timedelta(0), "must be positive"),
        (timedelta(seconds=-1), "must be positive"),
        (10, "got int"),
        (1.5, "got float"),
        (None, "got NoneType"),
        (True, "got bool"),
    ],
)
def test_invalid_windows(window: object, reason: str) -> None:
    """Zero, negatives, numbers and None are not windows."""
    problem = window_problem(window)
    assert problem is not None
    assert reason in problem


def test_aware_datetimes() -> None:
    """Only timezone-aware datetimes pass."""
    assert aware_datetime_problem(datetime(2024, 1, 1, tzinfo=UTC)) is None
    assert "naive" in (aware_datetime_problem(datetime(2024, 1, 1)) or "")  # noqa: DTZ001
    assert "got str" in (aware_datetime_problem("2024-01-01") or "")


@pytest.mark.parametrize(
    ("limit", "ok"), [(0, True), (5, True), (-1, False), (True, False), (1.0, False), (None, False)]
)
def test_limits(limit: object, ok: bool) -> None:
    """A limit is a non-negative int (not a bool)."""
    assert (limit_problem(limit) is None) is ok


def test_callables() -> None:
    """Callables pass; anything else is named by type."""
    assert callable_problem(len) is None
    assert callable_problem(lambda: None) is None
    assert callable_problem("apply") == "must be callable (got str)"


def test_non_reactive_reasons() -> None:
    """The four documented reasons for non-reactive state."""
    assert NON_REACTIVE_REASONS == ("raw-sample", "sensitive", "externally-owned", "bookkeeping")

"""Checks on names and arguments, shared by every entry point (SPEC §1, §12, §13.5).

Each returns ``None`` when the value is fine, else the reason, so the shell can raise the
fitting typed error with a message naming what was wrong.

>>> kind_problem("incident"), kind_problem("bad kind")
(None, 'must match [A-Za-z0-9][A-Za-z0-9_.-]* (no whitespace, no ":")')
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

__all__ = [
    "KIND_PATTERN",
    "MAX_KIND_LENGTH",
    "NonReactiveReason",
    "NON_REACTIVE_REASONS",
    "kind_problem",
    "id_problem",
    "window_problem",
    "callable_problem",
    "aware_datetime_problem",
    "limit_problem",
    "has_lone_surrogate",
    "LONE_SURROGATE",
]

KIND_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# A lone surrogate has no UTF-8 form: PostgreSQL cannot store it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_KIND_LENGTH = 64

NonReactiveReason: TypeAlias = Literal["raw-sample", "sensitive", "externally-owned", "bookkeeping"]
NON_REACTIVE_REASONS: tuple[NonReactiveReason, ...] = (
    "raw-sample",
    "sensitive",
    "externally-owned",
    "bookkeeping",
)


def kind_problem(kind: object) -> str | None:
    """Why ``kind`` is not a valid kind name, or None."""
    if not isinstance(kind, str):
        return f"must be a str (got {type(kind).__name__})"
    if not kind:
        return "must not be empty"
    if len(kind) > MAX_KIND_LENGTH:
        return f"must be at most {MAX_KIND_LENGTH} characters (got {len(kind)})"
    if KIND_PATTERN.fullmatch(kind) is None:
        return 'must match [A-Za-z0-9][A-Za-z0-9_.-]* (no whitespace, no ":")'
    return None


def id_problem(entity_id: object) -> str | None:
    """Why ``entity_id`` is not a valid entity id, or None.

    An id is a non-blank ``str`` without NUL or lone surrogates (which PostgreSQL cannot
    store); any other character, quotes and unicode included, is kept verbatim.
    """
    if not isinstance(entity_id, str):
        return f"must be a str (got {type(entity_id).__name__})"
    if not entity_id.strip():
        return "must not be empty or blank"
    if "\x00" in entity_id:
        return "must not contain a NUL character"
    if has_lone_surrogate(entity_id):
        return "must not contain a lone surrogate (not Unicode: it has no UTF-8 form)"
    return None


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (U+D800–U+DFFF): not Unicode, it has no
    UTF-8 form, so PostgreSQL can store it neither as text nor in JSON.

    >>> has_lone_surrogate("Ωμέγα 😀"), has_lone_surrogate("bad\\udc80")
    (False, True)
    """
    return not text.isascii() and LONE_SURROGATE.search(text) is not None


def window_problem(window: object) -> str | None:
    """Why ``window`` is not a positive ``timedelta``, or None."""
    if not isinstance(window, timedelta):
        return f"must be a positive datetime.timedelta (got {type(window).__name__})"
    if window <= timedelta(0):
        return f"must be positive (got {window})"
    return None


def aware_datetime_problem(value: object) -> str | None:
    """Why ``value`` is not a timezone-aware ``datetime``, or None."""
    if not isinstance(value, datetime):
        return f"must be a timezone-aware datetime (got {type(value).__name__})"
    if value.tzinfo is None or value.utcoffset() is None:
        return "must be timezone-aware (a naive datetime is ambiguous)"
    return None


def limit_problem(value: object) -> str | None:
    """Why ``value`` is not a non-negative ``int``, or None."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return f"must be a non-negative int (got {value!r:.40})"
    return None


def callable_problem(value: object) -> str | None:
    """Why ``value`` is not callable, or None."""
    if callable(value):
        return None
    return f"must be callable (got {type(value).__name__})"

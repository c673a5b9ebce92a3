"""Plain-text tables for the command line: a generic formatter and the transition table.

>>> print(format_table(("field", "to"), [("status", '"open"'), ("severity", '"high"')]))
field     to
--------  ------
status    "open"
severity  "high"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from reactive_entities.domain.events import Absent, TransitionRecord
from reactive_entities.domain.json import JSONValue, canonical_json

__all__ = ["format_table", "format_value", "short_id", "transition_table"]

#: Values longer than this are cut with an ellipsis, so one value cannot widen a table.
MAX_VALUE = 40
GAP = "  "


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """``rows`` under ``headers``, columns left-aligned and padded to their widest cell.

    Trailing spaces are stripped from every line; with no rows, the header and its rule remain.
    """
    cells = [list(row) for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, ["-" * width for width in widths], *cells]
    return "\n".join(
        GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def format_value(value: JSONValue | Absent, *, limit: int = MAX_VALUE) -> str:
    """A recorded value as compact JSON, cut to ``limit`` characters; ``ABSENT`` (the
    entity did not exist) as ``-``.

    >>> format_value({"b": 1, "a": [True, None]})
    '{"a":[true,null],"b":1}'
    >>> format_value("x" * 50, limit=10)
    '"xxxxxxxx…'
    """
    if isinstance(value, Absent):
        return "-"
    text = canonical_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_id(change_id: str) -> str:
    """The first eight characters of a change id: enough to tell changes apart by eye."""
    return change_id[:8]


def transition_table(
    records: Iterable[TransitionRecord], *, time_format: str = "%Y-%m-%d %H:%M:%S.%f"
) -> str:
    """Transition rows as a table: time (UTC), field, from → to, masked, change id.

    >>> row = TransitionRecord(
    ...     "incident", "inc-1", "status", "open", "investigating", False,
    ...     "0c5e1f2a-0000-4000-8000-000000000000", datetime(2024, 5, 1, 9, 5, tzinfo=UTC),
    ... )
    >>> print(transition_table([row], time_format="%H:%M:%S"))
    time (UTC)  field   from → to                 masked  change
    ----------  ------  ------------------------  ------  --------
    09:05:00    status  "open" → "investigating"          0c5e1f2a
    """
    return format_table(
        ("time (UTC)", "field", "from → to", "masked", "change"),
        (
            (
                _utc(record.transitioned_at).strftime(time_format),
                record.field,
                f"{format_value(record.from_value)} → {format_value(record.to_value)}",
                "yes" if record.masked else "",
                short_id(record.change_id),
            )
            for record in records
        ),
    )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)

"""Plain-text output of the command line: a generic table formatter, the transition and
history tables, the consumer and dead-letter tables, and the one-line form of a change.

>>> print(format_table(("field", "to"), [("status", '"open"'), ("severity", '"high"')]))
field     to
--------  ------
status    "open"
severity  "high"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import Absent, ChangeEvent, TransitionRecord, iso_utc
from reactive_entities.domain.json import JSONValue, canonical_json
from reactive_entities.ports.feed import ConsumerStatus, DeadLetter

__all__ = [
    "actor_label",
    "change_line",
    "consumer_table",
    "dead_letter_table",
    "format_table",
    "format_value",
    "history_table",
    "printable",
    "short_id",
    "transition_table",
]

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


def history_table(
    records: Iterable[TransitionRecord],
    changes: Mapping[str, ChangeEvent],
    *,
    time_format: str = "%Y-%m-%d %H:%M:%S.%f",
) -> str:
    """Transition rows with their change's op, actor and run id (``changes`` by change
    id; a row whose change is missing shows ``?``).

    >>> at = datetime(2024, 5, 1, 9, 5, tzinfo=UTC)
    >>> change_id = "0c5e1f2a-0000-4000-8000-000000000000"
    >>> row = TransitionRecord(
    ...     "incident", "inc-1", "status", "open", "closed", False, change_id, at
    ... )
    >>> event = ChangeEvent(
    ...     "incident", "inc-1", "update", None, None, {}, ("status",), Actor.user("u-7"),
    ...     "run-1", at, change_id,
    ... )
    >>> print(history_table([row], {change_id: event}, time_format="%H:%M"))
    time (UTC)  field   from → to          masked  op      actor     run    change
    ----------  ------  -----------------  ------  ------  --------  -----  --------
    09:05       status  "open" → "closed"          update  user:u-7  run-1  0c5e1f2a
    """
    cells = []
    for record in records:
        change = changes.get(record.change_id)
        cells.append(
            (
                _utc(record.transitioned_at).strftime(time_format),
                printable(record.field),
                f"{format_value(record.from_value)} → {format_value(record.to_value)}",
                "yes" if record.masked else "",
                "?" if change is None else change.op,
                "?" if change is None else printable(actor_label(change.actor), limit=MAX_VALUE),
                "?" if change is None else _optional(change.run_id),
                short_id(record.change_id),
            )
        )
    return format_table(
        ("time (UTC)", "field", "from → to", "masked", "op", "actor", "run", "change"), cells
    )


def change_line(event: ChangeEvent) -> str:
    """One change on one line: position, time, kind:id, op, changed fields, actor, run.

    >>> event = ChangeEvent(
    ...     "incident", "inc-1", "update", None, None, {}, ("status", "severity"),
    ...     Actor.user("u-7"), None, datetime(2024, 5, 1, 9, 5, tzinfo=UTC), "0c5e1f2a-…",
    ... )
    >>> change_line(event)
    '-  2024-05-01T09:05:00.000000Z  incident:inc-1  update  status,severity  user:u-7  -'
    """
    fields = ",".join(printable(field) for field in event.changed_fields) or "-"
    return GAP.join(
        (
            "-" if event.position is None else str(event.position),
            iso_utc(event.occurred_at),
            f"{printable(event.kind)}:{printable(event.entity_id)}",
            event.op,
            fields,
            printable(actor_label(event.actor)),
            _optional(event.run_id),
        )
    )


def consumer_table(statuses: Iterable[ConsumerStatus]) -> str:
    """Named consumers and work-queue groups: mode, cursor, lag, claims, dead letters.
    Columns that only work queues have show ``-`` for a broadcast consumer.

    >>> from reactive_entities.domain.position import Position
    >>> print(consumer_table([
    ...     ConsumerStatus("audit", "broadcast", Position(7, 40), 0, None, 0, 0, 0),
    ...     ConsumerStatus("billing", "work-queue", Position(9, 2), 3, 1.25, 1, 2, 1),
    ... ]))
    name     mode        cursor  lag  lag (s)  in flight  waiting  dead letters
    -------  ----------  ------  ---  -------  ---------  -------  ------------
    audit    broadcast   7-40    0    -        -          -        -
    billing  work-queue  9-2     3    1.2      1          2        1
    """
    cells = []
    for status in statuses:
        queue = status.mode == "work-queue"
        cells.append(
            (
                printable(status.name, limit=MAX_VALUE),
                status.mode,
                "-" if status.position is None else str(status.position),
                str(status.lag_changes),
                "-" if status.lag_seconds is None else f"{status.lag_seconds:.1f}",
                str(status.in_flight) if queue else "-",
                str(status.waiting) if queue else "-",
                str(status.dead_letters) if queue else "-",
            )
        )
    return format_table(
        ("name", "mode", "cursor", "lag", "lag (s)", "in flight", "waiting", "dead letters"),
        cells,
    )


def dead_letter_table(
    letters: Iterable[DeadLetter], *, time_format: str = "%Y-%m-%d %H:%M:%S"
) -> str:
    """A group's dead letters: position, change, kind:id, attempts, when it failed (UTC),
    and the last error on one line, cut to 80 characters.

    >>> from reactive_entities.domain.position import Position
    >>> letter = DeadLetter(
    ...     "billing", "0c5e1f2a-0000", Position(9, 2), "incident", "inc-1", 4,
    ...     "RuntimeError: no\\n  route", datetime(2024, 5, 1, 9, 5, tzinfo=UTC),
    ... )
    >>> print(dead_letter_table([letter]))
    position  change    entity          attempts  failed at (UTC)      last error
    --------  --------  --------------  --------  -------------------  ----------------------
    9-2       0c5e1f2a  incident:inc-1  4         2024-05-01 09:05:00  RuntimeError: no route
    """
    return format_table(
        ("position", "change", "entity", "attempts", "failed at (UTC)", "last error"),
        (
            (
                str(letter.position),
                short_id(letter.change_id),
                f"{printable(letter.kind)}:{printable(letter.entity_id)}",
                str(letter.attempts),
                _utc(letter.failed_at).strftime(time_format),
                printable(" ".join(letter.last_error.split()), limit=2 * MAX_VALUE) or "-",
            )
            for letter in letters
        ),
    )


def actor_label(actor: Actor) -> str:
    """``type:id`` — who made a change, compactly.

    >>> actor_label(Actor.service("deployer"))
    'service:deployer'
    """
    return f"{actor.type}:{actor.id}"


def printable(text: str, *, limit: int | None = None) -> str:
    """``text`` with control and other unprintable characters escaped (so a value cannot
    break a line or a column), cut to ``limit`` characters with an ellipsis.

    >>> printable("inc\\n1\\t")
    'inc\\\\n1\\\\t'
    >>> printable("abcdef", limit=4)
    'abc…'
    """
    if not text.isprintable():
        text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _optional(text: str | None) -> str:
    return "-" if text is None else printable(text, limit=MAX_VALUE)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)

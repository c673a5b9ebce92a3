"""The obviously correct model of transactions and write-back handlers that the
model-based tests (blocking and asyncio engines) compare the engines with: a few dozen
lines of dicts and lists that state what SPEC §3, §5, §7, §14 and §15.1 mean, and the
hypothesis strategies of the operations they run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import attrs
from hypothesis import strategies as st

from reactive_entities.domain.events import ABSENT, ChangeEvent, TransitionRecord

__all__ = [
    "IDS",
    "OPS",
    "STATUSES",
    "Doc",
    "Model",
    "Op",
    "Row",
    "Ticket",
    "recorded_rows",
    "tickets",
]


@attrs.frozen
class Ticket:
    """The state under test: a status and a counter."""

    status: str
    n: int = 0


STATUSES = ("open", "urgent", "escalated", "closed")
IDS = ("t-1", "t-2", "t-3")
Doc: TypeAlias = dict[str, Any]
Row: TypeAlias = tuple[str, str, object, object]  # (op, field, from, to)
Op: TypeAlias = tuple[str, Ticket | None]  # (entity id, next state; None = remove)


class Model:
    """What the library must record and deliver, written as plainly as possible."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}  # the app's current state, as documents
        self.rows: dict[str, list[Row]] = {}  # per entity, oldest first
        self.events: list[tuple[str, str, Doc | None]] = []  # (id, op, next)
        self.touched: list[list[str]] = []  # each event's changed fields
        self.handled = 0  # events the handler has seen

    def write(self, entity_id: str, state: Ticket | None) -> None:
        """One mutate (``state``) or remove (None), then the handler's write-back."""
        prev = self.docs.get(entity_id)
        nxt = None if state is None else attrs.asdict(state)
        if prev is None and nxt is None:
            return
        if prev is None:
            op, fields = "create", sorted(nxt or {})
        elif nxt is None:
            op, fields = "remove", sorted(prev)
        else:
            op, fields = "update", sorted(f for f in nxt if nxt[f] != prev[f])
        if not fields:
            return
        if nxt is None:
            del self.docs[entity_id]
        else:
            self.docs[entity_id] = nxt
        rows = self.rows.setdefault(entity_id, [])
        if op != "remove":
            for f in fields:
                rows.append((op, f, ABSENT if prev is None else prev[f], nxt[f]))  # type: ignore[index]
        else:
            rows.append(("remove", "", None, None))
        self.events.append((entity_id, op, nxt))
        self.touched.append(fields)

    def run(self, ops: list[Op], *, commit: bool) -> None:
        """A transaction: all of its writes, or none; handlers' write-backs follow
        the transaction's own events."""
        if not commit:
            return
        for entity_id, state in ops:
            self.write(entity_id, state)
        self.escalate()

    def escalate(self) -> None:
        """The handler (subscribed to ``status``): each event that changed the status to
        ``urgent`` is followed by an escalation, in delivery order."""
        while self.handled < len(self.events):
            entity_id, _, nxt = self.events[self.handled]
            touched = self.touched[self.handled]
            self.handled += 1
            if nxt is not None and nxt["status"] == "urgent" and "status" in touched:
                self.write(entity_id, Ticket("escalated", nxt["n"]))


def tickets(max_n: int = 3) -> st.SearchStrategy[Ticket]:
    """Small ticket states, so updates often repeat values (no-ops) or change one field."""
    return st.builds(Ticket, st.sampled_from(STATUSES), st.integers(0, max_n))


OPS = st.lists(st.tuples(st.sampled_from(IDS), st.none() | tickets()), min_size=1, max_size=4)


def recorded_rows(
    history: Sequence[TransitionRecord], delivered: Sequence[ChangeEvent]
) -> list[Row]:
    """An entity's rows as :class:`Model` writes them, from its ``history`` and its
    delivered events: each delivered change's rows (a remove as a marker row), in
    delivery order. Every stored row must belong to a delivered change."""
    assert {r.change_id for r in history} <= {e.change_id for e in delivered}
    out: list[Row] = []
    for event in delivered:
        if event.op == "remove":
            out.append(("remove", "", None, None))
        else:
            out.extend(
                (event.op, r.field, r.from_value, r.to_value)
                for r in history
                if r.change_id == event.change_id
            )
    return out

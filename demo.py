"""The scripted incident scenario behind ``reactive-entities demo``.

An application owns its incidents (here, a dict); every write goes through
``handle.mutate`` / ``handle.remove``. The script creates two incidents, raises a
severity, makes a status flap, lets an automated run write a title that contains the
run's secret, sets a ``sensitive`` field, writes an unchanged state (a no-op) and removes
an incident. A subscriber prints each change event as it arrives; then the transition
history is printed as tables, and the temporal questions are answered for the incident
still alive.

By default the engine is in memory with a :class:`ManualClock`, so the output is the
same on every run except the random change ids. With a DSN the same script runs on
PostgreSQL, in a fresh schema, still on the manual clock (a database clock could not be
advanced between steps). Only masked data is printed: the run's secret and the
sensitive value appear as ``****``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO

import attrs

from reactive_entities import compose
from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.json import canonical_json
from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.tables import format_table, format_value, transition_table

__all__ = [
    "START",
    "RUN_ID",
    "RUN_SECRET",
    "SENSITIVE_VALUE",
    "Incident",
    "IncidentTable",
    "demo_schema_name",
    "run",
    "run_scenario",
]

#: When the demo's manual clock starts.
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
#: The automated run whose secret is registered.
RUN_ID = "run-1"
#: The run's secret: the run writes it into a title; it must never be printed.
RUN_SECRET = "ghp_demoRunToken7f3a9c"
#: The value written to the sensitive ``api_token`` field; it must never be printed.
SENSITIVE_VALUE = "sk-live-demo-4b1d8e02"

ALICE = Actor.user("alice", "Alice")
BOB = Actor.user("bob", "Bob")
BOT = Actor.service("remediation-bot", "Remediation bot")


@attrs.frozen
class Incident:
    """The application's incident, as its own code defines it."""

    status: Literal["open", "investigating", "resolved"]
    severity: Literal["low", "high"]
    title: str
    api_token: str | None = None
    system_ids: tuple[str, ...] = ()


class IncidentTable:
    """The application's own storage of incidents; ``read`` is the batched accessor."""

    def __init__(self) -> None:
        self.rows: dict[str, Incident] = {}

    def read(self, ids: Sequence[str]) -> dict[str, Incident]:
        """The stored incidents among ``ids``."""
        return {i: self.rows[i] for i in ids if i in self.rows}

    def save(self, incident_id: str, incident: Incident) -> Callable[[], Incident]:
        """An ``apply`` that stores ``incident``."""

        def apply() -> Incident:
            self.rows[incident_id] = incident
            return incident

        return apply

    def update(self, incident_id: str, **changes: Any) -> Callable[[], Incident]:
        """An ``apply`` that changes some fields of the stored incident."""

        def apply() -> Incident:
            incident: Incident = attrs.evolve(self.rows[incident_id], **changes)
            self.rows[incident_id] = incident
            return incident

        return apply

    def delete(self, incident_id: str) -> Callable[[], None]:
        """An ``apply`` that deletes the incident."""

        def apply() -> None:
            del self.rows[incident_id]

        return apply


def demo_schema_name() -> str:
    """A fresh schema name, so a demo never touches real data: ``re_demo_<8 hex>``."""
    return f"re_demo_{uuid.uuid4().hex[:8]}"


def run(out: TextIO, *, dsn: str | None = None, schema: str | None = None) -> None:
    """Run the scenario on the in-memory engine, or on PostgreSQL when ``dsn`` is given,
    printing to ``out``."""
    clock = ManualClock(START)
    if dsn is None:
        where = "the in-memory engine"
        engine = compose.in_memory(clock=clock)
    else:
        schema = schema if schema is not None else demo_schema_name()
        where = f'PostgreSQL, schema "{schema}"'
        engine = compose.postgres(dsn, schema=schema, clock=clock)
    print(f"reactive-entities demo on {where}", file=out)
    print(f"The manual clock starts at {START:%Y-%m-%d %H:%M} UTC.", file=out)
    with engine:
        run_scenario(engine, clock, out)
    if dsn is not None:
        print(
            f"\nThe log stays in schema {schema}; read it again with:\n"
            f"  reactive-entities history --dsn DSN --schema {schema} incident inc-1",
            file=out,
        )


def run_scenario(engine: Engine, clock: ManualClock, out: TextIO) -> None:
    """The script itself, on a fresh engine driven by ``clock``."""
    table = IncidentTable()
    incidents = engine.define_entity("incident", Incident, read=table.read, sensitive=["api_token"])
    engine.secrets.register(RUN_ID, [RUN_SECRET])

    def at(minute: int) -> None:
        clock.set(START + timedelta(minutes=minute))

    _heading(out, "Change events, as a subscriber receives them")
    with engine.subscribe(lambda event: _print_event(event, out)):
        at(0)
        incidents.mutate(
            "inc-1",
            table.save(
                "inc-1",
                Incident("open", "low", "Checkout latency above SLO", None, ("checkout", "db-1")),
            ),
            actor=ALICE,
        )
        at(1)
        incidents.mutate(
            "inc-2",
            table.save("inc-2", Incident("open", "low", "Disk 91% full", None, ("db-2",))),
            actor=ALICE,
        )
        at(3)
        incidents.mutate("inc-1", table.update("inc-1", severity="high"), actor=ALICE)
        for minute, status in ((5, "investigating"), (8, "open"), (12, "investigating")):
            at(minute)
            incidents.mutate("inc-1", table.update("inc-1", status=status), actor=BOB)
        at(20)
        incidents.mutate(
            "inc-1",
            table.update("inc-1", title=f"Rollback with token {RUN_SECRET} failed"),
            actor=BOT,
            run_id=RUN_ID,
        )
        at(25)
        incidents.mutate("inc-1", table.update("inc-1", api_token=SENSITIVE_VALUE), actor=ALICE)
        at(27)
        incidents.mutate("inc-1", table.update("inc-1"), actor=ALICE)
        print(f"{_time(clock.now())}  (inc-1 written again unchanged: no event, no row)", file=out)
        at(30)
        incidents.remove("inc-2", table.delete("inc-2"), actor=ALICE)
    engine.secrets.drop(RUN_ID)

    for incident_id in ("inc-1", "inc-2"):
        _heading(out, f"Transition history of incident:{incident_id}")
        print(transition_table(incidents.history(incident_id), time_format="%H:%M:%S"), file=out)
    print("(incident:inc-2 was removed: a remove is logged as a change with no rows.)", file=out)

    at(40)
    _heading(out, f"Temporal questions about incident:inc-1, at {_time(clock.now())}")
    print(_temporal_answers(incidents, "inc-1"), file=out)


def _temporal_answers(incidents: EntityHandle[Incident], incident_id: str) -> str:
    since = incidents.in_state_since(incident_id, "status")
    token_since = incidents.in_state_since(incident_id, "api_token")
    answers = (
        ("in_state_since(status)", _time(since)),
        ("in_state_for(status)", str(incidents.in_state_for(incident_id, "status"))),
        ("in_state_since(api_token)", _time(token_since)),
        (
            "transition_count(status, window=1h)",
            str(incidents.transition_count(incident_id, "status", window=timedelta(hours=1))),
        ),
        (
            "transition_count(status, window=30m)",
            str(incidents.transition_count(incident_id, "status", window=timedelta(minutes=30))),
        ),
    )
    values_at = tuple(
        (
            f"value_at({field}, {_time(moment)})",
            format_value(incidents.value_at(incident_id, field, moment)),
        )
        for field, moment in (
            ("status", START + timedelta(minutes=10)),
            ("severity", START + timedelta(minutes=2)),
            ("title", START + timedelta(minutes=22)),
        )
    )
    return format_table(("question", "answer"), (*answers, *values_at))


def _print_event(event: ChangeEvent, out: TextIO) -> None:
    by = f"by {event.actor.type}:{event.actor.id}"
    if event.run_id is not None:
        by += f" in run {event.run_id}"
    print(
        f"{_time(event.occurred_at)}  {event.op:<6}  {event.kind}:{event.entity_id}  {by}",
        file=out,
    )
    print(f"          changed  {', '.join(event.changed_fields)}", file=out)
    print(f"          delta    {canonical_json(event.delta)}", file=out)


def _heading(out: TextIO, title: str) -> None:
    print(f"\n== {title} ==", file=out)


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%H:%M:%S}"

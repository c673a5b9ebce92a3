"""Transactions, write-back handlers and durable delivery against an obviously correct
model.

:class:`TransactionsVsModel` drives an in-memory engine and a PostgreSQL engine with the
same random plain writes, transactions (commit or roll back; several entities; the same
entity more than once) and a handler that writes back (an ``urgent`` ticket is
escalated by its own event's handler). After every step both engines must agree with
:class:`Model` — a few dozen lines of dicts and lists that state what SPEC §3, §5, §7,
§14 and §15.1 mean — on each entity's rows (field, from, to, op of their change) and on
the events delivered, in order — in process, to a ``Broadcast()`` subscriber (every
change once, in the model's order) and to a ``WorkQueue`` member (every change once, in
order per entity).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from secrets import token_hex
from typing import Any

import attrs
import psycopg
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from psycopg import sql

from reactive_entities import Broadcast, ChangeEvent, Engine, WorkQueue, compose
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.transaction_model import (
    IDS,
    OPS,
    Model,
    Op,
    Row,
    Ticket,
    recorded_rows,
    tickets,
)


class RollbackError(Exception):
    """Raised inside a transaction the machine means to roll back."""


@attrs.define
class Side:
    """One engine, its app storage, and what its subscriber received."""

    name: str
    engine: Engine
    storage: DictStorage[Ticket]
    events: list[ChangeEvent] = attrs.Factory(list)
    broadcast: list[ChangeEvent] = attrs.Factory(list)  #: a Broadcast() subscriber's
    queued: list[ChangeEvent] = attrs.Factory(list)  #: a WorkQueue(group) member's

    def run(self, ops: list[Op], *, commit: bool) -> None:
        """The ops in one transaction; on rollback the app restores its own dict."""
        handle = self.engine.handle("ticket")
        saved = dict(self.storage.rows)
        try:
            with self.engine.transaction() as tx:
                for entity_id, state in ops:
                    if state is None:
                        handle.remove(entity_id, self.delete(entity_id), tx=tx)
                    else:
                        handle.mutate(entity_id, self.storage.put(entity_id, state), tx=tx)
                if not commit:
                    raise RollbackError
        except RollbackError:
            self.storage.rows = saved  # the app undoes its own memory writes

    def delete(self, entity_id: str) -> Any:
        """An ``apply`` removing the entity from the app's dict."""

        def apply() -> None:
            self.storage.rows.pop(entity_id, None)

        return apply

    def rows(self, entity_id: str) -> list[Row]:
        """The entity's rows as the model writes them: each delivered change's rows (a
        remove as a marker row), in delivery order. Every stored row must belong to a
        delivered change."""
        history = self.engine.handle("ticket").history(entity_id)
        return recorded_rows(history, [e for e in self.events if e.entity_id == entity_id])


class TransactionsVsModel(RuleBasedStateMachine):
    """Memory and PostgreSQL engines against :class:`Model`."""

    dsn: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.clock = ManualClock()
        self.schema = f"re_txmodel_{token_hex(6)}"
        self.sides = [
            self.side("memory", compose.in_memory(clock=self.clock)),
            self.side(
                "postgres",
                compose.postgres(self.dsn, schema=self.schema, clock=self.clock, pool_size=2),
            ),
        ]
        note(f"schema {self.schema}")

    def side(self, name: str, engine: Engine) -> Side:
        """Define the kind, subscribe the recorder and the escalating handler."""
        storage: DictStorage[Ticket] = DictStorage()
        engine.define_entity("ticket", Ticket, read=storage.read)
        side = Side(name, engine, storage)
        engine.subscribe(side.events.append)
        engine.subscribe(side.broadcast.append, delivery=Broadcast())
        engine.subscribe(side.queued.append, delivery=WorkQueue(group="model"))
        handle = engine.handle("ticket")

        def escalate(event: ChangeEvent) -> None:
            if event.next is not None and event.next["status"] == "urgent":
                state = Ticket("escalated", event.next["n"])  # type: ignore[arg-type]
                handle.mutate(event.entity_id, storage.put(event.entity_id, state))

        engine.subscribe(escalate, kind="ticket", fields={"status"})
        return side

    @rule(entity_id=st.sampled_from(IDS), state=st.none() | tickets())
    def write(self, entity_id: str, state: Ticket | None) -> None:
        """A plain mutate or remove, outside any transaction."""
        for side in self.sides:
            handle = side.engine.handle("ticket")
            if state is None:
                handle.remove(entity_id, side.delete(entity_id))
            else:
                handle.mutate(entity_id, side.storage.put(entity_id, state))
        self.model.write(entity_id, state)
        self.model.escalate()

    @rule(ops=OPS, commit=st.booleans())
    def transaction(self, ops: list[Op], commit: bool) -> None:
        """Several writes in one transaction (the same entity possibly more than once),
        committed or rolled back."""
        for side in self.sides:
            side.run(ops, commit=commit)
        self.model.run(ops, commit=commit)

    @invariant()
    def engines_match_the_model(self) -> None:
        """Rows per entity and the delivered events, in order, are the model's."""
        expected_events = self.model.events
        for side in self.sides:
            got = [
                (e.entity_id, e.op, None if e.next is None else dict(e.next)) for e in side.events
            ]
            assert got == expected_events, f"{side.name} events"
            for entity_id in IDS:
                assert side.rows(entity_id) == self.model.rows.get(entity_id, []), (
                    f"{side.name} rows of {entity_id}"
                )
            assert side.engine._delivery.pending() == 0
            self.check_durable_delivery(side, expected_events)

    def check_durable_delivery(self, side: Side, expected: list[Any]) -> None:
        """The Broadcast subscriber gets every change once, in model order; the work
        queue every change once, in order per entity (both on their own threads)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(side.broadcast) < len(expected) or len(side.queued) < len(expected)
        ):
            time.sleep(0.005)

        def form(events: list[ChangeEvent]) -> list[Any]:
            return [(e.entity_id, e.op, None if e.next is None else dict(e.next)) for e in events]

        assert form(side.broadcast) == expected, f"{side.name} broadcast"
        queued = form(side.queued)

        def key(item: Any) -> str:
            return json.dumps(item, sort_keys=True)

        assert sorted(map(key, queued)) == sorted(map(key, expected)), f"{side.name} queue"
        for entity_id in IDS:
            mine = [e for e in expected if e[0] == entity_id]
            assert [e for e in queued if e[0] == entity_id] == mine, f"{side.name} queue order"
        positions = [e.position for e in side.broadcast]
        assert all(
            a is not None and b is not None and a < b for a, b in itertools.pairwise(positions)
        )

    def teardown(self) -> None:
        """Close both engines and drop the run's schema."""
        for side in self.sides:
            side.engine.close()
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )


def _settings() -> settings:
    profile = settings.default
    base = profile.max_examples if profile is not None else 100
    return settings(
        max_examples=max(1, round(base * 0.5)),
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@contextmanager
def _dsn(dsn: str) -> Iterator[None]:
    TransactionsVsModel.dsn = dsn
    try:
        yield
    finally:
        TransactionsVsModel.dsn = ""


def test_transactions_and_write_back_handlers_follow_the_model(pg_dsn: str) -> None:
    """Random plain writes and transactions (commit, rollback, several entities, one
    entity twice) with an escalating handler: both engines record and deliver exactly
    what the model says."""
    with _dsn(pg_dsn):
        run_state_machine_as_test(TransactionsVsModel, settings=_settings())

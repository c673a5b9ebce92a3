"""The asyncio engine against the same obviously correct model as the blocking engine
(:mod:`reactive_entities.testing.transaction_model`).

:class:`AsyncTransactionsVsModel` is a plain (synchronous) state machine that owns an
event loop and drives asyncio engines on it — in memory, and on PostgreSQL when the test
run has one — one ``run_until_complete`` per rule: random plain writes, transactions
(committed or rolled back, several entities, the same entity twice), with an ``async``
handler that writes back (an ``urgent`` ticket is escalated by its own event's handler)
and a ``Broadcast()`` subscriber. After every step each engine must agree with the
model on each entity's rows and on the events delivered, in order.
"""

from __future__ import annotations

import asyncio
import time
from secrets import token_hex
from typing import Any

import attrs
import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from psycopg import sql

from reactive_entities import Broadcast, ChangeEvent
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.aio import AsyncEngine, compose
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.transaction_model import (
    IDS,
    OPS,
    Model,
    Op,
    Ticket,
    recorded_rows,
    tickets,
)


class RollbackError(Exception):
    """Raised inside a transaction the machine means to roll back."""


@attrs.define
class AsyncSide:
    """One asyncio engine, its app storage, and what its subscribers received."""

    name: str
    engine: AsyncEngine
    storage: DictStorage[Ticket]
    events: list[ChangeEvent] = attrs.Factory(list)
    broadcast: list[ChangeEvent] = attrs.Factory(list)

    async def subscribe(self) -> None:
        """Define the kind; subscribe the recorders and the escalating ``async`` handler."""
        engine, storage = self.engine, self.storage
        handle = engine.define_entity("ticket", Ticket, read=storage.read)
        await engine.subscribe(self.events.append)
        await engine.subscribe(self.broadcast.append, delivery=Broadcast())

        async def escalate(event: ChangeEvent) -> None:
            if event.next is not None and event.next["status"] == "urgent":
                state = Ticket("escalated", event.next["n"])  # type: ignore[arg-type]
                await handle.mutate(event.entity_id, storage.put(event.entity_id, state))

        await engine.subscribe(escalate, kind="ticket", fields={"status"})

    async def write(self, entity_id: str, state: Ticket | None, tx: Any = None) -> None:
        """One mutate (an ``async`` apply) or remove (a plain one)."""
        handle = self.engine.handle("ticket")
        if state is None:
            await handle.remove(entity_id, lambda: self.storage.rows.pop(entity_id, None), tx=tx)
            return

        async def apply() -> Ticket:
            await asyncio.sleep(0)
            return self.storage.put(entity_id, state)()

        await handle.mutate(entity_id, apply, tx=tx)

    async def run(self, ops: list[Op], *, commit: bool) -> None:
        """The ops in one transaction; on rollback the app restores its own dict."""
        saved = dict(self.storage.rows)
        try:
            async with self.engine.transaction() as tx:
                for entity_id, state in ops:
                    await self.write(entity_id, state, tx)
                if not commit:
                    raise RollbackError
        except RollbackError:
            self.storage.rows = saved

    async def check(self, model: Model) -> None:
        """Rows per entity and the delivered events (in process and broadcast), in
        order, are the model's."""
        expected = model.events
        assert _form(self.events) == expected, f"{self.name} events"
        for entity_id in IDS:
            history = await self.engine.handle("ticket").history(entity_id)
            delivered = [e for e in self.events if e.entity_id == entity_id]
            rows = recorded_rows(history, delivered)
            assert rows == model.rows.get(entity_id, []), f"{self.name} rows of {entity_id}"
        assert self.engine._delivery.pending() == 0
        deadline = time.monotonic() + 10
        while len(self.broadcast) < len(expected) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert _form(self.broadcast) == expected, f"{self.name} broadcast"


def _form(events: list[ChangeEvent]) -> list[Any]:
    return [(e.entity_id, e.op, None if e.next is None else dict(e.next)) for e in events]


class AsyncTransactionsVsModel(RuleBasedStateMachine):
    """Asyncio engines (memory, and PostgreSQL when ``dsn`` is set) against the model."""

    dsn: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model = Model()
        self.clock = ManualClock()
        self.schema = f"re_aiomodel_{token_hex(6)}"
        self.sides = [self.run(self.side("memory"))]
        if self.dsn:
            self.sides.append(self.run(self.side("postgres")))

    def run(self, work: Any) -> Any:
        """Run a coroutine to completion on the machine's loop."""
        return self.loop.run_until_complete(work)

    async def side(self, name: str) -> AsyncSide:
        """An engine on ``name``'s store, its kind and subscribers."""
        engine = (
            compose.in_memory(clock=self.clock, poll_interval=0.02)
            if name == "memory"
            else await compose.postgres(
                self.dsn, schema=self.schema, clock=self.clock, pool_size=2, poll_interval=0.02
            )
        )
        side = AsyncSide(name, engine, DictStorage())
        await side.subscribe()
        return side

    @rule(entity_id=st.sampled_from(IDS), state=st.none() | tickets())
    def write(self, entity_id: str, state: Ticket | None) -> None:
        """A plain mutate or remove, outside any transaction."""
        for side in self.sides:
            self.run(side.write(entity_id, state))
        self.model.write(entity_id, state)
        self.model.escalate()

    @rule(ops=OPS, commit=st.booleans())
    def transaction(self, ops: list[Op], commit: bool) -> None:
        """Several writes in one transaction, committed or rolled back."""
        for side in self.sides:
            self.run(side.run(ops, commit=commit))
        self.model.run(ops, commit=commit)

    @invariant()
    def engines_match_the_model(self) -> None:
        """Every engine agrees with the model."""
        for side in self.sides:
            self.run(side.check(self.model))

    def teardown(self) -> None:
        """Close the engines and the loop; drop the run's schema."""
        try:
            for side in self.sides:
                self.run(side.engine.close())
        finally:
            self.loop.close()
        if self.dsn:
            with psycopg.connect(self.dsn, autocommit=True) as db:
                db.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
                )


def _settings() -> settings:
    profile = settings.default
    base = profile.max_examples if profile is not None else 100
    return settings(
        max_examples=max(1, round(base * 0.3)),
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def test_the_asyncio_memory_engine_follows_the_model() -> None:
    """Random writes and transactions with an ``async`` write-back handler: the asyncio
    in-memory engine records and delivers exactly what the model says."""
    run_state_machine_as_test(AsyncTransactionsVsModel, settings=_settings())


def test_the_asyncio_engines_follow_the_model_on_both_stores(pg_dsn: str) -> None:
    """The same on the asyncio PostgreSQL engine beside the in-memory one."""
    AsyncTransactionsVsModel.dsn = pg_dsn
    try:
        run_state_machine_as_test(AsyncTransactionsVsModel, settings=_settings())
    finally:
        AsyncTransactionsVsModel.dsn = ""

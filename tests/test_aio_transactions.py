"""DESIGN §8–§10, SPEC §14–§15.1 on the asyncio engine, both stores: the counterparts
of test_transactions (same assertions, tasks instead of threads), plus what only asyncio
has: coroutine read/apply/handlers, re-entry through contextvars, cancellation, and
100 tasks writing 10 entities."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta
from typing import Any

import pytest

from reactive_entities import ChangeEvent, InvalidArgumentError, StateValidationError, StoreError
from reactive_entities.aio import compose
from reactive_entities.testing.aio_world import AsyncWorld, fresh_id, open_world
from reactive_entities.testing.examples import Incident
from reactive_entities.testing.plugin import DictStorage

Backend = tuple[str, str | None, str | None]
OPEN = Incident("open", "low")


def put(w: AsyncWorld, entity_id: str, state: Incident) -> Any:
    """An ``async`` apply storing ``state`` (the plain one is ``w.storage.put``)."""

    async def apply() -> Incident:
        await asyncio.sleep(0)  # a real await: other tasks run meanwhile
        return w.storage.put(entity_id, state)()

    return apply


async def test_a_handler_writing_back_the_same_entity_completes(aio_backend: Backend) -> None:
    """A handler (async) that mutates the entity it is handling finishes; both changes
    are recorded and their events arrive in order."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()

        async def escalate(event: ChangeEvent) -> None:
            if event.delta.get("status") == "investigating":
                await w.handle.mutate(i, put(w, i, Incident("resolved", "high")))

        await w.engine.subscribe(escalate, kind="incident", fields={"status"})
        await w.handle.mutate(i, w.storage.put(i, OPEN))
        await asyncio.wait_for(w.handle.mutate(i, put(w, i, Incident("investigating", "low"))), 10)
        assert await w.statuses(i) == ["open", "investigating", "resolved"]
        assert w.event_statuses(i) == ["open", "investigating", "resolved"]


async def test_a_mutate_inside_its_own_apply_raises_at_once(aio_backend: Backend) -> None:
    """Re-entry: mutating the entity inside its own (async) apply raises naming
    ``kind:id`` at once; so does writing, without tx=, an entity the task's open
    transaction holds, and the transaction goes on."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        inner: list[BaseException] = []

        async def apply() -> Incident:
            try:
                await w.handle.mutate(i, w.storage.put(i, OPEN))
            except InvalidArgumentError as error:
                inner.append(error)
            return w.storage.put(i, Incident("investigating", "low"))()

        started = time.monotonic()
        await w.handle.mutate(i, apply)
        assert time.monotonic() - started < 1
        assert len(inner) == 1
        assert f"incident:{i}" in str(inner[0])
        j = fresh_id()
        async with w.engine.transaction() as tx:
            await w.handle.mutate(j, w.storage.put(j, OPEN), tx=tx)
            with pytest.raises(InvalidArgumentError, match=f"incident:{j}"):
                await w.handle.mutate(j, w.storage.put(j, OPEN))

            async def nested() -> Any:
                return await w.handle.mutate(j, w.storage.put(j, OPEN), tx=tx)

            with pytest.raises(InvalidArgumentError, match="being written"):
                await w.handle.mutate(j, nested, tx=tx)
        assert await w.statuses(i) == ["investigating"]
        assert await w.statuses(j) == ["open"]


async def test_events_follow_commit_and_rollback_discards(aio_backend: Backend) -> None:
    """Nothing is delivered inside the block; at commit every change, in recording order;
    an exception rolls everything back and propagates; a caught validation error does
    not; ``tx`` is unusable after its block."""
    async with open_world(*aio_backend) as w:
        first, second = fresh_id(), fresh_id()
        async with w.engine.transaction() as tx:
            await w.handle.mutate(first, w.storage.put(first, OPEN), tx=tx)
            await w.handle.mutate(second, put(w, second, OPEN), tx=tx)
            await w.handle.mutate(first, w.storage.put(first, Incident("resolved", "low")), tx=tx)
            with pytest.raises(StateValidationError):
                await w.handle.mutate(second, lambda: {"status": "nope", "severity": "x"}, tx=tx)
            assert w.events == []
            assert await w.handle.history(first) == ()
        assert [(e.entity_id, e.op) for e in w.events] == [
            (first, "create"),
            (second, "create"),
            (first, "update"),
        ]
        gone = fresh_id()
        with pytest.raises(KeyError, match="boom"):  # noqa: PT012 (the block under test)
            async with w.engine.transaction() as tx2:
                await w.handle.mutate(gone, w.storage.put(gone, OPEN), tx=tx2)
                raise KeyError("boom")
        assert await w.handle.history(gone) == ()
        assert len(w.events) == 3
        await w.handle.mutate(gone, w.storage.put(gone, OPEN))  # the entity is free
        with pytest.raises(InvalidArgumentError):
            await w.handle.mutate(gone, w.storage.put(gone, OPEN), tx=tx)
        with pytest.raises(InvalidArgumentError):
            _ = tx.connection
        assert not tx.active
        async with w.engine.transaction() as tx3:
            await w.handle.remove(gone, lambda: None, tx=tx3)
        assert w.events[-1].op == "remove"


@pytest.mark.parametrize("store", ["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_lock_waits_are_bounded(store: str, request: pytest.FixtureRequest) -> None:
    """Waiting for an entity another transaction holds ends after ``lock_timeout`` with
    StoreError naming ``kind:id``; apply never runs."""
    where: tuple[Any, ...] = ("memory",)
    if store == "postgres":
        where = (store, request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema"))
    async with open_world(*where, lock_timeout=timedelta(milliseconds=200)) as w:
        i = fresh_id()
        held, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with w.engine.transaction() as tx:
                await w.handle.mutate(i, w.storage.put(i, OPEN), tx=tx)
                held.set()
                await release.wait()

        task = asyncio.create_task(holder())
        applied: list[int] = []
        try:
            await held.wait()
            started = time.monotonic()
            with pytest.raises(StoreError, match=f"timed out.*incident:{i}"):
                await w.handle.mutate(i, lambda: applied.append(1))
            assert 0.15 < time.monotonic() - started < 5
            assert applied == []
        finally:
            release.set()
            await task


async def test_events_of_one_entity_arrive_in_recording_order_across_tasks(
    aio_backend: Backend,
) -> None:
    """8 tasks writing one entity: events are delivered in the log's order."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        await w.handle.mutate(i, w.storage.put(i, Incident("open", "low", title="0")))

        async def work(n: int) -> None:
            for k in range(10):
                await w.handle.mutate(i, put(w, i, Incident("open", "low", title=f"{n}-{k}")))

        await asyncio.gather(*(work(n) for n in range(8)))
        logged = [r.to_value for r in await w.handle.history(i, field="title")]
        assert len(logged) == 81
        assert [e.next["title"] for e in w.events if e.next is not None] == logged


async def test_a_handler_changing_an_event_changes_nothing_recorded(aio_backend: Backend) -> None:
    """Documents handed to handlers and history rows are the receiver's to change."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()

        def vandal(event: ChangeEvent) -> None:
            assert event.next is not None
            event.next["system_ids"].append("x")  # type: ignore[union-attr]

        await w.engine.subscribe(vandal)
        await w.handle.mutate(i, w.storage.put(i, Incident("open", "low", system_ids=("a",))))
        rows = await w.handle.history(i, field="system_ids")
        rows[0].to_value.append("z")  # type: ignore[union-attr]
        assert [r.to_value for r in await w.handle.history(i, field="system_ids")] == [["a"]]


async def test_a_blocked_handler_holds_up_only_its_own_entity(aio_backend: Backend) -> None:
    """An async handler blocked on one entity: other writes, events and queries go on;
    the blocked entity's later events follow once it returns, in order."""
    async with open_world(*aio_backend) as w:
        slow, fast = fresh_id(), fresh_id()
        release, entered = asyncio.Event(), asyncio.Event()

        async def block(event: ChangeEvent) -> None:
            if event.entity_id == slow and event.op == "create":
                entered.set()
                await release.wait()

        await w.engine.subscribe(block)
        writer = asyncio.create_task(w.handle.mutate(slow, w.storage.put(slow, OPEN)))
        await asyncio.wait_for(entered.wait(), 10)
        await w.handle.mutate(slow, w.storage.put(slow, Incident("resolved", "low")))
        await w.handle.mutate(fast, w.storage.put(fast, OPEN))
        assert await w.statuses(slow) == ["open", "resolved"]
        assert w.event_statuses(fast) == ["open"]
        assert w.event_statuses(slow) == ["open"]
        release.set()
        await writer
        assert w.event_statuses(slow) == ["open", "resolved"]


# -- asyncio only ------------------------------------------------------------------------


async def test_plain_and_coroutine_read_apply_and_handlers_mix(aio_backend: Backend) -> None:
    """read, apply and handlers may each be plain or ``async``; all four combinations of
    read and apply record the same changes, and both kinds of handler see them."""
    async with open_world(*aio_backend) as w:
        storage: DictStorage[Incident] = DictStorage()

        async def async_read(ids: Any) -> Any:
            await asyncio.sleep(0)
            return storage.read(ids)

        handles = {
            "plain": w.engine.define_entity("plain_read", Incident, read=storage.read),
            "async": w.engine.define_entity("async_read", Incident, read=async_read),
        }
        plain_got: list[str] = []
        async_got: list[str] = []

        async def on_event(event: ChangeEvent) -> None:
            await asyncio.sleep(0)
            async_got.append(event.entity_id)

        await w.engine.subscribe(lambda e: plain_got.append(e.entity_id), kind="async_read")
        await w.engine.subscribe(on_event, kind="async_read")
        for name, handle in handles.items():
            for how in ("plain", "async"):
                i = f"{name}-{how}-{fresh_id()}"
                first = storage.put(i, OPEN) if how == "plain" else put_in(storage, i, OPEN)
                await handle.mutate(i, first)
                await handle.mutate(i, put_in(storage, i, Incident("resolved", "low")))
                rows = await handle.history(i, field="status")
                assert [(r.from_value, r.to_value) for r in rows][1:] == [("open", "resolved")]
                assert await handle.get(i) == Incident("resolved", "low")
        assert plain_got == async_got
        assert len(plain_got) == 4


def put_in(storage: DictStorage[Incident], entity_id: str, state: Incident) -> Any:
    """An ``async`` apply storing ``state`` in ``storage``."""

    async def apply() -> Incident:
        await asyncio.sleep(0)
        return storage.put(entity_id, state)()

    return apply


async def test_cancelled_inside_apply_leaves_nothing_and_frees_the_entity(
    aio_backend: Backend,
) -> None:
    """A task cancelled inside ``apply`` (own transaction or ``async with`` block):
    nothing recorded, no event, and the entity's lock is free at once."""
    async with open_world(*aio_backend, lock_timeout=timedelta(seconds=1)) as w:
        i = fresh_id()
        inside = asyncio.Event()

        async def slow_apply() -> Incident:
            inside.set()
            await asyncio.sleep(30)
            return OPEN

        async def in_transaction() -> None:
            async with w.engine.transaction() as tx:
                await w.handle.mutate(fresh_id(), w.storage.put(fresh_id(), OPEN), tx=tx)
                await w.handle.mutate(i, slow_apply, tx=tx)

        for write in (w.handle.mutate(i, slow_apply), in_transaction()):
            inside.clear()
            task = asyncio.create_task(write)
            await inside.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await w.handle.history(i) == ()
        assert w.events == []
        started = time.monotonic()
        await w.handle.mutate(i, w.storage.put(i, OPEN))  # a held lock would time out
        assert time.monotonic() - started < 0.5
        assert await w.statuses(i) == ["open"]


async def test_cancelled_while_waiting_for_a_lock_holds_nothing(aio_backend: Backend) -> None:
    """A task cancelled while it waits for an entity's lock never runs apply and leaves
    the lock to the others: the holder, then the next writer, proceed in order."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        held, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with w.engine.transaction() as tx:
                await w.handle.mutate(i, w.storage.put(i, OPEN), tx=tx)
                held.set()
                await release.wait()

        holding = asyncio.create_task(holder())
        await held.wait()
        applied: list[int] = []
        waiter = asyncio.create_task(w.handle.mutate(i, lambda: applied.append(1)))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await holding
        await asyncio.wait_for(w.handle.mutate(i, w.storage.put(i, Incident("resolved", "low"))), 5)
        assert applied == []
        assert await w.statuses(i) == ["open", "resolved"]


async def test_a_hundred_tasks_ten_entities(aio_backend: Backend) -> None:
    """100 concurrent tasks on one loop, 10 entities: every chain intact (each row's
    from is the previous row's to), one change per change, per-entity event order."""
    async with open_world(*aio_backend) as w:
        ids = [fresh_id("hundred") for _ in range(10)]
        counter = itertools.count()

        async def task(n: int) -> None:
            for k in range(3):
                i = ids[(n + k) % len(ids)]
                await w.handle.mutate(
                    i, put(w, i, Incident("open", "low", title=f"{n}-{k}-{next(counter)}"))
                )

        await asyncio.gather(*(task(n) for n in range(100)))
        total = 0
        for i in ids:
            rows = await w.handle.history(i, field="title")
            assert all(a.to_value == b.from_value for a, b in itertools.pairwise(rows))
            changes = await w.handle.changes(i)
            assert len(changes) == len(rows) == len({c.change_id for c in changes})
            delivered = [e.change_id for e in w.events if e.entity_id == i]
            assert delivered == [c.change_id for c in changes]
            total += len(changes)
        assert total == 300


async def test_a_transaction_can_be_awaited_and_of_this_engine_only() -> None:
    """``tx = await engine.transaction()`` then commit; a tx of another engine and a
    connection for the memory store are refused; a tx not begun is refused."""
    async with compose.in_memory() as one, compose.in_memory() as two:
        storage: DictStorage[Incident] = DictStorage()
        handle = one.define_entity("incident", Incident, read=storage.read)
        tx = await one.transaction()
        await handle.mutate("i-1", storage.put("i-1", OPEN), tx=tx)
        await tx.commit()
        assert len(await handle.history("i-1")) == 5
        async with two.transaction() as other:
            with pytest.raises(InvalidArgumentError, match="tx"):
                await handle.mutate("i-2", storage.put("i-2", OPEN), tx=other)
        with pytest.raises(InvalidArgumentError, match="not begun"):
            await handle.mutate("i-2", storage.put("i-2", OPEN), tx=one.transaction())
        with pytest.raises(InvalidArgumentError, match="in-memory"):
            async with one.transaction(connection=object()):
                pass
        assert await handle.history("i-2") == ()

"""DESIGN §9, SPEC §15 on the asyncio engine, both stores: Broadcast and WorkQueue
subscriptions as tasks (the engine-level counterparts of test_feed_postgres), the
feed reads (``changes``, ``consumers``, dead letters), and ``close`` within 5 s."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from reactive_entities import Broadcast, ChangeEvent, InvalidArgumentError, WorkQueue
from reactive_entities.aio import AsyncDurableSubscription
from reactive_entities.testing.aio_world import AsyncWorld, fresh_id, open_world
from reactive_entities.testing.examples import Incident

Backend = tuple[str, str | None, str | None]
FAST: dict[str, Any] = {"poll_interval": 0.05}


async def until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def write(w: AsyncWorld, entity_id: str, n: int, *, run_id: str | None = None) -> None:
    """Set the entity's title to ``n``."""
    state = Incident("open", "low", title=str(n))
    await w.handle.mutate(entity_id, w.storage.put(entity_id, state), run_id=run_id)


async def test_broadcast_delivers_every_change_after_subscribing_in_order(
    aio_backend: Backend,
) -> None:
    """A Broadcast (async handler) gets each matching change committed after it
    subscribed, once, in feed order, each with a position; a named consumer's cursor is
    stored and reported."""
    async with open_world(*aio_backend, **FAST) as w:
        i = fresh_id()
        await write(w, i, 0)  # before subscribing: not delivered
        got: list[ChangeEvent] = []

        async def handler(event: ChangeEvent) -> None:
            await asyncio.sleep(0)
            if event.entity_id == i:
                got.append(event)

        consumer = f"audit-{fresh_id()}"
        subscription = await w.engine.subscribe(
            handler, kind="incident", delivery=Broadcast(consumer=consumer)
        )
        for n in range(1, 6):
            await write(w, i, n)
        await until(lambda: len(got) == 5, "5 broadcasts")
        assert [e.next["title"] for e in got if e.next] == ["1", "2", "3", "4", "5"]
        positions = [e.position for e in got]
        assert all(
            a is not None and b is not None and a < b for a, b in itertools.pairwise(positions)
        )
        assert isinstance(subscription, AsyncDurableSubscription)
        await subscription.stopped()
        statuses = {s.name: s for s in await w.engine.consumers()}
        assert statuses[consumer].position == positions[-1]
        changes = await w.engine.changes(after=positions[0], kind="incident", limit=100)
        assert [e.change_id for e in changes if e.entity_id == i] == [e.change_id for e in got[1:]]
        assert len(await w.handle.changes(i)) == 6


async def test_work_queue_retries_then_dead_letters_and_retries_again(
    aio_backend: Backend,
) -> None:
    """A WorkQueue handler that raises is retried ``max_retries`` times, then
    dead-lettered (masked error kept); ``retry_dead_letters`` delivers it again."""
    async with open_world(*aio_backend, **FAST) as w:
        i = fresh_id()
        group = f"billing-{fresh_id()}"
        await w.engine.secrets.register("run-dl", ["dl-secret-value"])
        attempts: list[str] = []
        healthy = asyncio.Event()

        async def handler(event: ChangeEvent) -> None:
            if event.entity_id != i:
                return
            attempts.append(event.change_id)
            if not healthy.is_set():
                raise RuntimeError("dl-secret-value broke it")

        mode = WorkQueue(group=group, max_retries=2, backoff=timedelta(milliseconds=10))
        await w.engine.subscribe(handler, kind="incident", delivery=mode)
        await write(w, i, 1, run_id="run-dl")

        async def dead() -> bool:
            return bool(await w.engine.dead_letters(group))

        deadline = time.monotonic() + 10
        while not await dead():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        (letter,) = await w.engine.dead_letters(group)
        assert letter.attempts == 3
        assert "dl-secret-value" not in letter.last_error
        assert "****" in letter.last_error
        assert len(attempts) == 3
        healthy.set()
        assert await w.engine.retry_dead_letters(group) == 1
        await until(lambda: len(attempts) == 4, "the retried delivery")
        statuses = {s.name: s for s in await w.engine.consumers()}
        assert statuses[group].mode == "work-queue"
        with pytest.raises(InvalidArgumentError):
            await w.engine.dead_letters("")


async def test_two_members_of_a_group_handle_each_change_once_in_entity_order(
    aio_backend: Backend,
) -> None:
    """Two members (plain and async handlers) share a group: each change is handled once,
    and each entity's changes in order."""
    async with open_world(*aio_backend, **FAST) as w:
        group = f"pair-{fresh_id()}"
        ids = [fresh_id("pair") for _ in range(3)]
        handled: list[tuple[str, Any]] = []

        async def member_a(event: ChangeEvent) -> None:
            await asyncio.sleep(0)
            handled.append((event.entity_id, event.next["title"] if event.next else ""))

        def member_b(event: ChangeEvent) -> None:
            handled.append((event.entity_id, event.next["title"] if event.next else ""))

        await w.engine.subscribe(member_a, kind="incident", delivery=WorkQueue(group=group))
        await w.engine.subscribe(member_b, kind="incident", delivery=WorkQueue(group=group))
        for n in range(5):
            for i in ids:
                await write(w, i, n)
        await until(lambda: len(handled) >= 15, "15 deliveries")
        await asyncio.sleep(0.1)
        assert len(handled) == 15
        for i in ids:
            assert [t for e, t in handled if e == i] == ["0", "1", "2", "3", "4"]


async def test_close_stops_every_subscription_within_5_seconds(aio_backend: Backend) -> None:
    """``close`` ends the durable tasks (a blocked handler included) within 5 s."""
    entered = asyncio.Event()

    async def stuck(event: ChangeEvent) -> None:
        entered.set()
        await asyncio.sleep(60)

    async with open_world(*aio_backend, **FAST) as w:
        await w.engine.subscribe(stuck, delivery=Broadcast())
        await w.engine.subscribe(print, delivery=WorkQueue(group=f"idle-{fresh_id()}"))
        await write(w, fresh_id(), 1)
        await asyncio.wait_for(entered.wait(), 10)
        started = time.monotonic()
        await w.engine.close()
        assert time.monotonic() - started < 6.5
        assert not w.engine._durable

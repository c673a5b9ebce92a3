"""The ``AsyncChangeFeed`` contract: the asyncio twin of
:class:`~reactive_entities.testing.ChangeFeedContract` — the same assertions, awaited.

A feed is tested together with the store that commits into it. Fixtures are plain, so
the two are opened inside each test: subclass the suite and provide ``open_world``, a
function returning an async context manager that yields an :class:`AsyncFeedWorld`
whose store and feed share the given manual ``clock``::

    class TestMyAsyncFeed(AsyncChangeFeedContract):
        @pytest.fixture
        def open_world(self, clock):
            return lambda: my_store_and_feed(clock=clock)  # yields AsyncFeedWorld(...)

As in the sync suite, every test starts from ``feed.head()`` and uses ids, consumers and
groups of its own, so a shared database works; tasks of one loop stand for threads.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import attrs
import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import ChangeEvent, Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.position import Position
from reactive_entities.ports.async_feed import AsyncChangeFeed
from reactive_entities.ports.async_store import AsyncEntityStore
from reactive_entities.ports.feed import ConsumerStatus, DeadLetter
from reactive_entities.testing.async_store_contract import record_async
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.overrides import must_override

__all__ = ["AsyncChangeFeedContract", "AsyncFeedWorld", "OpenWorld"]

KIND = "feed_contract"
OTHER_KIND = "feed_contract_other"
LEASE = timedelta(seconds=30)


@attrs.frozen
class AsyncFeedWorld:
    """What the suite tests: an async store, and the feed its commits appear in."""

    store: AsyncEntityStore
    feed: AsyncChangeFeed


#: What the ``open_world`` fixture returns.
OpenWorld = Callable[[], AbstractAsyncContextManager[AsyncFeedWorld]]


class Writer:
    """Commits changes through :func:`record_async`, remembering each entity's document.

    Entity ids are prefixed with ``tag`` so tests sharing one store never meet.
    """

    def __init__(self, store: AsyncEntityStore, tag: str) -> None:
        self.store = store
        self.tag = tag
        self.documents: dict[tuple[str, str], Document | None] = {}

    def id(self, name: str) -> str:
        """The entity id this test uses for ``name``."""
        return f"{self.tag}-{name}"

    def plan(self, name: str, kind: str = KIND, **values: Any) -> Plan:
        """The next change of entity ``name``: a create, or an update setting ``values``
        (``status`` gets a fresh value when none is given)."""
        key = (kind, self.id(name))
        prev = self.documents.get(key)
        base: Document = prev if prev is not None else {"status": "new", "tags": ["a"]}
        values.setdefault("status", f"s{secrets.token_hex(3)}")
        nxt: Document = {**base, **values}
        self.documents[key] = nxt
        return make_plan(kind, key[1], prev, nxt, actor=Actor.user("u-1"), run_id="run-1")

    def remove(self, name: str, kind: str = KIND) -> Plan:
        """The removal of entity ``name`` (committed by :meth:`commit`)."""
        key = (kind, self.id(name))
        prev = self.documents.get(key)
        self.documents[key] = None
        return make_plan(kind, key[1], prev, None)

    async def commit(self, *plans: Plan) -> list[Plan]:
        """Record ``plans`` in one transaction; returns them."""
        await record_async(self.store, *plans)
        return list(plans)

    async def change(self, name: str, kind: str = KIND, **values: Any) -> Plan:
        """Commit the next change of ``name`` on its own."""
        return (await self.commit(self.plan(name, kind, **values)))[0]


@asynccontextmanager
async def _session(open_world: OpenWorld) -> AsyncIterator[tuple[AsyncChangeFeed, Writer, str]]:
    """The feed under test, a writer of this test's own entities, and a group name."""
    async with open_world() as world:
        writer = Writer(world.store, secrets.token_hex(4))
        yield world.feed, writer, f"group-{writer.tag}"


def _threadsafe(action: Callable[[], None]) -> Callable[[], None]:
    """``action`` run in this loop, whichever thread (or the loop itself) calls it."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(action)

    return wake


async def _eventually(done: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(done.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _ids(events: Sequence[ChangeEvent]) -> list[str]:
    return [e.change_id for e in events]


def _plan_ids(plans: Sequence[Plan]) -> list[str]:
    return [p.change_id for p in plans]


def _positions(events: Sequence[ChangeEvent]) -> list[Position]:
    positions = [e.position for e in events]
    assert None not in positions, "every event read from the feed carries its position"
    return [p for p in positions if p is not None]


def _strictly_increasing(positions: Sequence[Position]) -> bool:
    return all(a < b for a, b in itertools.pairwise(positions))


async def _status(feed: AsyncChangeFeed, name: str, mode: str) -> ConsumerStatus:
    found = [s for s in await feed.consumers() if s.name == name and s.mode == mode]
    assert len(found) == 1, f"{mode} {name!r} listed {len(found)} times"
    return found[0]


class AsyncChangeFeedContract:
    """Behaviour every ``AsyncChangeFeed`` must show, with the store committing into it."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the store stamps with and the feed times leases and retries by."""
        return ManualClock()

    @pytest.fixture
    def open_world(self, clock: ManualClock) -> OpenWorld:
        """Override: a function returning an async context manager that yields the store
        and the feed under test, both built on ``clock``."""
        return next(must_override("subclass AsyncChangeFeedContract, provide `open_world`"))

    # -- reading: order and positions ----------------------------------------------------------

    async def test_changes_come_in_commit_order_with_increasing_positions(
        self, open_world: OpenWorld
    ) -> None:
        """Every committed change appears once, in commit order, positions increasing."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            plans = [await writer.change(name) for name in ["a", "b", "a", "c", "b"]]
            events = await feed.changes(after=start)
            assert _ids(events) == _plan_ids(plans)
            positions = _positions(events)
            assert _strictly_increasing(positions)
            assert all(start < p for p in positions)

    async def test_one_transaction_appears_in_recording_order(self, open_world: OpenWorld) -> None:
        """Changes committed together appear together, in recording order."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            plans = await writer.commit(writer.plan("a"), writer.plan("b"), writer.plan("a"))
            events = await feed.changes(after=start)
            assert _ids(events) == _plan_ids(plans)
            assert _strictly_increasing(_positions(events))

    async def test_events_carry_the_recorded_change(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A feed event holds the plan's op, documents, fields, actor, run and stamp."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            created = await writer.change("a")
            clock.advance(timedelta(seconds=3))
            updated = await writer.change("a", tags=["a", "b"])
            removed = (await writer.commit(writer.remove("a")))[0]
            events = await feed.changes(after=start)
            assert [e.op for e in events] == ["create", "update", "remove"]
            for event, plan in zip(events, [created, updated, removed], strict=True):
                assert (event.kind, event.entity_id) == (plan.kind, plan.entity_id)
                assert (event.prev, event.next, event.delta) == (plan.prev, plan.next, plan.delta)
                assert event.changed_fields == plan.changed_fields
                assert (event.actor, event.run_id) == (plan.actor, plan.run_id)
            assert events[0].occurred_at == clock.now() - timedelta(seconds=3)
            assert events[1].occurred_at == clock.now()
            assert events[2].next is None

    async def test_positions_round_trip_through_str(self, open_world: OpenWorld) -> None:
        """``Position.parse(str(p))`` gives ``p`` back and reads from the same place."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            await writer.change("a")
            second = await writer.change("b")
            first_position = _positions(await feed.changes(after=start))[0]
            parsed = Position.parse(str(first_position))
            assert parsed == first_position
            assert _ids(await feed.changes(after=parsed)) == [second.change_id]

    # -- reading: after, kind, limit -----------------------------------------------------------

    async def test_changes_after_a_position_are_strictly_after_it(
        self, open_world: OpenWorld
    ) -> None:
        """``changes(after=p)`` leaves out the change at ``p`` and everything before."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            plans = [await writer.change(name) for name in ["a", "b", "c", "d"]]
            middle = _positions(await feed.changes(after=start))[1]
            assert _ids(await feed.changes(after=middle)) == _plan_ids(plans[2:])

    async def test_changes_after_none_start_from_the_beginning(self, open_world: OpenWorld) -> None:
        """``changes(after=None)`` reads the whole feed: this test's changes come last."""
        async with _session(open_world) as (feed, writer, _):
            plans = [await writer.change(name) for name in ["a", "b"]]
            events = await feed.changes(after=None)
            assert _ids(events)[-2:] == _plan_ids(plans)
            assert _strictly_increasing(_positions(events))

    async def test_kind_filter_keeps_only_that_kind(self, open_world: OpenWorld) -> None:
        """``kind=`` leaves out the other kinds' changes, keeping feed order."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            first = await writer.change("a")
            await writer.change("b", OTHER_KIND)
            second = await writer.change("c")
            assert _ids(await feed.changes(after=start, kind=KIND)) == [
                first.change_id,
                second.change_id,
            ]
            assert [e.kind for e in await feed.changes(after=start, kind=OTHER_KIND)] == [
                OTHER_KIND
            ]
            assert list(await feed.changes(after=start, kind="no_such_kind")) == []

    async def test_limit_returns_the_oldest_first(self, open_world: OpenWorld) -> None:
        """``limit=N`` returns the first N changes after the cursor (0: none)."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            plans = [await writer.change(name) for name in ["a", "b", "c"]]
            assert _ids(await feed.changes(after=start, limit=2)) == _plan_ids(plans[:2])
            assert _ids(await feed.changes(after=start, limit=10)) == _plan_ids(plans)
            assert list(await feed.changes(after=start, limit=0)) == []

    async def test_limit_counts_only_the_requested_kind(self, open_world: OpenWorld) -> None:
        """With ``kind`` and ``limit``, the limit applies to the matching changes."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            await writer.change("x", OTHER_KIND)
            await writer.change("y", OTHER_KIND)
            wanted = [await writer.change("a"), await writer.change("b")]
            assert _ids(await feed.changes(after=start, kind=KIND, limit=2)) == _plan_ids(wanted)

    # -- reading: one entity -------------------------------------------------------------------

    async def test_entity_changes_are_that_entitys_oldest_first(
        self, open_world: OpenWorld
    ) -> None:
        """``entity_changes`` returns only the entity's changes, oldest first."""
        async with _session(open_world) as (feed, writer, _):
            mine = [await writer.change("a"), await writer.change("a")]
            await writer.change("b")
            mine.append((await writer.commit(writer.remove("a")))[0])
            events = await feed.entity_changes(KIND, writer.id("a"))
            assert _ids(events) == _plan_ids(mine)
            assert [e.op for e in events] == ["create", "update", "remove"]
            assert list(await feed.entity_changes(KIND, writer.id("never"))) == []
            assert list(await feed.entity_changes(OTHER_KIND, writer.id("a"))) == []

    async def test_entity_changes_since_is_inclusive(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """``since`` keeps the changes stamped at or after it."""
        async with _session(open_world) as (feed, writer, _):
            await writer.change("a")
            clock.advance(timedelta(seconds=5))
            later = [await writer.change("a")]
            since = clock.now()
            clock.advance(timedelta(seconds=5))
            later.append(await writer.change("a"))
            events = await feed.entity_changes(KIND, writer.id("a"), since=since)
            assert _ids(events) == _plan_ids(later)
            assert (
                list(await feed.entity_changes(KIND, writer.id("a"), since=clock.now() + LEASE))
                == []
            )

    async def test_entity_changes_limit_keeps_the_newest_oldest_first(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """``limit=N`` keeps the N newest changes, still oldest first (0: none)."""
        async with _session(open_world) as (feed, writer, _):
            plans = []
            for _ in range(4):
                plans.append(await writer.change("a"))
                clock.advance(timedelta(seconds=1))
            assert _ids(await feed.entity_changes(KIND, writer.id("a"), limit=2)) == _plan_ids(
                plans[2:]
            )
            assert _ids(await feed.entity_changes(KIND, writer.id("a"), limit=9)) == _plan_ids(
                plans
            )
            assert list(await feed.entity_changes(KIND, writer.id("a"), limit=0)) == []

    # -- documents are copies ------------------------------------------------------------------

    async def test_mutating_a_read_event_changes_nothing(self, open_world: OpenWorld) -> None:
        """A receiver that mutates an event's documents changes nothing recorded."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            await writer.change("a")
            plan = await writer.change("a", tags=["a", "b"])
            recorded = _documents(plan)

            async def from_changes() -> ChangeEvent:
                return (await feed.changes(after=start))[-1]

            async def from_entity_changes() -> ChangeEvent:
                return (await feed.entity_changes(KIND, writer.id("a")))[-1]

            for read in (from_changes, from_entity_changes):
                event = await read()
                assert event.prev is not None
                assert event.next is not None
                _vandalize(event)
                assert _documents(await read()) == recorded

    # -- head and wake-ups ---------------------------------------------------------------------

    async def test_a_change_committed_after_head_follows_it(self, open_world: OpenWorld) -> None:
        """Changes committed after ``head()`` are read after it; older ones are not."""
        async with _session(open_world) as (feed, writer, _):
            await writer.change("old")
            head = await feed.head()
            plan = await writer.change("new")
            assert _ids(await feed.changes(after=head)) == [plan.change_id]
            assert list(await feed.changes(after=await feed.head())) == []

    async def test_on_commit_wakes_until_stopped(self, open_world: OpenWorld) -> None:
        """A commit calls every registered wake-up; the returned function stops one."""
        async with _session(open_world) as (feed, writer, _):
            woken, other = asyncio.Event(), asyncio.Event()
            stop = feed.on_commit(_threadsafe(woken.set))
            stop_other = feed.on_commit(_threadsafe(other.set))
            try:
                await writer.change("a")
                assert await _eventually(woken, 10)
                assert await _eventually(other, 10)
                stop()
                await asyncio.sleep(0.3)  # wake-ups of the first change still on their way
                woken.clear()
                other.clear()
                await writer.change("a")
                assert await _eventually(other, 10)
                assert not await _eventually(woken, 0.3)
            finally:
                stop()
                stop_other()

    # -- named cursors -------------------------------------------------------------------------

    async def test_cursors_are_saved_and_loaded_per_name(self, open_world: OpenWorld) -> None:
        """``save_cursor`` remembers a position per consumer; unknown names load None."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            await writer.change("a")
            await writer.change("b")
            first, second = _positions(await feed.changes(after=start))
            one, two = f"audit-{writer.tag}", f"export-{writer.tag}"
            assert await feed.load_cursor(one) is None
            await feed.save_cursor(one, first)
            await feed.save_cursor(two, second)
            assert (await feed.load_cursor(one), await feed.load_cursor(two)) == (first, second)
            await feed.save_cursor(one, second)
            assert await feed.load_cursor(one) == second
            assert await feed.load_cursor(f"never-{writer.tag}") is None

    # -- work queues: enqueue and claim --------------------------------------------------------

    async def test_a_new_group_starts_at_head(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A new group queues nothing committed before it; later changes are claimable."""
        async with _session(open_world) as (feed, writer, group):
            await writer.change("old")
            assert await feed.enqueue(group, KIND) == 0
            assert await feed.claim(group, "m1", LEASE) is None
            plan = await writer.change("new")
            assert await feed.enqueue(group, KIND) == 1
            assert await feed.enqueue(group, KIND) == 0
            claim = await feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert (claim.group, claim.member, claim.attempts) == (group, "m1", 1)
            assert claim.change.change_id == plan.change_id
            assert claim.change.position is not None
            assert claim.lease_until == clock.now() + LEASE
            assert await feed.claim(group, "m2", LEASE) is None

    async def test_enqueue_keeps_only_the_groups_kind(self, open_world: OpenWorld) -> None:
        """``enqueue(group, kind)`` queues that kind's changes only; None queues all."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            await feed.enqueue(f"{group}-all", None)
            await writer.change("a", OTHER_KIND)
            plan = await writer.change("b")
            assert await feed.enqueue(group, KIND) == 1
            assert await feed.enqueue(f"{group}-all", None) == 2
            claim = await feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert claim.change.change_id == plan.change_id
            assert await feed.claim(group, "m1", LEASE) is None

    async def test_each_change_is_claimed_once_in_feed_order(self, open_world: OpenWorld) -> None:
        """Two members taking turns claim every change once, oldest first."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plans = [await writer.change(name) for name in ["a", "b", "c", "d"]]
            assert await feed.enqueue(group, KIND) == 4
            claims = []
            for member in ["m1", "m2", "m1", "m2", "m1"]:
                claim = await feed.claim(group, member, LEASE)
                if claim is not None:
                    claims.append(claim)
            assert [c.change.change_id for c in claims] == _plan_ids(plans)
            assert [c.member for c in claims] == ["m1", "m2", "m1", "m2"]

    async def test_groups_are_independent(self, open_world: OpenWorld) -> None:
        """Each group receives every change; claiming in one leaves the other untouched."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            await feed.enqueue(f"{group}-b", KIND)
            plan = await writer.change("a")
            await feed.enqueue(group, KIND)
            await feed.enqueue(f"{group}-b", KIND)
            first = await feed.claim(group, "m1", LEASE)
            second = await feed.claim(f"{group}-b", "m1", LEASE)
            assert first is not None
            assert second is not None
            assert first.change.change_id == second.change.change_id == plan.change_id

    # -- work queues: per-entity order ---------------------------------------------------------

    async def test_an_entitys_next_change_waits_while_one_is_claimed(
        self, open_world: OpenWorld
    ) -> None:
        """A second change of an entity is not claimable until its first is done."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            a1, a2, b1 = (
                await writer.change("a"),
                await writer.change("a"),
                await writer.change("b"),
            )
            await feed.enqueue(group, KIND)
            first = await feed.claim(group, "m1", LEASE)
            assert first is not None
            assert first.change.change_id == a1.change_id
            other = await feed.claim(group, "m2", LEASE)
            assert other is not None
            assert other.change.change_id == b1.change_id
            assert await feed.claim(group, "m2", LEASE) is None
            assert await feed.complete(first)
            after = await feed.claim(group, "m2", LEASE)
            assert after is not None
            assert after.change.change_id == a2.change_id

    async def test_an_entitys_next_change_waits_while_one_waits_for_a_retry(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A change released for a retry still holds back its entity's later changes."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            a1, a2 = await writer.change("a"), await writer.change("a")
            await feed.enqueue(group, KIND)
            first = await feed.claim(group, "m1", LEASE)
            assert first is not None
            assert await feed.retry_later(first, "boom", timedelta(seconds=10))
            assert await feed.claim(group, "m2", LEASE) is None
            clock.advance(timedelta(seconds=11))
            again = await feed.claim(group, "m2", LEASE)
            assert again is not None
            assert (again.change.change_id, again.attempts) == (a1.change_id, 2)
            assert await feed.complete(again)
            last = await feed.claim(group, "m2", LEASE)
            assert last is not None
            assert last.change.change_id == a2.change_id

    # -- work queues: retries, leases, lost claims ---------------------------------------------

    async def test_retry_later_is_not_claimable_before_its_delay(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A delivery retried with a delay comes back only once the delay has passed."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plan = await writer.change("a")
            await feed.enqueue(group, KIND)
            claim = await feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert await feed.retry_later(claim, "boom", timedelta(seconds=60))
            clock.advance(timedelta(seconds=59))
            assert await feed.claim(group, "m1", LEASE) is None
            clock.advance(timedelta(seconds=2))
            again = await feed.claim(group, "m1", LEASE)
            assert again is not None
            assert (again.change.change_id, again.attempts) == (plan.change_id, 2)

    async def test_an_expired_lease_lets_another_member_take_over(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """After the lease ends, another member claims the change (one more attempt)."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plan = await writer.change("a")
            await feed.enqueue(group, KIND)
            lost = await feed.claim(group, "m1", LEASE)
            assert lost is not None
            clock.advance(LEASE - timedelta(seconds=1))
            assert await feed.claim(group, "m2", LEASE) is None
            clock.advance(timedelta(seconds=2))
            taken = await feed.claim(group, "m2", LEASE)
            assert taken is not None
            assert (taken.change.change_id, taken.member, taken.attempts) == (
                plan.change_id,
                "m2",
                2,
            )
            assert taken.lease_until == clock.now() + LEASE

    async def test_a_lost_claim_changes_nothing(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """complete, retry_later and dead_letter of a taken-over claim return False."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            await writer.change("a")
            await feed.enqueue(group, KIND)
            lost = await feed.claim(group, "m1", LEASE)
            assert lost is not None
            clock.advance(LEASE + timedelta(seconds=1))
            taken = await feed.claim(group, "m2", LEASE)
            assert taken is not None
            assert await feed.retry_later(lost, "late", timedelta(0)) is False
            assert await feed.dead_letter(lost, "late") is False
            assert await feed.complete(lost) is False
            assert list(await feed.dead_letters(group)) == []
            assert (await _status(feed, group, "work-queue")).in_flight == 1
            assert await feed.complete(taken) is True
            assert await feed.complete(taken) is False

    async def test_the_same_member_reclaiming_makes_its_old_claim_lost(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A member that re-claims after its lease expired holds only the new claim."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            await writer.change("a")
            await feed.enqueue(group, KIND)
            old = await feed.claim(group, "m1", LEASE)
            assert old is not None
            clock.advance(LEASE + timedelta(seconds=1))
            new = await feed.claim(group, "m1", LEASE)
            assert new is not None
            assert new.attempts == 2
            assert await feed.complete(old) is False
            assert await feed.complete(new) is True

    async def test_a_claimed_change_is_a_copy(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """Mutating a claim's documents changes neither the feed nor the next attempt."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            await writer.change("a")
            plan = await writer.change("b", tags=["a", "b"])
            recorded = _documents(plan)
            await feed.enqueue(group, KIND)
            await feed.claim(group, "m1", LEASE)
            claim = await feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert claim.change.change_id == plan.change_id
            _vandalize(claim.change)
            assert await feed.retry_later(claim, "boom", timedelta(seconds=1))
            clock.advance(timedelta(seconds=2))
            again = await feed.claim(group, "m1", LEASE)
            assert again is not None
            assert _documents(again.change) == recorded
            assert _documents((await feed.entity_changes(KIND, writer.id("b")))[-1]) == recorded

    # -- work queues: dead letters -------------------------------------------------------------

    async def test_a_dead_letter_is_listed_and_does_not_block_its_entity(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A dead letter keeps change, group, attempts and error; later changes proceed."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            a1, a2 = await writer.change("a"), await writer.change("a")
            await feed.enqueue(group, KIND)
            first = await feed.claim(group, "m1", LEASE)
            assert first is not None
            assert first.change.position is not None
            assert await feed.retry_later(first, "first failure", timedelta(seconds=1))
            clock.advance(timedelta(seconds=2))
            second = await feed.claim(group, "m1", LEASE)
            assert second is not None
            assert second.attempts == 2
            assert await feed.dead_letter(second, "second failure")
            assert list(await feed.dead_letters(group)) == [
                DeadLetter(
                    group=group,
                    change_id=a1.change_id,
                    position=first.change.position,
                    kind=KIND,
                    entity_id=writer.id("a"),
                    attempts=2,
                    last_error="second failure",
                    failed_at=clock.now(),
                )
            ]
            after = await feed.claim(group, "m1", LEASE)
            assert after is not None
            assert after.change.change_id == a2.change_id

    async def test_dead_letters_are_listed_oldest_first(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """Several dead letters are listed in the order they happened, per group."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plans = [await writer.change("a"), await writer.change("b")]
            await feed.enqueue(group, KIND)
            for _ in plans:
                claim = await feed.claim(group, "m1", LEASE)
                assert claim is not None
                assert await feed.dead_letter(claim, "boom")
                clock.advance(timedelta(seconds=1))
            assert [d.change_id for d in await feed.dead_letters(group)] == _plan_ids(plans)
            assert list(await feed.dead_letters(f"{group}-other")) == []

    async def test_retry_dead_letters_makes_them_claimable_again(
        self, open_world: OpenWorld
    ) -> None:
        """``retry_dead_letters`` re-queues every dead letter with attempts reset."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plan = await writer.change("a")
            await feed.enqueue(group, KIND)
            claim = await feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert await feed.dead_letter(claim, "boom")
            assert await feed.claim(group, "m1", LEASE) is None
            assert await feed.retry_dead_letters(group) == 1
            assert list(await feed.dead_letters(group)) == []
            again = await feed.claim(group, "m2", LEASE)
            assert again is not None
            assert (again.change.change_id, again.attempts) == (plan.change_id, 1)
            assert await feed.retry_dead_letters(group) == 0

    # -- consumers -----------------------------------------------------------------------------

    async def test_consumers_report_a_broadcast_cursors_lag(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A named cursor is listed with the changes after it and the oldest one's age."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            await writer.change("a")
            clock.advance(timedelta(seconds=5))
            await writer.change("b")
            await writer.change("c")
            clock.advance(timedelta(seconds=7))
            first = _positions(await feed.changes(after=start))[0]
            name = f"audit-{writer.tag}"
            await feed.save_cursor(name, first)
            status = await _status(feed, name, "broadcast")
            assert (status.position, status.lag_changes) == (first, 2)
            assert status.lag_seconds == pytest.approx(7.0)
            assert (status.in_flight, status.waiting, status.dead_letters) == (0, 0, 0)
            await feed.save_cursor(name, await feed.head())
            caught_up = await _status(feed, name, "broadcast")
            assert (caught_up.lag_changes, caught_up.lag_seconds) == (0, None)

    async def test_consumers_report_a_groups_claims_and_dead_letters(
        self, open_world: OpenWorld, clock: ManualClock
    ) -> None:
        """A group is listed with its scan position, lag, in-flight, waiting and dead."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            start = await feed.head()
            await writer.change("a")
            clock.advance(timedelta(seconds=2))
            await writer.change("b")
            await writer.change("c")
            clock.advance(timedelta(seconds=4))
            before = await _status(feed, group, "work-queue")
            assert before.lag_changes == 3
            assert before.lag_seconds == pytest.approx(6.0)
            assert await feed.enqueue(group, KIND) == 3
            dead = await feed.claim(group, "m1", LEASE)
            assert dead is not None
            assert await feed.dead_letter(dead, "boom")
            assert await feed.claim(group, "m1", LEASE) is not None
            status = await _status(feed, group, "work-queue")
            assert status.position == _positions(await feed.changes(after=start))[-1]
            assert status.lag_changes == 0
            assert (status.in_flight, status.waiting, status.dead_letters) == (1, 1, 1)
            assert status.lag_seconds == pytest.approx(4.0)

    async def test_consumers_are_listed_by_name(self, open_world: OpenWorld) -> None:
        """``consumers()`` lists cursors and groups sorted by name."""
        async with _session(open_world) as (feed, writer, _):
            names = [f"{prefix}-{writer.tag}" for prefix in ("c", "a", "b")]
            await feed.save_cursor(names[0], await feed.head())
            await feed.enqueue(names[1], None)
            await feed.save_cursor(names[2], await feed.head())
            listed = [(s.name, s.mode) for s in await feed.consumers() if s.name in names]
            assert listed == [
                (names[1], "work-queue"),
                (names[2], "broadcast"),
                (names[0], "broadcast"),
            ]

    # -- concurrency ---------------------------------------------------------------------------

    async def test_a_reader_polling_during_concurrent_commits_misses_nothing(
        self, open_world: OpenWorld
    ) -> None:
        """A reader following the feed while 4 tasks commit sees every change once, in
        each entity's commit order: nothing ever appears behind its cursor."""
        async with _session(open_world) as (feed, writer, _):
            start = await feed.head()
            committed: list[Plan] = []
            done = asyncio.Event()
            seen: list[ChangeEvent] = []

            async def write(name: str) -> None:
                own = Writer(writer.store, writer.id(name))
                for i in range(25):
                    committed.append(await own.change(f"e{i % 3}"))

            async def read() -> None:
                cursor = start
                while len(seen) <= 1_000:  # a feed repeating itself must not spin forever
                    finished = done.is_set()
                    batch = await feed.changes(after=cursor, kind=KIND)
                    if batch:
                        seen.extend(batch)
                        cursor = _positions(batch)[-1]
                    elif finished:
                        return
                    else:
                        await asyncio.sleep(0.001)

            reader = asyncio.ensure_future(read())
            await asyncio.wait_for(asyncio.gather(*(write(f"w{n}") for n in range(4))), 60)
            done.set()
            await asyncio.wait_for(reader, 60)
            assert sorted(_ids(seen)) == sorted(_plan_ids(committed))
            assert len(set(_ids(seen))) == 100
            assert _strictly_increasing(_positions(seen))
            for entity in {p.entity_id for p in committed}:
                in_feed = [e.change_id for e in seen if e.entity_id == entity]
                assert in_feed == [p.change_id for p in committed if p.entity_id == entity]

    async def test_concurrent_members_claim_each_change_once_in_entity_order(
        self, open_world: OpenWorld
    ) -> None:
        """4 tasks claiming from one group handle each change once, per entity in order."""
        async with _session(open_world) as (feed, writer, group):
            await feed.enqueue(group, KIND)
            plans = [await writer.change(f"e{i % 5}") for i in range(40)]
            assert await feed.enqueue(group, KIND) == 40
            handled: list[ChangeEvent] = []

            async def member(name: str) -> None:
                # Bounded: a feed handing changes out twice must not spin forever.
                while len(handled) <= 200 and (claim := await feed.claim(group, name, LEASE)):
                    handled.append(claim.change)
                    assert await feed.complete(claim)

            await asyncio.wait_for(asyncio.gather(*(member(f"m{n}") for n in range(4))), 60)
            assert sorted(_ids(handled)) == sorted(_plan_ids(plans))
            for entity in {p.entity_id for p in plans}:
                expected = [p.change_id for p in plans if p.entity_id == entity]
                assert [e.change_id for e in handled if e.entity_id == entity] == expected


def _documents(change: ChangeEvent | Plan) -> tuple[Any, ...]:
    """A deep copy of the change's documents, to compare with later."""
    return copy.deepcopy((change.prev, change.next, change.delta))


def _vandalize(event: ChangeEvent | Plan) -> None:
    """Mutate every document of ``event`` in place."""
    for document in (event.prev, event.next, event.delta):
        if document is None:
            continue
        document["status"] = "vandalized"
        tags = document.get("tags")
        if isinstance(tags, list):
            tags.append("vandal")

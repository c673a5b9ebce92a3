"""The ``ChangeFeed`` contract: a pytest suite any feed adapter can run (DESIGN §9, SPEC §15).

A feed is tested together with the store that commits into it. Subclass the suite and
provide a ``world`` fixture: a :class:`FeedWorld` whose store and feed share the given
manual ``clock``::

    from reactive_entities.testing.feed_contract import ChangeFeedContract, FeedWorld

    class TestMyFeed(ChangeFeedContract):
        @pytest.fixture
        def world(self, clock):
            store = MyStore(clock=clock)
            yield FeedWorld(store=store, feed=MyFeed(store, clock=clock))

The suite only commits through :func:`~reactive_entities.testing.builders.record` and
only reads through the port, so it runs unchanged against any adapter. It does not need
an empty store: every test starts from ``feed.head()`` and uses entity ids, consumer and
group names of its own, so a shared database works. Times that matter (stamps, leases,
retry delays, lag) all come from ``clock``, which only the tests move.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import attrs
import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.events import ChangeEvent, Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.position import Position
from reactive_entities.ports.feed import ChangeFeed, ConsumerStatus, DeadLetter
from reactive_entities.ports.store import EntityStore
from reactive_entities.testing.builders import make_plan, record
from reactive_entities.testing.overrides import must_override

__all__ = ["ChangeFeedContract", "FeedWorld"]

KIND = "feed_contract"
OTHER_KIND = "feed_contract_other"
LEASE = timedelta(seconds=30)


@attrs.frozen
class FeedWorld:
    """What the suite tests: a store, and the feed its commits appear in."""

    store: EntityStore
    feed: ChangeFeed


class Writer:
    """Commits changes through :func:`record`, remembering each entity's document.

    Entity ids are prefixed with ``tag`` so tests sharing one store never meet.
    """

    def __init__(self, store: EntityStore, tag: str) -> None:
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

    def commit(self, *plans: Plan) -> list[Plan]:
        """Record ``plans`` in one transaction; returns them."""
        record(self.store, *plans)
        return list(plans)

    def change(self, name: str, kind: str = KIND, **values: Any) -> Plan:
        """Commit the next change of ``name`` on its own."""
        return self.commit(self.plan(name, kind, **values))[0]


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


def _status(feed: ChangeFeed, name: str, mode: str) -> ConsumerStatus:
    found = [s for s in feed.consumers() if s.name == name and s.mode == mode]
    assert len(found) == 1, f"{mode} {name!r} listed {len(found)} times"
    return found[0]


class ChangeFeedContract:
    """Behaviour every ``ChangeFeed`` must show, with the store that commits into it."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the store stamps with and the feed times leases and retries by."""
        return ManualClock()

    @pytest.fixture
    def world(self, clock: ManualClock) -> Iterator[FeedWorld]:
        """Override: yield the store and the feed under test, both built on ``clock``."""
        yield from must_override("subclass ChangeFeedContract and provide a `world` fixture")

    @pytest.fixture
    def feed(self, world: FeedWorld) -> ChangeFeed:
        """The feed under test."""
        return world.feed

    @pytest.fixture
    def writer(self, world: FeedWorld) -> Writer:
        """Commits changes of this test's own entities."""
        return Writer(world.store, secrets.token_hex(4))

    @pytest.fixture
    def group(self, writer: Writer) -> str:
        """A work-queue group name of this test's own."""
        return f"group-{writer.tag}"

    # -- reading: order and positions ----------------------------------------------------------

    def test_changes_come_in_commit_order_with_increasing_positions(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """Every committed change appears once, in commit order, positions increasing."""
        start = feed.head()
        plans = [writer.change(name) for name in ["a", "b", "a", "c", "b"]]
        events = feed.changes(after=start)
        assert _ids(events) == _plan_ids(plans)
        positions = _positions(events)
        assert _strictly_increasing(positions)
        assert all(start < p for p in positions)

    def test_one_transaction_appears_in_recording_order(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """Changes committed together appear together, in recording order."""
        start = feed.head()
        plans = writer.commit(writer.plan("a"), writer.plan("b"), writer.plan("a"))
        events = feed.changes(after=start)
        assert _ids(events) == _plan_ids(plans)
        assert _strictly_increasing(_positions(events))

    def test_events_carry_the_recorded_change(
        self, feed: ChangeFeed, writer: Writer, clock: ManualClock
    ) -> None:
        """A feed event holds the plan's op, documents, fields, actor, run and stamp."""
        start = feed.head()
        created = writer.change("a")
        clock.advance(timedelta(seconds=3))
        updated = writer.change("a", tags=["a", "b"])
        removed = writer.commit(writer.remove("a"))[0]
        events = feed.changes(after=start)
        assert [e.op for e in events] == ["create", "update", "remove"]
        for event, plan in zip(events, [created, updated, removed], strict=True):
            assert (event.kind, event.entity_id) == (plan.kind, plan.entity_id)
            assert (event.prev, event.next, event.delta) == (plan.prev, plan.next, plan.delta)
            assert event.changed_fields == plan.changed_fields
            assert (event.actor, event.run_id) == (plan.actor, plan.run_id)
        assert events[0].occurred_at == clock.now() - timedelta(seconds=3)
        assert events[1].occurred_at == clock.now()
        assert events[2].next is None

    def test_positions_round_trip_through_str(self, feed: ChangeFeed, writer: Writer) -> None:
        """``Position.parse(str(p))`` gives ``p`` back and reads from the same place."""
        start = feed.head()
        writer.change("a")
        second = writer.change("b")
        first_position = _positions(feed.changes(after=start))[0]
        parsed = Position.parse(str(first_position))
        assert parsed == first_position
        assert _ids(feed.changes(after=parsed)) == [second.change_id]

    # -- reading: after, kind, limit -----------------------------------------------------------

    def test_changes_after_a_position_are_strictly_after_it(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """``changes(after=p)`` leaves out the change at ``p`` and everything before."""
        start = feed.head()
        plans = [writer.change(name) for name in ["a", "b", "c", "d"]]
        middle = _positions(feed.changes(after=start))[1]
        assert _ids(feed.changes(after=middle)) == _plan_ids(plans[2:])

    def test_changes_after_none_start_from_the_beginning(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """``changes(after=None)`` reads the whole feed: this test's changes come last."""
        plans = [writer.change(name) for name in ["a", "b"]]
        events = feed.changes(after=None)
        assert _ids(events)[-2:] == _plan_ids(plans)
        assert _strictly_increasing(_positions(events))

    def test_kind_filter_keeps_only_that_kind(self, feed: ChangeFeed, writer: Writer) -> None:
        """``kind=`` leaves out the other kinds' changes, keeping feed order."""
        start = feed.head()
        first = writer.change("a")
        writer.change("b", OTHER_KIND)
        second = writer.change("c")
        assert _ids(feed.changes(after=start, kind=KIND)) == [first.change_id, second.change_id]
        assert [e.kind for e in feed.changes(after=start, kind=OTHER_KIND)] == [OTHER_KIND]
        assert list(feed.changes(after=start, kind="no_such_kind")) == []

    def test_limit_returns_the_oldest_first(self, feed: ChangeFeed, writer: Writer) -> None:
        """``limit=N`` returns the first N changes after the cursor (0: none)."""
        start = feed.head()
        plans = [writer.change(name) for name in ["a", "b", "c"]]
        assert _ids(feed.changes(after=start, limit=2)) == _plan_ids(plans[:2])
        assert _ids(feed.changes(after=start, limit=10)) == _plan_ids(plans)
        assert list(feed.changes(after=start, limit=0)) == []

    def test_limit_counts_only_the_requested_kind(self, feed: ChangeFeed, writer: Writer) -> None:
        """With ``kind`` and ``limit``, the limit applies to the matching changes."""
        start = feed.head()
        writer.change("x", OTHER_KIND)
        writer.change("y", OTHER_KIND)
        wanted = [writer.change("a"), writer.change("b")]
        assert _ids(feed.changes(after=start, kind=KIND, limit=2)) == _plan_ids(wanted)

    # -- reading: one entity -------------------------------------------------------------------

    def test_entity_changes_are_that_entitys_oldest_first(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """``entity_changes`` returns only the entity's changes, oldest first."""
        mine = [writer.change("a"), writer.change("a")]
        writer.change("b")
        mine.append(writer.commit(writer.remove("a"))[0])
        events = feed.entity_changes(KIND, writer.id("a"))
        assert _ids(events) == _plan_ids(mine)
        assert [e.op for e in events] == ["create", "update", "remove"]
        assert list(feed.entity_changes(KIND, writer.id("never"))) == []
        assert list(feed.entity_changes(OTHER_KIND, writer.id("a"))) == []

    def test_entity_changes_since_is_inclusive(
        self, feed: ChangeFeed, writer: Writer, clock: ManualClock
    ) -> None:
        """``since`` keeps the changes stamped at or after it."""
        writer.change("a")
        clock.advance(timedelta(seconds=5))
        later = [writer.change("a")]
        since = clock.now()
        clock.advance(timedelta(seconds=5))
        later.append(writer.change("a"))
        events = feed.entity_changes(KIND, writer.id("a"), since=since)
        assert _ids(events) == _plan_ids(later)
        assert list(feed.entity_changes(KIND, writer.id("a"), since=clock.now() + LEASE)) == []

    def test_entity_changes_limit_keeps_the_newest_oldest_first(
        self, feed: ChangeFeed, writer: Writer, clock: ManualClock
    ) -> None:
        """``limit=N`` keeps the N newest changes, still oldest first (0: none)."""
        plans = []
        for _ in range(4):
            plans.append(writer.change("a"))
            clock.advance(timedelta(seconds=1))
        assert _ids(feed.entity_changes(KIND, writer.id("a"), limit=2)) == _plan_ids(plans[2:])
        assert _ids(feed.entity_changes(KIND, writer.id("a"), limit=9)) == _plan_ids(plans)
        assert list(feed.entity_changes(KIND, writer.id("a"), limit=0)) == []

    # -- documents are copies ------------------------------------------------------------------

    def test_mutating_a_read_event_changes_nothing(self, feed: ChangeFeed, writer: Writer) -> None:
        """A receiver that mutates an event's documents changes nothing recorded."""
        start = feed.head()
        writer.change("a")
        plan = writer.change("a", tags=["a", "b"])
        recorded = _documents(plan)

        def from_changes() -> ChangeEvent:
            return feed.changes(after=start)[-1]

        def from_entity_changes() -> ChangeEvent:
            return feed.entity_changes(KIND, writer.id("a"))[-1]

        for read in (from_changes, from_entity_changes):
            event = read()
            assert event.prev is not None
            assert event.next is not None
            _vandalize(event)
            assert _documents(read()) == recorded

    # -- head and wake-ups ---------------------------------------------------------------------

    def test_a_change_committed_after_head_follows_it(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """Changes committed after ``head()`` are read after it; older ones are not."""
        writer.change("old")
        head = feed.head()
        plan = writer.change("new")
        assert _ids(feed.changes(after=head)) == [plan.change_id]
        assert list(feed.changes(after=feed.head())) == []

    def test_on_commit_wakes_until_stopped(self, feed: ChangeFeed, writer: Writer) -> None:
        """A commit calls every registered wake-up; the returned function stops one."""
        woken, other = threading.Event(), threading.Event()
        stop = feed.on_commit(woken.set)
        stop_other = feed.on_commit(other.set)
        try:
            writer.change("a")
            assert woken.wait(timeout=10)
            assert other.wait(timeout=10)
            stop()
            woken.clear()
            other.clear()
            writer.change("a")
            assert other.wait(timeout=10)
            assert not woken.wait(timeout=0.3)
        finally:
            stop()
            stop_other()

    # -- named cursors -------------------------------------------------------------------------

    def test_cursors_are_saved_and_loaded_per_name(self, feed: ChangeFeed, writer: Writer) -> None:
        """``save_cursor`` remembers a position per consumer; unknown names load None."""
        start = feed.head()
        writer.change("a")
        writer.change("b")
        first, second = _positions(feed.changes(after=start))
        one, two = f"audit-{writer.tag}", f"export-{writer.tag}"
        assert feed.load_cursor(one) is None
        feed.save_cursor(one, first)
        feed.save_cursor(two, second)
        assert (feed.load_cursor(one), feed.load_cursor(two)) == (first, second)
        feed.save_cursor(one, second)
        assert feed.load_cursor(one) == second
        assert feed.load_cursor(f"never-{writer.tag}") is None

    # -- work queues: enqueue and claim --------------------------------------------------------

    def test_a_new_group_starts_at_head(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A new group queues nothing committed before it; later changes are claimable."""
        writer.change("old")
        assert feed.enqueue(group, KIND) == 0
        assert feed.claim(group, "m1", LEASE) is None
        plan = writer.change("new")
        assert feed.enqueue(group, KIND) == 1
        assert feed.enqueue(group, KIND) == 0
        claim = feed.claim(group, "m1", LEASE)
        assert claim is not None
        assert (claim.group, claim.member, claim.attempts) == (group, "m1", 1)
        assert claim.change.change_id == plan.change_id
        assert claim.change.position is not None
        assert claim.lease_until == clock.now() + LEASE
        assert feed.claim(group, "m2", LEASE) is None

    def test_enqueue_keeps_only_the_groups_kind(
        self, feed: ChangeFeed, writer: Writer, group: str
    ) -> None:
        """``enqueue(group, kind)`` queues that kind's changes only; None queues all."""
        feed.enqueue(group, KIND)
        feed.enqueue(f"{group}-all", None)
        writer.change("a", OTHER_KIND)
        plan = writer.change("b")
        assert feed.enqueue(group, KIND) == 1
        assert feed.enqueue(f"{group}-all", None) == 2
        claim = feed.claim(group, "m1", LEASE)
        assert claim is not None
        assert claim.change.change_id == plan.change_id
        assert feed.claim(group, "m1", LEASE) is None

    def test_each_change_is_claimed_once_in_feed_order(
        self, feed: ChangeFeed, writer: Writer, group: str
    ) -> None:
        """Two members taking turns claim every change once, oldest first."""
        feed.enqueue(group, KIND)
        plans = [writer.change(name) for name in ["a", "b", "c", "d"]]
        assert feed.enqueue(group, KIND) == 4
        claims = []
        for member in ["m1", "m2", "m1", "m2", "m1"]:
            claim = feed.claim(group, member, LEASE)
            if claim is not None:
                claims.append(claim)
        assert [c.change.change_id for c in claims] == _plan_ids(plans)
        assert [c.member for c in claims] == ["m1", "m2", "m1", "m2"]

    def test_groups_are_independent(self, feed: ChangeFeed, writer: Writer, group: str) -> None:
        """Each group receives every change; claiming in one leaves the other untouched."""
        feed.enqueue(group, KIND)
        feed.enqueue(f"{group}-b", KIND)
        plan = writer.change("a")
        feed.enqueue(group, KIND)
        feed.enqueue(f"{group}-b", KIND)
        first = feed.claim(group, "m1", LEASE)
        second = feed.claim(f"{group}-b", "m1", LEASE)
        assert first is not None
        assert second is not None
        assert first.change.change_id == second.change.change_id == plan.change_id

    # -- work queues: per-entity order ---------------------------------------------------------

    def test_an_entitys_next_change_waits_while_one_is_claimed(
        self, feed: ChangeFeed, writer: Writer, group: str
    ) -> None:
        """A second change of an entity is not claimable until its first is done."""
        feed.enqueue(group, KIND)
        a1, a2, b1 = writer.change("a"), writer.change("a"), writer.change("b")
        feed.enqueue(group, KIND)
        first = feed.claim(group, "m1", LEASE)
        assert first is not None
        assert first.change.change_id == a1.change_id
        other = feed.claim(group, "m2", LEASE)
        assert other is not None
        assert other.change.change_id == b1.change_id
        assert feed.claim(group, "m2", LEASE) is None
        assert feed.complete(first)
        after = feed.claim(group, "m2", LEASE)
        assert after is not None
        assert after.change.change_id == a2.change_id

    def test_an_entitys_next_change_waits_while_one_waits_for_a_retry(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A change released for a retry still holds back its entity's later changes."""
        feed.enqueue(group, KIND)
        a1, a2 = writer.change("a"), writer.change("a")
        feed.enqueue(group, KIND)
        first = feed.claim(group, "m1", LEASE)
        assert first is not None
        assert feed.retry_later(first, "boom", timedelta(seconds=10))
        assert feed.claim(group, "m2", LEASE) is None
        clock.advance(timedelta(seconds=11))
        again = feed.claim(group, "m2", LEASE)
        assert again is not None
        assert (again.change.change_id, again.attempts) == (a1.change_id, 2)
        assert feed.complete(again)
        last = feed.claim(group, "m2", LEASE)
        assert last is not None
        assert last.change.change_id == a2.change_id

    # -- work queues: retries, leases, lost claims ---------------------------------------------

    def test_retry_later_is_not_claimable_before_its_delay(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A delivery retried with a delay comes back only once the delay has passed."""
        feed.enqueue(group, KIND)
        plan = writer.change("a")
        feed.enqueue(group, KIND)
        claim = feed.claim(group, "m1", LEASE)
        assert claim is not None
        assert feed.retry_later(claim, "boom", timedelta(seconds=60))
        clock.advance(timedelta(seconds=59))
        assert feed.claim(group, "m1", LEASE) is None
        clock.advance(timedelta(seconds=2))
        again = feed.claim(group, "m1", LEASE)
        assert again is not None
        assert (again.change.change_id, again.attempts) == (plan.change_id, 2)

    def test_an_expired_lease_lets_another_member_take_over(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """After the lease ends, another member claims the change (one more attempt)."""
        feed.enqueue(group, KIND)
        plan = writer.change("a")
        feed.enqueue(group, KIND)
        lost = feed.claim(group, "m1", LEASE)
        assert lost is not None
        clock.advance(LEASE - timedelta(seconds=1))
        assert feed.claim(group, "m2", LEASE) is None
        clock.advance(timedelta(seconds=2))
        taken = feed.claim(group, "m2", LEASE)
        assert taken is not None
        assert (taken.change.change_id, taken.member, taken.attempts) == (plan.change_id, "m2", 2)
        assert taken.lease_until == clock.now() + LEASE

    def test_a_lost_claim_changes_nothing(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """complete, retry_later and dead_letter of a taken-over claim return False."""
        feed.enqueue(group, KIND)
        writer.change("a")
        feed.enqueue(group, KIND)
        lost = feed.claim(group, "m1", LEASE)
        assert lost is not None
        clock.advance(LEASE + timedelta(seconds=1))
        taken = feed.claim(group, "m2", LEASE)
        assert taken is not None
        assert feed.retry_later(lost, "late", timedelta(0)) is False
        assert feed.dead_letter(lost, "late") is False
        assert feed.complete(lost) is False
        assert list(feed.dead_letters(group)) == []
        assert _status(feed, group, "work-queue").in_flight == 1
        assert feed.complete(taken) is True
        assert feed.complete(taken) is False

    def test_the_same_member_reclaiming_makes_its_old_claim_lost(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A member that re-claims after its lease expired holds only the new claim."""
        feed.enqueue(group, KIND)
        writer.change("a")
        feed.enqueue(group, KIND)
        old = feed.claim(group, "m1", LEASE)
        assert old is not None
        clock.advance(LEASE + timedelta(seconds=1))
        new = feed.claim(group, "m1", LEASE)
        assert new is not None
        assert new.attempts == 2
        assert feed.complete(old) is False
        assert feed.complete(new) is True

    def test_a_claimed_change_is_a_copy(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """Mutating a claim's documents changes neither the feed nor the next attempt."""
        feed.enqueue(group, KIND)
        writer.change("a")
        plan = writer.change("b", tags=["a", "b"])
        recorded = _documents(plan)
        feed.enqueue(group, KIND)
        feed.claim(group, "m1", LEASE)
        claim = feed.claim(group, "m1", LEASE)
        assert claim is not None
        assert claim.change.change_id == plan.change_id
        _vandalize(claim.change)
        assert feed.retry_later(claim, "boom", timedelta(seconds=1))
        clock.advance(timedelta(seconds=2))
        again = feed.claim(group, "m1", LEASE)
        assert again is not None
        assert _documents(again.change) == recorded
        assert _documents(feed.entity_changes(KIND, writer.id("b"))[-1]) == recorded

    # -- work queues: dead letters -------------------------------------------------------------

    def test_a_dead_letter_is_listed_and_does_not_block_its_entity(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A dead letter keeps change, group, attempts and error; later changes proceed."""
        feed.enqueue(group, KIND)
        a1, a2 = writer.change("a"), writer.change("a")
        feed.enqueue(group, KIND)
        first = feed.claim(group, "m1", LEASE)
        assert first is not None
        assert first.change.position is not None
        assert feed.retry_later(first, "first failure", timedelta(seconds=1))
        clock.advance(timedelta(seconds=2))
        second = feed.claim(group, "m1", LEASE)
        assert second is not None
        assert second.attempts == 2
        assert feed.dead_letter(second, "second failure")
        assert list(feed.dead_letters(group)) == [
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
        after = feed.claim(group, "m1", LEASE)
        assert after is not None
        assert after.change.change_id == a2.change_id

    def test_dead_letters_are_listed_oldest_first(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """Several dead letters are listed in the order they happened, per group."""
        feed.enqueue(group, KIND)
        plans = [writer.change("a"), writer.change("b")]
        feed.enqueue(group, KIND)
        for _ in plans:
            claim = feed.claim(group, "m1", LEASE)
            assert claim is not None
            assert feed.dead_letter(claim, "boom")
            clock.advance(timedelta(seconds=1))
        assert [d.change_id for d in feed.dead_letters(group)] == _plan_ids(plans)
        assert list(feed.dead_letters(f"{group}-other")) == []

    def test_retry_dead_letters_makes_them_claimable_again(
        self, feed: ChangeFeed, writer: Writer, group: str
    ) -> None:
        """``retry_dead_letters`` re-queues every dead letter with attempts reset."""
        feed.enqueue(group, KIND)
        plan = writer.change("a")
        feed.enqueue(group, KIND)
        claim = feed.claim(group, "m1", LEASE)
        assert claim is not None
        assert feed.dead_letter(claim, "boom")
        assert feed.claim(group, "m1", LEASE) is None
        assert feed.retry_dead_letters(group) == 1
        assert list(feed.dead_letters(group)) == []
        again = feed.claim(group, "m2", LEASE)
        assert again is not None
        assert (again.change.change_id, again.attempts) == (plan.change_id, 1)
        assert feed.retry_dead_letters(group) == 0

    # -- consumers -----------------------------------------------------------------------------

    def test_consumers_report_a_broadcast_cursors_lag(
        self, feed: ChangeFeed, writer: Writer, clock: ManualClock
    ) -> None:
        """A named cursor is listed with the changes after it and the oldest one's age."""
        start = feed.head()
        writer.change("a")
        clock.advance(timedelta(seconds=5))
        writer.change("b")
        writer.change("c")
        clock.advance(timedelta(seconds=7))
        first = _positions(feed.changes(after=start))[0]
        name = f"audit-{writer.tag}"
        feed.save_cursor(name, first)
        status = _status(feed, name, "broadcast")
        assert (status.position, status.lag_changes) == (first, 2)
        assert status.lag_seconds == pytest.approx(7.0)
        assert (status.in_flight, status.waiting, status.dead_letters) == (0, 0, 0)
        feed.save_cursor(name, feed.head())
        caught_up = _status(feed, name, "broadcast")
        assert (caught_up.lag_changes, caught_up.lag_seconds) == (0, None)

    def test_consumers_report_a_groups_claims_and_dead_letters(
        self, feed: ChangeFeed, writer: Writer, group: str, clock: ManualClock
    ) -> None:
        """A group is listed with its scan position, lag, in-flight, waiting and dead."""
        feed.enqueue(group, KIND)
        start = feed.head()
        writer.change("a")
        clock.advance(timedelta(seconds=2))
        writer.change("b")
        writer.change("c")
        clock.advance(timedelta(seconds=4))
        before = _status(feed, group, "work-queue")
        assert before.lag_changes == 3
        assert before.lag_seconds == pytest.approx(6.0)
        assert feed.enqueue(group, KIND) == 3
        dead = feed.claim(group, "m1", LEASE)
        assert dead is not None
        assert feed.dead_letter(dead, "boom")
        assert feed.claim(group, "m1", LEASE) is not None
        status = _status(feed, group, "work-queue")
        assert status.position == _positions(feed.changes(after=start))[-1]
        assert status.lag_changes == 0
        assert (status.in_flight, status.waiting, status.dead_letters) == (1, 1, 1)
        assert status.lag_seconds == pytest.approx(4.0)

    def test_consumers_are_listed_by_name(self, feed: ChangeFeed, writer: Writer) -> None:
        """``consumers()`` lists cursors and groups sorted by name."""
        names = [f"{prefix}-{writer.tag}" for prefix in ("c", "a", "b")]
        feed.save_cursor(names[0], feed.head())
        feed.enqueue(names[1], None)
        feed.save_cursor(names[2], feed.head())
        listed = [(s.name, s.mode) for s in feed.consumers() if s.name in names]
        assert listed == [
            (names[1], "work-queue"),
            (names[2], "broadcast"),
            (names[0], "broadcast"),
        ]

    # -- concurrency ---------------------------------------------------------------------------

    def test_a_reader_polling_during_concurrent_commits_misses_nothing(
        self, feed: ChangeFeed, writer: Writer
    ) -> None:
        """A reader following the feed while 4 threads commit sees every change once, in
        each entity's commit order: nothing ever appears behind its cursor."""
        start = feed.head()
        committed: list[Plan] = []
        done = threading.Event()
        errors: list[BaseException] = []
        seen: list[ChangeEvent] = []

        def write(name: str) -> None:
            own = Writer(writer.store, writer.id(name))
            try:
                for i in range(25):
                    committed.append(own.change(f"e{i % 3}"))
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        def read() -> None:
            cursor = start
            while len(seen) <= 1_000:  # a feed repeating itself must not spin forever
                finished = done.is_set()
                batch = feed.changes(after=cursor, kind=KIND)
                if batch:
                    seen.extend(batch)
                    cursor = _positions(batch)[-1]
                elif finished:
                    return
                else:
                    time.sleep(0.001)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        threads = [threading.Thread(target=write, args=(f"w{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        done.set()
        reader.join(timeout=60)
        assert not errors
        assert not reader.is_alive()
        assert sorted(_ids(seen)) == sorted(_plan_ids(committed))
        assert len(set(_ids(seen))) == 100
        assert _strictly_increasing(_positions(seen))
        for entity in {p.entity_id for p in committed}:
            in_feed = [e.change_id for e in seen if e.entity_id == entity]
            assert in_feed == [p.change_id for p in committed if p.entity_id == entity]

    def test_concurrent_members_claim_each_change_once_in_entity_order(
        self, feed: ChangeFeed, writer: Writer, group: str
    ) -> None:
        """4 threads claiming from one group handle each change once, per entity in order."""
        feed.enqueue(group, KIND)
        plans = [writer.change(f"e{i % 5}") for i in range(40)]
        assert feed.enqueue(group, KIND) == 40
        handled: list[ChangeEvent] = []
        guard = threading.Lock()
        errors: list[BaseException] = []

        def member(name: str) -> None:
            try:
                # Bounded: a feed handing changes out twice must not spin forever.
                while len(handled) <= 200 and (claim := feed.claim(group, name, LEASE)):
                    with guard:
                        handled.append(claim.change)
                    assert feed.complete(claim)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=member, args=(f"m{n}",), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
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

"""The in-memory change feed passes the feed contract, plus what only it promises."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import attrs
import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.memory.feed import MemoryFeed
from reactive_entities.adapters.memory.store import InMemoryEntityStore
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.position import START, Position
from reactive_entities.ports.feed import ChangeFeed
from reactive_entities.testing import ChangeFeedContract, make_plan, record
from reactive_entities.testing.feed_contract import FeedWorld

KIND = "incident"


class TestMemoryFeed(ChangeFeedContract):
    """``MemoryFeed`` fed by ``InMemoryEntityStore`` honours the feed contract."""

    @pytest.fixture
    def world(self, clock: ManualClock) -> Iterator[FeedWorld]:
        """The in-memory store committing into a memory feed, on one manual clock."""
        feed = MemoryFeed(clock)
        yield FeedWorld(store=InMemoryEntityStore(clock, on_commit=feed.record), feed=feed)


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock for the memory-only tests."""
    return ManualClock()


@pytest.fixture
def feed(clock: ManualClock) -> MemoryFeed:
    """An empty memory feed."""
    return MemoryFeed(clock)


@pytest.fixture
def store(clock: ManualClock, feed: MemoryFeed) -> InMemoryEntityStore:
    """The in-memory store committing into ``feed``."""
    return InMemoryEntityStore(clock, on_commit=feed.record)


def _create(store: InMemoryEntityStore, entity_id: str) -> str:
    """Commit a create of ``entity_id``; returns its change id."""
    plan = make_plan(KIND, entity_id, None, {"status": "open", "tags": ["a"]})
    record(store, plan)
    return plan.change_id


def test_memory_feed_is_a_change_feed(feed: MemoryFeed) -> None:
    """``MemoryFeed`` implements the port (checked by mypy and at runtime)."""
    port: ChangeFeed = feed
    assert isinstance(port, ChangeFeed)


def test_an_empty_feed_starts_at_start(feed: MemoryFeed) -> None:
    """Before any change, ``head()`` is ``START`` and nothing is readable."""
    assert feed.head() == START == Position(0, 0)
    assert list(feed.changes(after=None)) == []
    assert list(feed.consumers()) == []


def test_positions_count_up_from_one(feed: MemoryFeed, store: InMemoryEntityStore) -> None:
    """The n-th committed change sits at ``Position(0, n)``; ``head()`` is the last."""
    for n in range(3):
        _create(store, f"e-{n}")
    positions = [e.position for e in feed.changes(after=None)]
    assert positions == [Position(0, 1), Position(0, 2), Position(0, 3)]
    assert feed.head() == Position(0, 3)
    assert [e.position for e in feed.entity_changes(KIND, "e-1")] == [Position(0, 2)]


def test_append_keeps_the_documents_it_is_given(
    feed: MemoryFeed, store: InMemoryEntityStore
) -> None:
    """``append`` does not copy (the store hands the committed documents to nobody
    else); every read hands out copies instead, so readers cannot change the feed."""
    record(store, make_plan(KIND, "e-1", None, {"status": "open", "tags": ["a"]}))
    event = attrs.evolve(feed.changes(after=None)[0], change_id="c-direct", position=None)
    feed.append(event)
    read = feed.changes(after=Position(0, 1))[0]
    assert read.next is not None
    assert event.next is not None
    assert read.next["tags"] is not event.next["tags"]
    read.next["tags"].append("x")  # type: ignore[union-attr]
    assert feed.changes(after=Position(0, 1))[0].next == {"status": "open", "tags": ["a"]}


def test_four_threads_committing_get_unique_increasing_positions(
    feed: MemoryFeed, store: InMemoryEntityStore
) -> None:
    """4 threads × 50 commits: every change is in the feed once, at positions 1..200."""
    committed: list[str] = []
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(50):
                committed.append(_create(store, f"t{thread}-{i}"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    events = feed.changes(after=None)
    assert sorted(e.change_id for e in events) == sorted(committed)
    assert [e.position for e in events] == [Position(0, n) for n in range(1, 201)]


def test_a_failing_wake_up_neither_breaks_the_commit_nor_the_others(
    feed: MemoryFeed, store: InMemoryEntityStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A wake-up that raises is logged; the change is kept and later wake-ups run."""
    woken = threading.Event()

    def broken() -> None:
        raise RuntimeError("wake-up broke")

    feed.on_commit(broken)
    feed.on_commit(woken.set)
    with caplog.at_level(logging.WARNING, logger="reactive_entities.feed"):
        change_id = _create(store, "e-1")
    assert [e.change_id for e in feed.changes(after=None)] == [change_id]
    assert woken.is_set()
    assert "wake-up broke" in caplog.text


def test_a_wake_up_may_read_the_feed(feed: MemoryFeed, store: InMemoryEntityStore) -> None:
    """Wake-ups run outside the feed's lock: one that reads the feed does not deadlock."""
    seen: list[int] = []
    feed.on_commit(lambda: seen.append(len(feed.changes(after=None))))
    _create(store, "e-1")
    _create(store, "e-2")
    assert seen == [1, 2]


def test_stopping_a_wake_up_twice_is_harmless(feed: MemoryFeed, store: InMemoryEntityStore) -> None:
    """The stop function may be called again; the wake-up stays stopped."""
    calls: list[None] = []
    stop = feed.on_commit(lambda: calls.append(None))
    stop()
    stop()
    _create(store, "e-1")
    assert calls == []


@pytest.mark.parametrize("limit", [-1, True, 1.5])
def test_a_bad_limit_is_refused(feed: MemoryFeed, limit: object) -> None:
    """``limit`` must be a non-negative int, for both readers."""
    with pytest.raises(InvalidArgumentError, match="limit"):
        feed.changes(after=None, limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="limit"):
        feed.entity_changes(KIND, "e-1", limit=limit)  # type: ignore[arg-type]


def test_unknown_groups_have_nothing(feed: MemoryFeed) -> None:
    """Claiming, listing and retrying in a group never enqueued finds nothing."""
    assert feed.claim("nobody", "m1", timedelta(seconds=5)) is None
    assert list(feed.dead_letters("nobody")) == []
    assert feed.retry_dead_letters("nobody") == 0
    assert list(feed.consumers()) == []


def test_a_claim_from_another_feed_is_lost(
    clock: ManualClock, feed: MemoryFeed, store: InMemoryEntityStore
) -> None:
    """A claim this feed never issued (another feed's) completes nothing."""
    other = MemoryFeed(clock)
    other_store = InMemoryEntityStore(clock, on_commit=other.record)
    for f in (feed, other):
        f.enqueue("g", None)
    _create(store, "e-1")
    _create(other_store, "e-1")
    for f in (feed, other):
        f.enqueue("g", None)
    foreign = other.claim("g", "m1", timedelta(seconds=5))
    assert foreign is not None
    assert feed.complete(foreign) is False
    assert feed.claim("g", "m1", timedelta(seconds=5)) is not None

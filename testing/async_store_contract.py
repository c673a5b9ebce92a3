"""The ``AsyncEntityStore`` contract: the asyncio twin of
:class:`~reactive_entities.testing.EntityStoreContract` — the same assertions, awaited.

Fixtures are plain (this suite needs no pytest plugin for asyncio beyond running
``async def`` tests), so the store is opened inside each test: subclass the suite and
provide ``open_store``, a function returning an async context manager that yields the
store under test built on the given manual ``clock``::

    class TestMyAsyncStore(AsyncEntityStoreContract):
        @pytest.fixture
        def open_store(self, clock):
            return lambda: MyAsyncStore.opened(clock=clock)  # an async context manager

The concurrency tests use tasks of one event loop where the sync suite uses threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import ABSENT, Plan
from reactive_entities.domain.json import Document, structurally_equal
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.async_store import AsyncEntityStore, AsyncStoreTransaction
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.overrides import must_override

__all__ = ["AsyncEntityStoreContract", "OpenStore", "record_async"]

KIND = "contract"
#: What the ``open_store`` fixture returns.
OpenStore = Callable[[], AbstractAsyncContextManager[AsyncEntityStore]]


async def record_async(store: AsyncEntityStore, *plans: Plan) -> datetime:
    """Record ``plans`` in one write transaction of ``store`` (locking each entity), and
    commit; returns the stamp of the last one (``builders.record``, awaited)."""
    stamp: datetime | None = None
    async with await store.begin() as tx:
        for plan in plans:
            await tx.lock(plan.kind, plan.entity_id)
            stamp = await tx.record(plan)
        await tx.commit()
    if stamp is None:
        raise ValueError("record needs at least one plan")
    return stamp


@asynccontextmanager
async def _locked(
    store: AsyncEntityStore, kind: str, entity_id: str
) -> AsyncIterator[AsyncStoreTransaction]:
    """A write transaction holding one entity's lock; committed when the block ends."""
    async with await store.begin() as tx:
        await tx.lock(kind, entity_id)
        yield tx
        await tx.commit()


async def _eventually(done: asyncio.Event, seconds: float) -> bool:
    """Whether ``done`` is set within ``seconds``."""
    try:
        await asyncio.wait_for(done.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _doc(**values: Any) -> Document:
    base: Document = {"status": "open", "severity": "low", "payload": None}
    base.update(values)
    return base


class AsyncEntityStoreContract:
    """Behaviour every ``AsyncEntityStore`` must show (the sync contract, awaited)."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the store under test must stamp with."""
        return ManualClock()

    @pytest.fixture
    def open_store(self, clock: ManualClock) -> OpenStore:
        """Override: a function returning an async context manager that yields the
        store under test, built on ``clock``."""
        return next(must_override("subclass AsyncEntityStoreContract, provide `open_store`"))

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _create(
        store: AsyncEntityStore, clock: ManualClock, entity_id: str, **values: Any
    ) -> Document:
        doc = _doc(**values)
        await record_async(store, make_plan(KIND, entity_id, None, doc))
        return doc

    @staticmethod
    async def _update(
        store: AsyncEntityStore,
        clock: ManualClock,
        entity_id: str,
        prev: Document,
        **values: Any,
    ) -> Document:
        nxt = {**prev, **values}
        await record_async(store, make_plan(KIND, entity_id, prev, nxt))
        return nxt

    # -- record and stamping -------------------------------------------------------------

    async def test_record_stamps_every_row_with_the_returned_time(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """All rows of one change carry the one timestamp ``record`` returns."""
        async with open_store() as store:
            plan = make_plan(KIND, "e-1", None, _doc())
            stamp = await record_async(store, plan)
            assert stamp == clock.now()
            rows = await store.transitions(KIND, "e-1")
            assert [r.field for r in rows] == list(plan.changed_fields)
            assert {r.transitioned_at for r in rows} == {stamp}
            assert {r.change_id for r in rows} == {plan.change_id}

    async def test_create_rows_have_absent_from_values(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """A create's rows start from ``ABSENT``; a null field is recorded, not skipped."""
        async with open_store() as store:
            await self._create(store, clock, "e-1")
            rows = await store.transitions(KIND, "e-1")
            assert [r.field for r in rows] == ["payload", "severity", "status"]
            assert all(r.from_value is ABSENT for r in rows)
            payload = next(r for r in rows if r.field == "payload")
            assert payload.to_value is None

    async def test_update_rows_carry_previous_values_and_masked_flag(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """An update's row holds the previous value; ``masked`` round-trips."""
        async with open_store() as store:
            prev = await self._create(store, clock, "e-1", payload="x")
            clock.advance(timedelta(seconds=1))
            nxt = {**prev, "status": "closed", "payload": "token s3cr3t!"}
            secrets = SecretSet.of(["s3cr3t!"])
            await record_async(store, make_plan(KIND, "e-1", prev, nxt, secrets=secrets))
            rows = await store.transitions(KIND, "e-1", since=clock.now())
            by_field = {r.field: r for r in rows}
            assert by_field["status"].from_value == "open"
            assert by_field["status"].to_value == "closed"
            assert by_field["status"].masked is False
            assert by_field["payload"].from_value == "x"
            assert by_field["payload"].to_value == "token ****"
            assert by_field["payload"].masked is True

    async def test_remove_records_a_change_but_no_rows(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """A remove adds a change (op ``remove``) and no transition rows."""
        async with open_store() as store:
            prev = await self._create(store, clock, "e-1")
            clock.advance(timedelta(seconds=1))
            await record_async(store, make_plan(KIND, "e-1", prev, None))
            assert len(await store.transitions(KIND, "e-1")) == 3
            latest = await store.latest_change(KIND, "e-1")
            assert latest is not None
            assert latest.op == "remove"
            assert latest.occurred_at == clock.now()

    async def test_stamps_follow_the_clock(self, open_store: OpenStore, clock: ManualClock) -> None:
        """Each change is stamped with the clock's time at recording."""
        async with open_store() as store:
            prev = await self._create(store, clock, "e-1")
            t0 = clock.now()
            clock.advance(timedelta(minutes=3))
            await self._update(store, clock, "e-1", prev, status="closed")
            stamps = [
                r.transitioned_at for r in await store.transitions(KIND, "e-1", field="status")
            ]
            assert stamps == [t0, t0 + timedelta(minutes=3)]

    # -- latest_transition / latest_change -----------------------------------------------

    async def test_latest_transition_is_the_newest_row_of_the_field(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """``latest_transition`` returns the field's newest row; None for unknown ones."""
        async with open_store() as store:
            doc = await self._create(store, clock, "e-1")
            for status in ("a", "b", "c"):
                clock.advance(timedelta(seconds=1))
                doc = await self._update(store, clock, "e-1", doc, status=status)
            latest = await store.latest_transition(KIND, "e-1", "status")
            assert latest is not None
            assert (latest.from_value, latest.to_value) == ("b", "c")
            assert await store.latest_transition(KIND, "e-1", "nope") is None
            assert await store.latest_transition(KIND, "e-404", "status") is None
            assert await store.latest_change(KIND, "e-404") is None

    async def test_latest_at_an_instant(self, open_store: OpenStore, clock: ManualClock) -> None:
        """With ``at``, the newest row and change stamped at or before it are returned."""
        async with open_store() as store:
            t0 = clock.now()
            doc = await self._create(store, clock, "e-1")
            clock.advance(timedelta(minutes=1))
            await self._update(store, clock, "e-1", doc, status="closed")
            at_t0 = await store.latest_transition(
                KIND, "e-1", "status", at=t0 + timedelta(seconds=59)
            )
            assert at_t0 is not None
            assert at_t0.to_value == "open"
            exact = await store.latest_transition(
                KIND, "e-1", "status", at=t0 + timedelta(minutes=1)
            )
            assert exact is not None
            assert exact.to_value == "closed"
            assert (
                await store.latest_transition(KIND, "e-1", "status", at=t0 - timedelta(seconds=1))
                is None
            )
            change = await store.latest_change(KIND, "e-1", at=t0)
            assert change is not None
            assert change.op == "create"

    async def test_same_instant_changes_keep_recording_order(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """Rows stamped at the same instant are ordered by recording order."""
        async with open_store() as store:
            doc = await self._create(store, clock, "e-1")
            for status in ("a", "b", "c"):
                doc = await self._update(store, clock, "e-1", doc, status=status)
            rows = await store.transitions(KIND, "e-1", field="status")
            assert [r.to_value for r in rows] == ["open", "a", "b", "c"]
            latest = await store.latest_transition(KIND, "e-1", "status")
            assert latest is not None
            assert latest.to_value == "c"

    # -- count_transitions ---------------------------------------------------------------

    async def test_count_window_is_inclusive_at_both_ends(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """Rows exactly at ``since`` and at ``until`` are counted."""
        async with open_store() as store:
            t0 = clock.now()
            doc = await self._create(store, clock, "e-1")
            for i in range(1, 5):
                clock.advance(timedelta(minutes=1))
                doc = await self._update(store, clock, "e-1", doc, status=f"s{i}")
            now = clock.now()  # rows at t0, +1, +2, +3, +4 minutes
            assert await store.count_transitions(KIND, "e-1", "status", t0, now) == 5
            assert await store.count_transitions(KIND, "e-1", "status", timedelta(minutes=2)) == 3
            assert await store.count_transitions(KIND, "e-1", "status", timedelta(seconds=59)) == 1
            assert (
                await store.count_transitions(KIND, "e-1", "status", t0 + timedelta(minutes=1), now)
                == 4
            )
            assert await store.count_transitions(KIND, "e-1", "severity", timedelta(hours=1)) == 1
            assert await store.count_transitions(KIND, "e-404", "status", timedelta(hours=1)) == 0

    async def test_count_uses_the_store_clock_for_now(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """``until`` None means the store's now: rows age out of a window as time passes."""
        async with open_store() as store:
            await self._create(store, clock, "e-1")
            assert await store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 1
            clock.advance(timedelta(minutes=5))
            assert await store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 1
            clock.advance(timedelta(microseconds=1))
            assert await store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 0
            assert await store.now() == clock.now()

    # -- transitions ---------------------------------------------------------------------

    async def test_transitions_filter_since_and_limit(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """``since`` is inclusive; ``limit`` keeps the newest N, still oldest first."""
        async with open_store() as store:
            doc = await self._create(store, clock, "e-1")
            for i in range(1, 6):
                clock.advance(timedelta(seconds=10))
                doc = await self._update(store, clock, "e-1", doc, status=f"s{i}")
            status = [r.to_value for r in await store.transitions(KIND, "e-1", field="status")]
            assert status == ["open", "s1", "s2", "s3", "s4", "s5"]
            since = clock.now() - timedelta(seconds=20)
            assert [r.to_value for r in await store.transitions(KIND, "e-1", "status", since)] == [
                "s3",
                "s4",
                "s5",
            ]
            assert [
                r.to_value for r in await store.transitions(KIND, "e-1", "status", None, 2)
            ] == [
                "s4",
                "s5",
            ]
            assert list(await store.transitions(KIND, "e-1", "status", None, 0)) == []
            assert len(await store.transitions(KIND, "e-1")) == 3 + 5

    async def test_entities_and_kinds_are_isolated(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """Rows of one entity never show up for another id or another kind."""
        async with open_store() as store:
            await self._create(store, clock, "e-1")
            await record_async(store, make_plan("other", "e-1", None, _doc()))
            assert len(await store.transitions(KIND, "e-1")) == 3
            assert len(await store.transitions(KIND, "e-2")) == 0
            assert await store.count_transitions(KIND, "e-2", "status", timedelta(days=1)) == 0

    # -- values and identifiers ----------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [
            {"nested": {"list": [1, 2.5, "x", None, True, False]}, "k": {}},
            ["é", "日本語", "emoji 🎉", "quote ' \" \\ ;--", ""],
            12345678901234567890,
            -0.5,
            1e-7,
            "",
            False,
        ],
    )
    async def test_values_round_trip(
        self, open_store: OpenStore, clock: ManualClock, value: Any
    ) -> None:
        """JSON values come back structurally equal (bool stays bool, null stays null)."""
        async with open_store() as store:
            prev = await self._create(store, clock, "e-1")
            await self._update(store, clock, "e-1", prev, payload=value)
            row = await store.latest_transition(KIND, "e-1", "payload")
            assert row is not None
            assert row.from_value is None
            assert structurally_equal(row.to_value, value)
            assert type(row.to_value) is type(value) or isinstance(value, float)

    @pytest.mark.parametrize(
        "entity_id",
        [
            "plain",
            "quote'); DROP TABLE x; --",
            'double "quoted"',
            "ünïcödé 日本 🎉",
            "back\\slash",
            "x" * 10_240,
        ],
    )
    async def test_ids_round_trip_verbatim(
        self, open_store: OpenStore, clock: ManualClock, entity_id: str
    ) -> None:
        """Any id (quotes, SQL, unicode, 10 KB) is stored and read back verbatim."""
        async with open_store() as store:
            await self._create(store, clock, entity_id)
            rows = await store.transitions(KIND, entity_id)
            assert len(rows) == 3
            assert {r.entity_id for r in rows} == {entity_id}
            assert {r.kind for r in rows} == {KIND}

    # -- lock ----------------------------------------------------------------------------

    async def test_lock_serializes_tasks_on_one_entity(self, open_store: OpenStore) -> None:
        """Read-modify-write under the lock loses no update across 8 tasks."""
        counter = {"n": 0}

        async with open_store() as store:

            async def work() -> None:
                for _ in range(10):
                    async with _locked(store, KIND, "shared"):
                        seen = counter["n"]
                        await asyncio.sleep(0.0002)  # invite a lost update if the lock leaks
                        counter["n"] = seen + 1

            await asyncio.wait_for(asyncio.gather(*(work() for _ in range(8))), 60)
        assert counter["n"] == 8 * 10

    async def test_lock_does_not_block_other_entities(self, open_store: OpenStore) -> None:
        """Holding one entity's lock leaves another entity's lock free."""
        async with (
            open_store() as store,
            _locked(store, KIND, "a"),
            _locked(store, KIND, "b") as other,
        ):
            assert other is not None

    async def test_lock_blocks_a_second_holder_until_released(self, open_store: OpenStore) -> None:
        """A second task waits while the entity's lock is held."""
        entered = asyncio.Event()
        async with open_store() as store:

            async def second() -> None:
                async with _locked(store, KIND, "a"):
                    entered.set()

            async with _locked(store, KIND, "a"):
                task = asyncio.ensure_future(second())
                assert not await _eventually(entered, 0.3)
            assert await _eventually(entered, 10)
            await task

    async def test_lock_is_released_when_the_body_raises(self, open_store: OpenStore) -> None:
        """An exception inside the lock releases it."""
        async with open_store() as store:
            with pytest.raises(RuntimeError):
                async with _locked(store, KIND, "a"):
                    raise RuntimeError("boom")
            await asyncio.wait_for(record_async(store, make_plan(KIND, "a", None, _doc())), 10)

    async def test_a_task_cancelled_while_waiting_for_a_lock_holds_nothing(
        self, open_store: OpenStore
    ) -> None:
        """Cancelled while waiting for an entity's lock: the waiter records nothing and,
        once its transaction is left, holds nothing — the holder and later writers go on."""
        async with open_store() as store:
            waiting = asyncio.Event()

            async def waiter() -> None:
                async with await store.begin() as tx:
                    waiting.set()
                    await tx.lock(KIND, "a")
                    await tx.record(make_plan(KIND, "a", None, _doc(status="waiter")))
                    await tx.commit()

            async with _locked(store, KIND, "a") as holder:
                task = asyncio.ensure_future(waiter())
                await asyncio.wait_for(waiting.wait(), 10)
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await holder.record(make_plan(KIND, "a", None, _doc()))
            rows = await store.transitions(KIND, "a", field="status")
            assert [r.to_value for r in rows] == ["open"]
            await asyncio.wait_for(
                record_async(store, make_plan(KIND, "a", _doc(), _doc(status="closed"))), 10
            )

    # -- transactions --------------------------------------------------------------------

    async def test_nothing_is_visible_before_commit(self, open_store: OpenStore) -> None:
        """Recorded changes appear only when the transaction commits."""
        async with open_store() as store:
            async with await store.begin() as tx:
                await tx.lock(KIND, "e-1")
                await tx.record(make_plan(KIND, "e-1", None, _doc()))
                assert list(await store.transitions(KIND, "e-1")) == []
                assert await store.latest_change(KIND, "e-1") is None
                await tx.commit()
            assert len(await store.transitions(KIND, "e-1")) == 3

    async def test_rollback_discards_everything_and_unlocks(self, open_store: OpenStore) -> None:
        """A transaction left without commit records nothing and frees its entities."""
        async with open_store() as store:
            async with await store.begin() as tx:
                await tx.lock(KIND, "e-1")
                await tx.lock(KIND, "e-2")
                await tx.record(make_plan(KIND, "e-1", None, _doc()))
                await tx.record(make_plan(KIND, "e-2", None, _doc()))
            assert list(await store.transitions(KIND, "e-1")) == []
            assert list(await store.transitions(KIND, "e-2")) == []

            async def again() -> None:
                async with _locked(store, KIND, "e-1"), _locked(store, KIND, "e-2"):
                    pass

            await asyncio.wait_for(again(), 10)

    async def test_many_changes_commit_together_in_recording_order(
        self, open_store: OpenStore, clock: ManualClock
    ) -> None:
        """Several entities, and one entity twice, in one transaction: all rows appear
        at commit, in recording order, each entity's changes sharing its lock's stamp."""
        async with open_store() as store:
            first = _doc()
            second = {**first, "status": "closed"}
            async with await store.begin() as tx:
                stamp = await tx.lock(KIND, "e-1")
                assert await tx.lock(KIND, "e-1") == stamp  # again: a no-op
                await tx.record(make_plan(KIND, "e-1", None, first))
                clock.advance(timedelta(seconds=5))
                other = await tx.lock(KIND, "e-2")
                await tx.record(make_plan(KIND, "e-2", None, first))
                assert await tx.record(make_plan(KIND, "e-1", first, second)) == stamp
                await tx.commit()
            status = await store.transitions(KIND, "e-1", field="status")
            assert [r.to_value for r in status] == ["open", "closed"]
            assert {r.transitioned_at for r in status} == {stamp}
            assert {r.transitioned_at for r in await store.transitions(KIND, "e-2")} == {other}
            assert other == stamp + timedelta(seconds=5)

    async def test_commit_runs_then_before_releasing_the_locks(self, open_store: OpenStore) -> None:
        """``then`` runs once, after the commit; a writer of the entity that starts in
        ``then`` gets its lock only after ``then`` has run."""
        async with open_store() as store:
            order: list[str] = []
            tasks: list[asyncio.Future[None]] = []

            async def second() -> None:
                async with _locked(store, KIND, "e-1"):
                    order.append("second")

            def then() -> None:
                order.append("then")
                tasks.append(asyncio.ensure_future(second()))

            async with await store.begin() as tx:
                await tx.lock(KIND, "e-1")
                await tx.record(make_plan(KIND, "e-1", None, _doc()))
                await tx.commit(then)
            assert len(await store.transitions(KIND, "e-1")) == 3
            await asyncio.wait_for(tasks[0], 10)
            assert order == ["then", "second"]

    async def test_record_needs_the_entity_lock(self, open_store: OpenStore) -> None:
        """Recording an entity the transaction did not lock is refused."""
        async with (
            open_store() as store,
            await store.begin() as tx,
        ):
            with pytest.raises(InvalidArgumentError):
                await tx.record(make_plan(KIND, "e-1", None, _doc()))

    async def test_an_ended_transaction_refuses_more_work(self, open_store: OpenStore) -> None:
        """After commit, locking or committing again is refused; rollback is a no-op."""
        async with open_store() as store, await store.begin() as tx:
            await tx.commit()
            with pytest.raises(InvalidArgumentError):
                await tx.lock(KIND, "e-1")
            with pytest.raises(InvalidArgumentError):
                await tx.commit()
            await tx.rollback()

    async def test_close_is_idempotent(self, open_store: OpenStore) -> None:
        """``close`` may be called twice."""
        async with open_store() as store:
            await store.close()
            await store.close()

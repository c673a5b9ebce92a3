"""The ``EntityStore`` contract: a pytest suite any store adapter can run.

Subclass it in a test module and provide a ``store`` fixture built on the given manual
``clock``::

    class TestMyStore(EntityStoreContract):
        @pytest.fixture
        def store(self, clock):
            yield MyStore(clock=clock)

The suite drives the store directly (no engine), with changes planned by the real
domain code, and checks stamping, ordering, the temporal queries, value round trips,
and that ``lock`` really serializes threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import ABSENT
from reactive_entities.domain.json import Document, structurally_equal
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.store import EntityStore, StoreTransaction
from reactive_entities.testing.builders import make_plan, record
from reactive_entities.testing.overrides import must_override

__all__ = ["EntityStoreContract"]

KIND = "contract"


@contextmanager
def _locked(store: EntityStore, kind: str, entity_id: str) -> Iterator[StoreTransaction]:
    """A write transaction holding one entity's lock; committed when the block ends."""
    with store.begin() as tx:
        tx.lock(kind, entity_id)
        yield tx
        tx.commit()


def _doc(**values: Any) -> Document:
    base: Document = {"status": "open", "severity": "low", "payload": None}
    base.update(values)
    return base


class EntityStoreContract:
    """Behaviour every ``EntityStore`` must show (DESIGN §3, SPEC §7–§8)."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the store under test must stamp with."""
        return ManualClock()

    @pytest.fixture
    def store(self, clock: ManualClock) -> Iterator[EntityStore]:
        """Override: yield the store under test, built on ``clock``."""
        yield from must_override("subclass EntityStoreContract and provide a `store` fixture")

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _create(store: EntityStore, clock: ManualClock, entity_id: str, **values: Any) -> Document:
        doc = _doc(**values)
        record(store, make_plan(KIND, entity_id, None, doc))
        return doc

    @staticmethod
    def _update(
        store: EntityStore, clock: ManualClock, entity_id: str, prev: Document, **values: Any
    ) -> Document:
        nxt = {**prev, **values}
        record(store, make_plan(KIND, entity_id, prev, nxt))
        return nxt

    # -- record and stamping -------------------------------------------------------------

    def test_record_stamps_every_row_with_the_returned_time(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """All rows of one change carry the one timestamp ``record`` returns."""
        plan = make_plan(KIND, "e-1", None, _doc())
        stamp = record(store, plan)
        assert stamp == clock.now()
        rows = store.transitions(KIND, "e-1")
        assert [r.field for r in rows] == list(plan.changed_fields)
        assert {r.transitioned_at for r in rows} == {stamp}
        assert {r.change_id for r in rows} == {plan.change_id}

    def test_create_rows_have_absent_from_values(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """A create's rows start from ``ABSENT``; a null field is recorded, not skipped."""
        self._create(store, clock, "e-1")
        rows = store.transitions(KIND, "e-1")
        assert [r.field for r in rows] == ["payload", "severity", "status"]
        assert all(r.from_value is ABSENT for r in rows)
        payload = next(r for r in rows if r.field == "payload")
        assert payload.to_value is None

    def test_update_rows_carry_previous_values_and_masked_flag(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """An update's row holds the previous value; ``masked`` round-trips."""
        prev = self._create(store, clock, "e-1", payload="x")
        clock.advance(timedelta(seconds=1))
        nxt = {**prev, "status": "closed", "payload": "token s3cr3t!"}
        secrets = SecretSet.of(["s3cr3t!"])
        record(store, make_plan(KIND, "e-1", prev, nxt, secrets=secrets))
        rows = store.transitions(KIND, "e-1", since=clock.now())
        by_field = {r.field: r for r in rows}
        assert by_field["status"].from_value == "open"
        assert by_field["status"].to_value == "closed"
        assert by_field["status"].masked is False
        assert by_field["payload"].from_value == "x"
        assert by_field["payload"].to_value == "token ****"
        assert by_field["payload"].masked is True

    def test_remove_records_a_change_but_no_rows(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """A remove adds a change (op ``remove``) and no transition rows."""
        prev = self._create(store, clock, "e-1")
        clock.advance(timedelta(seconds=1))
        record(store, make_plan(KIND, "e-1", prev, None))
        assert len(store.transitions(KIND, "e-1")) == 3
        latest = store.latest_change(KIND, "e-1")
        assert latest is not None
        assert latest.op == "remove"
        assert latest.occurred_at == clock.now()

    def test_stamps_follow_the_clock(self, store: EntityStore, clock: ManualClock) -> None:
        """Each change is stamped with the clock's time at recording."""
        prev = self._create(store, clock, "e-1")
        t0 = clock.now()
        clock.advance(timedelta(minutes=3))
        self._update(store, clock, "e-1", prev, status="closed")
        stamps = [r.transitioned_at for r in store.transitions(KIND, "e-1", field="status")]
        assert stamps == [t0, t0 + timedelta(minutes=3)]

    # -- latest_transition / latest_change -----------------------------------------------

    def test_latest_transition_is_the_newest_row_of_the_field(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """``latest_transition`` returns the field's newest row; None for unknown ones."""
        doc = self._create(store, clock, "e-1")
        for status in ("a", "b", "c"):
            clock.advance(timedelta(seconds=1))
            doc = self._update(store, clock, "e-1", doc, status=status)
        latest = store.latest_transition(KIND, "e-1", "status")
        assert latest is not None
        assert (latest.from_value, latest.to_value) == ("b", "c")
        assert store.latest_transition(KIND, "e-1", "nope") is None
        assert store.latest_transition(KIND, "e-404", "status") is None
        assert store.latest_change(KIND, "e-404") is None

    def test_latest_at_an_instant(self, store: EntityStore, clock: ManualClock) -> None:
        """With ``at``, the newest row and change stamped at or before it are returned."""
        t0 = clock.now()
        doc = self._create(store, clock, "e-1")
        clock.advance(timedelta(minutes=1))
        self._update(store, clock, "e-1", doc, status="closed")
        at_t0 = store.latest_transition(KIND, "e-1", "status", at=t0 + timedelta(seconds=59))
        assert at_t0 is not None
        assert at_t0.to_value == "open"
        exact = store.latest_transition(KIND, "e-1", "status", at=t0 + timedelta(minutes=1))
        assert exact is not None
        assert exact.to_value == "closed"
        assert store.latest_transition(KIND, "e-1", "status", at=t0 - timedelta(seconds=1)) is None
        change = store.latest_change(KIND, "e-1", at=t0)
        assert change is not None
        assert change.op == "create"

    def test_same_instant_changes_keep_recording_order(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """Rows stamped at the same instant are ordered by recording order."""
        doc = self._create(store, clock, "e-1")
        for status in ("a", "b", "c"):
            doc = self._update(store, clock, "e-1", doc, status=status)
        rows = store.transitions(KIND, "e-1", field="status")
        assert [r.to_value for r in rows] == ["open", "a", "b", "c"]
        latest = store.latest_transition(KIND, "e-1", "status")
        assert latest is not None
        assert latest.to_value == "c"

    # -- count_transitions ---------------------------------------------------------------

    def test_count_window_is_inclusive_at_both_ends(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """Rows exactly at ``since`` and at ``until`` are counted."""
        t0 = clock.now()
        doc = self._create(store, clock, "e-1")
        for i in range(1, 5):
            clock.advance(timedelta(minutes=1))
            doc = self._update(store, clock, "e-1", doc, status=f"s{i}")
        now = clock.now()  # rows at t0, +1, +2, +3, +4 minutes
        assert store.count_transitions(KIND, "e-1", "status", t0, now) == 5
        assert store.count_transitions(KIND, "e-1", "status", timedelta(minutes=2)) == 3
        assert store.count_transitions(KIND, "e-1", "status", timedelta(seconds=59)) == 1
        assert store.count_transitions(KIND, "e-1", "status", t0 + timedelta(minutes=1), now) == 4
        assert store.count_transitions(KIND, "e-1", "severity", timedelta(hours=1)) == 1
        assert store.count_transitions(KIND, "e-404", "status", timedelta(hours=1)) == 0

    def test_count_uses_the_store_clock_for_now(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """``until`` None means the store's now: rows age out of a window as time passes."""
        self._create(store, clock, "e-1")
        assert store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 1
        clock.advance(timedelta(minutes=5))
        assert store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 1
        clock.advance(timedelta(microseconds=1))
        assert store.count_transitions(KIND, "e-1", "status", timedelta(minutes=5)) == 0
        assert store.now() == clock.now()

    # -- transitions ---------------------------------------------------------------------

    def test_transitions_filter_since_and_limit(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """``since`` is inclusive; ``limit`` keeps the newest N, still oldest first."""
        doc = self._create(store, clock, "e-1")
        for i in range(1, 6):
            clock.advance(timedelta(seconds=10))
            doc = self._update(store, clock, "e-1", doc, status=f"s{i}")
        status = [r.to_value for r in store.transitions(KIND, "e-1", field="status")]
        assert status == ["open", "s1", "s2", "s3", "s4", "s5"]
        since = clock.now() - timedelta(seconds=20)
        assert [r.to_value for r in store.transitions(KIND, "e-1", "status", since)] == [
            "s3",
            "s4",
            "s5",
        ]
        assert [r.to_value for r in store.transitions(KIND, "e-1", "status", None, 2)] == [
            "s4",
            "s5",
        ]
        assert list(store.transitions(KIND, "e-1", "status", None, 0)) == []
        assert len(store.transitions(KIND, "e-1")) == 3 + 5

    def test_entities_and_kinds_are_isolated(self, store: EntityStore, clock: ManualClock) -> None:
        """Rows of one entity never show up for another id or another kind."""
        self._create(store, clock, "e-1")
        record(store, make_plan("other", "e-1", None, _doc()))
        assert len(store.transitions(KIND, "e-1")) == 3
        assert len(store.transitions(KIND, "e-2")) == 0
        assert store.count_transitions(KIND, "e-2", "status", timedelta(days=1)) == 0

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
    def test_values_round_trip(self, store: EntityStore, clock: ManualClock, value: Any) -> None:
        """JSON values come back structurally equal (bool stays bool, null stays null)."""
        prev = self._create(store, clock, "e-1")
        self._update(store, clock, "e-1", prev, payload=value)
        row = store.latest_transition(KIND, "e-1", "payload")
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
    def test_ids_round_trip_verbatim(
        self, store: EntityStore, clock: ManualClock, entity_id: str
    ) -> None:
        """Any id (quotes, SQL, unicode, 10 KB) is stored and read back verbatim."""
        self._create(store, clock, entity_id)
        rows = store.transitions(KIND, entity_id)
        assert len(rows) == 3
        assert {r.entity_id for r in rows} == {entity_id}
        assert {r.kind for r in rows} == {KIND}

    # -- lock ----------------------------------------------------------------------------

    def test_lock_serializes_threads_on_one_entity(self, store: EntityStore) -> None:
        """Read-modify-write under the lock loses no update across 8 threads."""
        counter = {"n": 0}
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(20):
                    with _locked(store, KIND, "shared"):
                        seen = counter["n"]
                        time.sleep(0.0002)  # invite a lost update if the lock leaks
                        counter["n"] = seen + 1
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert counter["n"] == 8 * 20

    def test_lock_does_not_block_other_entities(self, store: EntityStore) -> None:
        """Holding one entity's lock leaves another entity's lock free."""
        acquired = threading.Event()
        with _locked(store, KIND, "a"):

            def other() -> None:
                with _locked(store, KIND, "b"):
                    acquired.set()

            thread = threading.Thread(target=other)
            thread.start()
            assert acquired.wait(timeout=10)
            thread.join(timeout=10)

    def test_lock_blocks_a_second_holder_until_released(self, store: EntityStore) -> None:
        """A second thread waits while the entity's lock is held."""
        entered = threading.Event()

        def second() -> None:
            with _locked(store, KIND, "a"):
                entered.set()

        with _locked(store, KIND, "a"):
            thread = threading.Thread(target=second)
            thread.start()
            assert not entered.wait(timeout=0.3)
        assert entered.wait(timeout=10)
        thread.join(timeout=10)

    def test_lock_is_released_when_the_body_raises(self, store: EntityStore) -> None:
        """An exception inside the lock releases it."""
        with pytest.raises(RuntimeError), _locked(store, KIND, "a"):
            raise RuntimeError("boom")
        done = threading.Event()

        def again() -> None:
            with _locked(store, KIND, "a"):
                done.set()

        thread = threading.Thread(target=again)
        thread.start()
        assert done.wait(timeout=10)
        thread.join(timeout=10)

    # -- transactions --------------------------------------------------------------------

    def test_nothing_is_visible_before_commit(self, store: EntityStore) -> None:
        """Recorded changes appear only when the transaction commits."""
        with store.begin() as tx:
            tx.lock(KIND, "e-1")
            tx.record(make_plan(KIND, "e-1", None, _doc()))
            assert list(store.transitions(KIND, "e-1")) == []
            assert store.latest_change(KIND, "e-1") is None
            tx.commit()
        assert len(store.transitions(KIND, "e-1")) == 3

    def test_rollback_discards_everything_and_unlocks(self, store: EntityStore) -> None:
        """A transaction left without commit records nothing and frees its entities."""
        with store.begin() as tx:
            tx.lock(KIND, "e-1")
            tx.lock(KIND, "e-2")
            tx.record(make_plan(KIND, "e-1", None, _doc()))
            tx.record(make_plan(KIND, "e-2", None, _doc()))
        assert list(store.transitions(KIND, "e-1")) == []
        assert list(store.transitions(KIND, "e-2")) == []
        done = threading.Event()

        def again() -> None:
            with _locked(store, KIND, "e-1"), _locked(store, KIND, "e-2"):
                done.set()

        thread = threading.Thread(target=again)
        thread.start()
        assert done.wait(timeout=10)
        thread.join(timeout=10)

    def test_many_changes_commit_together_in_recording_order(
        self, store: EntityStore, clock: ManualClock
    ) -> None:
        """Several entities, and one entity twice, in one transaction: all rows appear
        at commit, in recording order, each entity's changes sharing its lock's stamp."""
        first = _doc()
        second = {**first, "status": "closed"}
        with store.begin() as tx:
            stamp = tx.lock(KIND, "e-1")
            assert tx.lock(KIND, "e-1") == stamp  # again: a no-op
            tx.record(make_plan(KIND, "e-1", None, first))
            clock.advance(timedelta(seconds=5))
            other = tx.lock(KIND, "e-2")
            tx.record(make_plan(KIND, "e-2", None, first))
            assert tx.record(make_plan(KIND, "e-1", first, second)) == stamp
            tx.commit()
        status = store.transitions(KIND, "e-1", field="status")
        assert [r.to_value for r in status] == ["open", "closed"]
        assert {r.transitioned_at for r in status} == {stamp}
        assert {r.transitioned_at for r in store.transitions(KIND, "e-2")} == {other}
        assert other == stamp + timedelta(seconds=5)

    def test_commit_runs_then_before_releasing_the_locks(self, store: EntityStore) -> None:
        """``then`` runs after the rows are visible and while the entity is still locked."""
        seen: list[int] = []
        waiting = threading.Event()
        entered = threading.Event()

        def second() -> None:
            waiting.set()
            with _locked(store, KIND, "e-1"):
                entered.set()

        def then() -> None:
            seen.append(len(store.transitions(KIND, "e-1")))
            thread.start()
            assert waiting.wait(timeout=10)
            seen.append(int(entered.wait(timeout=0.3)))

        thread = threading.Thread(target=second)
        with store.begin() as tx:
            tx.lock(KIND, "e-1")
            tx.record(make_plan(KIND, "e-1", None, _doc()))
            tx.commit(then)
        assert seen == [3, 0]
        assert entered.wait(timeout=10)
        thread.join(timeout=10)

    def test_record_needs_the_entity_lock(self, store: EntityStore) -> None:
        """Recording an entity the transaction did not lock is refused."""
        with store.begin() as tx, pytest.raises(InvalidArgumentError):
            tx.record(make_plan(KIND, "e-1", None, _doc()))

    def test_an_ended_transaction_refuses_more_work(self, store: EntityStore) -> None:
        """After commit, locking or committing again is refused; rollback is a no-op."""
        with store.begin() as tx:
            tx.commit()
            with pytest.raises(InvalidArgumentError):
                tx.lock(KIND, "e-1")
            with pytest.raises(InvalidArgumentError):
                tx.commit()
            tx.rollback()

    def test_close_is_idempotent(self, store: EntityStore) -> None:
        """``close`` may be called twice."""
        store.close()
        store.close()

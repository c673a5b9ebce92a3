"""The asyncio engine against SPEC §1–§13 on both stores: the counterparts of
test_engine_mutate, test_engine_queries, test_engine_define, test_engine_bad_input,
test_engine_subscriptions and test_engine_helpers (same assertions, awaited)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from reactive_entities import (
    ABSENT,
    SYSTEM_ACTOR,
    Actor,
    ChangeEvent,
    DefinitionError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidReadError,
    MissingStateError,
    StateValidationError,
    UnknownFieldError,
    UnknownKindError,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.aio import compose, remove_through, write_through
from reactive_entities.testing.aio_world import fresh_id, open_world
from reactive_entities.testing.examples import Incident, Satellite
from reactive_entities.testing.plugin import DictStorage

Backend = tuple[str, str | None, str | None]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
OPEN = Incident("open", "low")


# -- §5–§7 mutate, remove, the event, the rows -------------------------------------------


async def test_spec_5_create_update_and_no_op(aio_backend: Backend) -> None:
    """SPEC §5: a create records a row per field and emits once; an update only the
    changed fields; a no-op records and emits nothing but returns next."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        state = await w.handle.mutate(i, w.storage.put(i, Incident("open", "low", "t")))
        assert state == Incident("open", "low", "t")
        rows = await w.handle.history(i)
        assert [r.field for r in rows] == ["severity", "status", "system_ids", "title", "token"]
        await w.handle.mutate(i, w.storage.patch(i, status="resolved", title="x"))
        event = w.events[-1]
        assert (event.op, event.changed_fields) == ("update", ("status", "title"))
        assert event.delta == {"status": "resolved", "title": "x"}
        same = await w.handle.mutate(i, lambda: attrs.asdict(w.storage.rows[i]))
        assert same == w.storage.rows[i]
        assert await w.changes_recorded(i) == 2
        assert [e.op for e in w.events] == ["create", "update"]


async def test_spec_5_apply_may_return_a_mapping(aio_backend: Backend) -> None:
    """SPEC §2: a mapping from apply is structured (defaults filled); sensitive masked."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        state = await w.handle.mutate(i, lambda: {"status": "open", "severity": "high"})
        assert state == Incident("open", "high", "", "", ())
        assert w.events[0].next == {
            "status": "open",
            "severity": "high",
            "title": "",
            "token": "****",
            "system_ids": [],
        }


async def test_spec_5_read_before_apply_and_read_errors(aio_backend: Backend) -> None:
    """SPEC §5.3: read runs before apply; a raising read or a read of the wrong type
    stops the write before apply."""
    async with open_world(*aio_backend) as w:
        order: list[str] = []

        async def read(ids: Any) -> Any:
            order.append("read")
            return w.storage.read(ids)

        ordered = w.engine.define_entity("ordered", Incident, read=read)
        w.storage.rows["x"] = OPEN

        async def apply() -> Incident:
            order.append("apply")
            return w.storage.patch("x", status="resolved")()

        await ordered.mutate("x", apply)
        assert order == ["read", "apply"]
        assert (await ordered.history("x"))[0].from_value == "open"

        def broken(ids: Any) -> Any:
            raise ConnectionError("plugin storage down")

        called: list[int] = []
        handle = w.engine.define_entity("broken", Incident, read=broken)
        with pytest.raises(ConnectionError, match="plugin storage down"):
            await handle.mutate("x", lambda: called.append(1))
        wrong = w.engine.define_entity("wrong", Incident, read=lambda ids: {"x": 42})  # type: ignore[arg-type]
        with pytest.raises(StateValidationError, match="wrong:x"):
            await wrong.mutate("x", lambda: called.append(1))
        assert called == []


async def test_spec_5_apply_errors_none_and_invalid_states(aio_backend: Backend) -> None:
    """SPEC §5.4–§5.5: apply's error propagates unchanged; None is MissingStateError;
    an invalid state StateValidationError naming each field; nothing recorded."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        error = KeyError("plugin says no")

        async def apply() -> Incident:
            raise error

        with pytest.raises(KeyError) as caught:
            await w.handle.mutate(i, apply)
        assert caught.value is error
        with pytest.raises(MissingStateError, match=f"incident:{i}"):
            await w.handle.mutate(i, lambda: None)
        with pytest.raises(StateValidationError) as invalid:
            await w.handle.mutate(i, lambda: {"status": "bogus", "severity": 3, "title": 1})
        assert set(invalid.value.field_errors) >= {"status", "severity", "title"}
        assert (invalid.value.kind, invalid.value.entity_id) == ("incident", i)
        with pytest.raises(StateValidationError, match="title"):
            await w.handle.mutate(i, lambda: Incident("open", "low", title=float("nan")))  # type: ignore[arg-type]
        assert await w.changes_recorded(i) == 0
        assert w.events == []


async def test_spec_5_remove(aio_backend: Backend) -> None:
    """SPEC §5/§7: remove records an op=remove change without rows and returns None;
    of an absent entity it runs apply and records nothing; its return value is ignored."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        await w.handle.mutate(i, w.storage.put(i, OPEN))
        assert await w.handle.remove(i, lambda: {"not": "a state"}) is None  # type: ignore[func-returns-value]
        assert len(await w.handle.history(i)) == 5
        event = w.events[-1]
        assert (event.op, event.next, event.delta) == ("remove", None, {})
        assert event.prev is not None
        assert event.prev["status"] == "open"
        called: list[int] = []
        await w.handle.remove(fresh_id(), lambda: called.append(1))
        assert called == [1]
        assert len(w.events) == 2


async def test_spec_5_returned_state_is_not_masked(aio_backend: Backend) -> None:
    """SPEC §4: the returned value is never masked; the event is."""
    async with open_world(*aio_backend) as w:
        i = fresh_id()
        await w.engine.secrets.register("run-1", ["hunter2-secret"])
        state = await w.handle.mutate(
            i, w.storage.put(i, Incident("open", "low", "pw hunter2-secret", "tok")), run_id="run-1"
        )
        assert (state.title, state.token) == ("pw hunter2-secret", "tok")
        assert w.events[0].next == {
            "status": "open",
            "severity": "low",
            "title": "pw ****",
            "token": "****",
            "system_ids": [],
        }
        row = (await w.handle.history(i, field="title"))[0]
        assert (row.to_value, row.masked) == ("pw ****", True)


async def test_spec_6_event_fields_and_rows() -> None:
    """SPEC §6–§7: the event's fields, stamps equal to the rows', UUID4 ids, ABSENT
    from-values on a create, None for a null field, Z when serialized."""
    clock = ManualClock(T0)
    async with compose.in_memory(clock=clock) as engine:
        storage: DictStorage[Incident] = DictStorage()
        handle = engine.define_entity("incident", Incident, read=storage.read)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        actor = Actor.user("u-1", "Ada")
        await handle.mutate("inc-1", storage.put("inc-1", OPEN), actor=actor)
        clock.advance(timedelta(seconds=5))
        await handle.mutate("inc-1", storage.patch("inc-1", severity="high"), run_id="run-9")
        created, updated = events
        assert (created.actor, created.run_id, created.occurred_at) == (actor, None, T0)
        assert (updated.actor, updated.run_id) == (SYSTEM_ACTOR, "run-9")
        assert updated.prev == created.next
        assert updated.occurred_at == T0 + timedelta(seconds=5)
        assert all(uuid.UUID(e.change_id).version == 4 for e in events)
        rows = await handle.history("inc-1")
        assert all(r.from_value is ABSENT for r in rows[:5])
        assert {r.transitioned_at for r in rows[:5]} == {T0}
        assert created.to_dict()["occurred_at"] == "2024-01-01T00:00:00.000000Z"
        sats: DictStorage[Satellite] = DictStorage()
        sat = engine.define_entity("sat", Satellite, read=sats.read)
        await sat.mutate("s", sats.put("s", Satellite("nominal", "eu")))
        await sat.mutate("s", sats.patch("s", launched_at=T0))
        first, second = await sat.history("s", field="launched_at")
        assert (first.from_value, second.from_value) == (ABSENT, None)


# -- §8 temporal queries ------------------------------------------------------------------


async def test_spec_8_temporal_queries() -> None:
    """SPEC §8: in_state_since/for, transition_count (inclusive window), value_at,
    history order, since and limit — the blocking engine's assertions."""
    clock = ManualClock(T0)
    async with compose.in_memory(clock=clock) as engine:
        storage: DictStorage[Incident] = DictStorage()
        handle = engine.define_entity("incident", Incident, read=storage.read)
        await handle.mutate("inc-1", storage.put("inc-1", OPEN))
        for status in ("investigating", "open"):
            clock.advance(MINUTE)
            await handle.mutate("inc-1", storage.patch("inc-1", status=status))
        assert await handle.in_state_since("inc-1", "status") == T0 + 2 * MINUTE
        assert await handle.in_state_since("inc-1", "severity") == T0
        assert await handle.in_state_since("ghost", "status") is None
        assert await handle.transition_count("inc-1", "status", window=2 * MINUTE) == 3
        assert await handle.transition_count("inc-1", "status", window=MINUTE) == 2
        clock.advance(timedelta(seconds=90))
        assert await handle.in_state_for("inc-1", "status") == timedelta(seconds=90)
        instants = [T0, T0 + timedelta(seconds=59), T0 + MINUTE, T0 + 2 * MINUTE]
        values = [await handle.value_at("inc-1", "status", at) for at in instants]
        assert values == ["open", "open", "investigating", "open"]
        assert await handle.value_at("inc-1", "status", T0 - timedelta(microseconds=1)) is None
        statuses = [r.to_value for r in await handle.history("inc-1", field="status", limit=2)]
        assert statuses == ["investigating", "open"]
        since = await handle.history("inc-1", field="status", since=T0 + MINUTE)
        assert [r.to_value for r in since] == ["investigating", "open"]
        storage.rows["inc-1"] = Incident("resolved", "low")  # written behind the log's back
        assert await handle.in_state_since("inc-1", "status") is None
        await handle.remove("inc-1", storage.delete("inc-1"))
        assert await handle.value_at("inc-1", "status", clock.now()) is None
        assert await handle.transition_count("inc-1", "status", window=timedelta(hours=1)) == 3
        for call in (
            handle.in_state_since("inc-1", "nope"),
            handle.transition_count("inc-1", "nope", window=MINUTE),
            handle.value_at("inc-1", "nope", T0),
            handle.history("inc-1", field="nope"),
        ):
            with pytest.raises(UnknownFieldError, match=r'"nope".*incident'):
                await call


async def test_get_and_get_many(aio_backend: Backend) -> None:
    """get reads one entity through read; get_many the present ones, in the asked order."""
    async with open_world(*aio_backend) as w:
        w.storage.rows.update({"inc-1": OPEN, "inc-2": Incident("resolved", "high")})
        assert await w.handle.get("inc-1") == OPEN
        assert await w.handle.get("ghost") is None
        many = await w.handle.get_many(["inc-2", "ghost", "inc-1", "inc-2"])
        assert list(many.items()) == [("inc-2", Incident("resolved", "high")), ("inc-1", OPEN)]


# -- §1 defining kinds; §12 bad input ----------------------------------------------------


async def test_spec_1_define_checks_in_order() -> None:
    """SPEC §1: bad kind, duplicate, read not callable, not attrs, unknown sensitive."""
    async with compose.in_memory() as engine:
        with pytest.raises(DefinitionError):
            engine.define_entity("bad kind", Incident, read=lambda ids: {})
        engine.define_entity("incident", Incident, read=lambda ids: {})
        with pytest.raises(DefinitionError, match='duplicate kind "incident"'):
            engine.define_entity("incident", Incident, read=lambda ids: {})
        with pytest.raises(InvalidReadError):
            engine.define_entity("other", Incident, read="nope")  # type: ignore[arg-type]
        with pytest.raises(DefinitionError, match=r"\(got dict\)"):
            engine.define_entity("other", dict, read=lambda ids: {})
        with pytest.raises(UnknownFieldError):
            engine.define_entity("other", Incident, read=lambda ids: {}, sensitive=["nope"])
        assert engine.kinds() == ("incident",)
        with pytest.raises(UnknownKindError):
            engine.handle("Incident")
        handle = engine.handle("incident")
        assert (handle.kind, handle.state_class, handle.sensitive) == (
            "incident",
            Incident,
            frozenset(),
        )
        assert repr(handle) == "<AsyncEntityHandle incident (Incident)>"


BAD_IDS: list[object] = ["", "   ", None, 5, b"inc", "nul\x00byte"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_spec_12_bad_ids_in_every_method(bad_id: object) -> None:
    """SPEC §13.5: every handle method that takes an id refuses a bad one."""
    async with open_world("memory") as w:
        h: Any = w.handle
        calls = [
            h.mutate(bad_id, lambda: OPEN),
            h.remove(bad_id, lambda: None),
            h.get(bad_id),
            h.get_many([bad_id]),
            h.in_state_since(bad_id, "status"),
            h.in_state_for(bad_id, "status"),
            h.transition_count(bad_id, "status", window=timedelta(1)),
            h.value_at(bad_id, "status", T0),
            h.history(bad_id),
            h.changes(bad_id),
        ]
        for call in calls:
            with pytest.raises(InvalidArgumentError, match="entity id"):
                await call


async def test_spec_12_bad_arguments() -> None:
    """SPEC §12: non-callable apply, bad window, actor and run_id are refused before
    anything runs."""
    async with open_world("memory") as w:
        with pytest.raises(InvalidArgumentError, match="apply"):
            await w.handle.mutate("i", "nope")  # type: ignore[arg-type]
        for window in (timedelta(0), -MINUTE, 5, None):
            with pytest.raises(InvalidArgumentError, match="window"):
                await w.handle.transition_count("i", "status", window=window)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="actor"):
            await w.handle.mutate("i", lambda: OPEN, actor="me")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="run_id"):
            await w.handle.mutate("i", lambda: OPEN, run_id=" ")
        with pytest.raises(InvalidArgumentError, match="single str"):
            await w.handle.get_many("i")
        assert w.events == []


async def test_every_call_on_a_closed_engine_raises() -> None:
    """SPEC §16.7: after close, every call raises EngineClosedError; close again is fine."""
    engine = compose.in_memory()
    storage: DictStorage[Incident] = DictStorage()
    handle = engine.define_entity("incident", Incident, read=storage.read)
    await engine.close()
    await engine.close()
    assert engine.closed
    for call in (
        engine.secrets.register("run-1", ["abcd-secret"]),
        engine.secrets.secrets_for("run-1"),
        engine.subscribe(print),
        handle.get("o-1"),
        handle.mutate("o-1", lambda: OPEN),
        handle.history("o-1"),
        engine.changes(),
    ):
        with pytest.raises(EngineClosedError):
            await call
    for plain in (
        engine.kinds,
        lambda: engine.handle("incident"),
        lambda: engine.transaction(),
        lambda: engine.register_deriver("incident", lambda e: ()),
        lambda: engine.define_entity("other", Incident, read=lambda ids: {}),
    ):
        with pytest.raises(EngineClosedError):
            plain()


async def test_unknown_run_policy() -> None:
    """Issue 12 on the asyncio engine: "warn" logs once per run id; "error" refuses
    before apply; a run registered with no values is known."""
    async with compose.in_memory(unknown_run="error") as engine:
        storage: DictStorage[Incident] = DictStorage()
        handle = engine.define_entity("incident", Incident, read=storage.read)
        called: list[int] = []
        with pytest.raises(InvalidArgumentError, match="typo-run"):
            await handle.mutate("o-1", lambda: called.append(1), run_id="typo-run")
        assert called == []
        await engine.secrets.register("empty-run", [])
        assert await engine.secrets.is_known("empty-run")
        await handle.mutate("o-1", storage.put("o-1", OPEN), run_id="empty-run")
        assert len(await handle.history("o-1")) == 5


# -- §9 subscriptions ------------------------------------------------------------------------


async def test_spec_9_filters_order_isolation_and_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SPEC §9: kind and fields filters; a failing handler (plain or async) is logged
    without exc_info and isolated; cancel is idempotent; a subscription as a context
    manager."""
    async with open_world("memory") as w:
        only_status: list[ChangeEvent] = []
        await w.engine.subscribe(only_status.append, kind="incident", fields={"status"})

        async def bad(event: ChangeEvent) -> None:
            raise RuntimeError("handler broke")

        await w.engine.subscribe(bad)
        got: list[ChangeEvent] = []
        subscription = await w.engine.subscribe(got.append)
        with caplog.at_level(logging.WARNING):
            await w.handle.mutate("i", w.storage.put("i", OPEN))
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "handler broke" in records[0].getMessage()
        assert records[0].exc_info is None
        await w.handle.mutate("i", w.storage.patch("i", severity="high"))
        subscription.cancel()
        subscription.cancel()
        subscription.close()
        await w.handle.mutate("i", w.storage.patch("i", status="resolved", title="t"))
        assert [e.changed_fields for e in only_status] == [
            ("severity", "status", "system_ids", "title", "token"),
            ("status", "title"),
        ]
        assert len(got) == 2
        with await w.engine.subscribe(got.append):
            await w.handle.mutate("i", w.storage.patch("i", title="u"))
        await w.handle.mutate("i", w.storage.patch("i", title="v"))
        assert len(got) == 3


async def test_spec_9_subscribe_validates() -> None:
    """Subscribing checks the handler, the kind and the fields (SPEC §16.7 too)."""
    async with open_world("memory") as w:
        with pytest.raises(InvalidArgumentError):
            await w.engine.subscribe("not callable")  # type: ignore[arg-type]
        with pytest.raises(UnknownKindError):
            await w.engine.subscribe(print, kind="nope")
        with pytest.raises(UnknownFieldError):
            await w.engine.subscribe(print, kind="incident", fields={"nope"})
        with pytest.raises(InvalidArgumentError):
            await w.engine.subscribe(print, fields=set())
        with pytest.raises(InvalidArgumentError, match="colour"):
            await w.engine.subscribe(print, fields={"status", "colour"})


# -- §10 helpers -------------------------------------------------------------------------


async def test_spec_10_derivers_payload_and_declarations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SPEC §10: derive dedupes in first-seen order and logs (masked) a failing deriver;
    one payload mapper per kind; declarations keep order and dedupe."""
    async with open_world("memory") as w:
        await w.engine.secrets.register("run-1", ["deriver-secret"])

        def broken(event: ChangeEvent) -> list[str]:
            raise ValueError("deriver-secret leaked?")

        w.engine.register_deriver("incident", lambda e: ["a", "b", "a", ""])
        w.engine.register_deriver("incident", broken)
        w.engine.register_deriver("incident", lambda e: ["c", "b"], to_payload=lambda e: {"x": 1})
        with pytest.raises(DefinitionError):
            w.engine.register_deriver("incident", lambda e: (), to_payload=lambda e: {})
        await w.handle.mutate("i", w.storage.put("i", OPEN), run_id="run-1")
        with caplog.at_level(logging.WARNING):
            assert await w.engine.derive(w.events[0]) == ("a", "b", "c")
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "deriver" in text
        assert "deriver-secret" not in text
        assert w.engine.payload(w.events[0]) == {"x": 1}
        first = w.engine.declare_non_reactive_state(table="t", reason="bookkeeping")
        w.engine.declare_non_reactive_state(table="t", reason="bookkeeping")
        assert w.engine.non_reactive_declarations() == (first,)


async def test_spec_10_write_through_and_remove_through() -> None:
    """write_through/remove_through run apply (plain or async) without a handle and
    delegate with one."""
    async with open_world("memory") as w:
        ran: list[str] = []

        async def apply() -> None:
            ran.append("async")

        await write_through(None, "i", apply)
        await remove_through(None, "i", lambda: ran.append("plain"))
        await write_through(w.handle, "i", w.storage.put("i", OPEN))
        await remove_through(w.handle, "i", w.storage.delete("i"))
        assert ran == ["async", "plain"]
        assert [e.op for e in w.events] == ["create", "remove"]

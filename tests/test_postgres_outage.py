"""SPEC §12 — an unreachable store raises ``StoreError``, emits nothing, and the same
engine works again once the database is back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from reactive_entities import ChangeEvent, StoreError, compose
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def dedicated_server() -> Iterator[PostgresServer]:
    """A server of this module's own, so stopping it disturbs no other test."""
    with PostgresServer() as server:
        yield server


def test_a_stopped_server_fails_mutations_and_queries_until_it_is_back(
    dedicated_server: PostgresServer,
) -> None:
    """While down: ``StoreError``, nothing emitted; after a restart the engine records."""
    with compose.postgres(dedicated_server.dsn, schema="outage", pool_timeout=1.0) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        handle.mutate("inc-1", storage.put("inc-1", Incident("open", "low")))
        assert len(events) == 1

        dedicated_server.stop()
        try:
            with pytest.raises(StoreError, match="incident:inc-1") as info:
                handle.mutate("inc-1", storage.put("inc-1", Incident("resolved", "low")))
            assert isinstance(info.value.__cause__, psycopg.OperationalError)
            assert len(events) == 1  # nothing emitted
            assert storage.rows["inc-1"] == Incident("open", "low")  # apply never ran
            with pytest.raises(StoreError) as query:
                handle.history("inc-1")
            assert isinstance(query.value.__cause__, psycopg.Error)
        finally:
            dedicated_server.start()

        handle.mutate("inc-1", storage.put("inc-1", Incident("resolved", "low")))
        assert [e.op for e in events] == ["create", "update"]
        rows = handle.history("inc-1", field="status")
        assert [(r.from_value, r.to_value) for r in rows][-1] == ("open", "resolved")
        assert handle.in_state_since("inc-1", "status") == events[-1].occurred_at


def test_a_restart_between_mutations_is_invisible(dedicated_server: PostgresServer) -> None:
    """Connections left stale by a restart are replaced without failing a call."""
    with compose.postgres(dedicated_server.dsn, schema="outage") as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("inc-2", storage.put("inc-2", Incident("open", "low")))
        assert handle.in_state_since("inc-2", "status") is not None
        dedicated_server.restart()
        handle.mutate("inc-2", storage.put("inc-2", Incident("resolved", "low")))
        dedicated_server.restart()
        assert [r.to_value for r in handle.history("inc-2", field="status")] == [
            "open",
            "resolved",
        ]


def test_a_connection_killed_inside_the_lock_fails_only_that_mutation(
    pg_dsn: str, pg_schema: str
) -> None:
    """A lock-holding session killed before ``record`` fails that mutation only."""
    # Nothing is emitted; the next mutation starts from the plugin's state (its write
    # was authoritative, SPEC §5), so the log shows an update, not the lost create.
    with (
        compose.postgres(pg_dsn, schema=pg_schema, pool_size=2) as engine,
        psycopg.connect(pg_dsn, autocommit=True) as admin,
    ):
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)

        def kill_lock_holder() -> Incident:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            ).fetchall()
            assert killed == [(True,)]
            return storage.put("inc-3", Incident("open", "high"))()

        with pytest.raises(StoreError, match="could not record") as info:
            handle.mutate("inc-3", kill_lock_holder)
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert events == []
        assert handle.history("inc-3") == ()

        handle.mutate("inc-3", storage.put("inc-3", Incident("resolved", "high")))
        assert [e.op for e in events] == ["update"]
        assert [(r.from_value, r.to_value) for r in handle.history("inc-3")] == [
            ("open", "resolved")
        ]
        stats: dict[str, Any] = engine.store.pool.get_stats()  # type: ignore[attr-defined]
        assert stats["pool_size"] <= 2

"""DESIGN §6 — the temporal queries are index seeks, whatever the size of the log: their
plans on a 120 000-row transition log use the (entity, field) index and never scan it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from reactive_entities import compose
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.queries import Queries

pytestmark = pytest.mark.postgres

ROWS = 120_000
ENTITIES = 1_000
INDEX = "transitions_entity_field_idx"
TARGET = "target-entity"


@pytest.fixture(scope="module")
def loaded(pg_dsn: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A migrated schema whose transition log holds ROWS rows over ENTITIES entities,
    analyzed; yields a connection with ``search_path`` unset."""
    with compose.postgres(pg_dsn, schema=pg_schema):
        pass
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                """
                INSERT INTO {} (change_id, entity_key, kind, entity_id, field,
                                from_value, to_value, masked, transitioned_at)
                SELECT gen_random_uuid(),
                       CASE WHEN n %% {entities} = 0 THEN %(key)s::uuid
                            ELSE md5('bulk-' || n %% {entities})::uuid END,
                       'bulk',
                       CASE WHEN n %% {entities} = 0 THEN %(id)s
                            ELSE 'e-' || n %% {entities} END,
                       CASE WHEN (n / {entities}) %% 2 = 0 THEN 'status' ELSE 'severity' END,
                       to_jsonb(n - 1), to_jsonb(n), false,
                       now() - ({rows} - n) * interval '1 second'
                  FROM generate_series(1, {rows}) AS n
                """
            ).format(
                sql.Identifier(pg_schema, "transitions"),
                entities=sql.Literal(ENTITIES),
                rows=sql.Literal(ROWS),
            ),
            {"key": EntityKeys.entity_key("bulk", TARGET), "id": TARGET},
        )
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(pg_schema, "transitions")))
        yield conn


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _numbered(query: bytes) -> str:
    """``query`` with psycopg placeholders turned into ``$n`` (named ones numbered by
    first appearance), for a server-side ``PREPARE``."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        key = match.group(1) or f"#{len(names)}"
        if key not in names:
            names[key] = len(names) + 1
        return f"${names[key]}"

    return re.sub(r"%(?:\((\w+)\))?s", number, query.decode())


def _plans(conn: psycopg.Connection[Any], query: bytes, params: Any) -> list[dict[str, Any]]:
    """The plan with these parameter values, then the generic plan a long-lived
    prepared statement settles on."""
    client = psycopg.ClientCursor(conn)
    bound = client.mogrify(query.decode(), params)
    custom = conn.execute(f"EXPLAIN (FORMAT JSON) {bound}").fetchone()
    values = list(params.values()) if isinstance(params, dict) else list(params)
    conn.execute("DEALLOCATE ALL")
    conn.execute(f"PREPARE probe AS {_numbered(query)}")
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        args = client.mogrify(", ".join(["%s"] * len(values)), values)
        generic = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE probe({args})").fetchone()
    finally:
        conn.execute("RESET plan_cache_mode")
        conn.execute("DEALLOCATE probe")
    assert custom is not None
    assert generic is not None
    return [custom[0][0]["Plan"], generic[0][0]["Plan"]]


def _assert_index_seek(plans: list[dict[str, Any]], *, in_order: bool) -> None:
    """No sequential scan, and the index is used; ``in_order``: as an ordered
    ``Index Scan`` (which stops at the LIMIT), not a bitmap scan of every match."""
    for plan in plans:
        nodes = list(_nodes(plan))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], plan
        using = [n["Node Type"] for n in nodes if n.get("Index Name") == INDEX]
        assert using, plan
        if in_order:
            assert using == ["Index Scan"], plan


def test_the_log_is_big_enough(loaded: psycopg.Connection[Any], pg_schema: str) -> None:
    """The table really holds ROWS rows, TARGET's among them."""
    query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE entity_id = %s) FROM {}").format(
        sql.Identifier(pg_schema, "transitions")
    )
    assert loaded.execute(query, [TARGET]).fetchone() == (ROWS, ROWS // ENTITIES)


def test_latest_transition_is_an_index_seek(
    loaded: psycopg.Connection[Any], pg_schema: str
) -> None:
    """The ``in_state_since`` / ``value_at`` query seeks the (entity, field) index."""
    key = EntityKeys.entity_key("bulk", TARGET)
    query = Queries.for_schema(pg_schema).latest_transition
    _assert_index_seek(_plans(loaded, query, (key, "status", None, "bulk", TARGET)), in_order=True)


def test_count_transitions_is_an_index_seek(
    loaded: psycopg.Connection[Any], pg_schema: str
) -> None:
    """The ``transition_count`` query (window ending at the database's now) seeks it."""
    params = {
        "key": EntityKeys.entity_key("bulk", TARGET),
        "field": "status",
        "until": None,
        "since": None,
        "window": timedelta(minutes=10),
        "kind": "bulk",
        "entity_id": TARGET,
    }
    _assert_index_seek(
        _plans(loaded, Queries.for_schema(pg_schema).count_transitions, params), in_order=False
    )


def test_field_history_is_an_index_seek(loaded: psycopg.Connection[Any], pg_schema: str) -> None:
    """``history(field=…, limit=…)`` seeks the same index."""
    key = EntityKeys.entity_key("bulk", TARGET)
    query = Queries.for_schema(pg_schema).field_transitions
    _assert_index_seek(
        _plans(loaded, query, (key, "status", None, 5, "bulk", TARGET)), in_order=True
    )


def test_the_store_answers_on_the_big_log(pg_dsn: str, pg_schema: str, loaded: Any) -> None:
    """The handle's queries give the expected answers for the bulk-loaded entity."""
    with compose.postgres(pg_dsn, schema=pg_schema, migrate=False) as engine:
        store = engine.store
        latest = store.latest_transition("bulk", TARGET, "status")
        assert latest is not None
        assert latest.to_value == ROWS
        per_field = ROWS // ENTITIES // 2
        assert store.count_transitions("bulk", TARGET, "status", timedelta(days=2)) == per_field
        assert len(store.transitions("bulk", TARGET, "status", None, 3)) == 3

"""SPEC §12 — kinds, ids and values shaped like SQL, quotes or unicode are stored and read
back verbatim through PostgreSQL, never interpolated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

from reactive_entities import ABSENT, Engine, compose
from reactive_entities.domain.json import structurally_equal
from reactive_entities.testing.plugin import DictStorage

pytestmark = pytest.mark.postgres

NASTY_IDS = [
    "'; DROP TABLE transitions; --",
    'Robert"); DELETE FROM changes WHERE ("1"="1',
    "$1 $$ %s %(x)s {schema} \\x00-free \\ back\\slash",
    "ünïcödé 日本語 🎉 \u200b zero-width",
    "line\nbreak\ttab",
    "x" * 10_240,
    "🎉" * 3_000,  # 12 KB of four-byte characters
]

NASTY_KINDS = ["Robert.-drop_table--", "a", "K" * 64, "0.0.0-sql_.select"]


@attrs.frozen
class Blob:
    """A state whose one field holds any JSON value."""

    value: Any


@pytest.fixture(scope="module")
def engine(pg_dsn: str, pg_schema: str) -> Iterator[Engine]:
    """One PostgreSQL engine for the module."""
    with compose.postgres(pg_dsn, schema=pg_schema) as engine:
        yield engine


@pytest.fixture(scope="module")
def blobs(engine: Engine) -> tuple[Any, DictStorage[Blob]]:
    """The ``blob`` kind over a dict storage."""
    storage: DictStorage[Blob] = DictStorage()
    return engine.define_entity("blob", Blob, read=storage.read), storage


@pytest.mark.parametrize("entity_id", NASTY_IDS)
def test_ids_round_trip_verbatim(
    blobs: tuple[Any, DictStorage[Blob]], engine: Engine, entity_id: str
) -> None:
    """An id of quotes, SQL, unicode or 10+ KB is recorded and queried verbatim."""
    handle, storage = blobs
    handle.mutate(entity_id, storage.put(entity_id, Blob("first")))
    handle.mutate(entity_id, storage.put(entity_id, Blob("second")))
    rows = handle.history(entity_id)
    assert [(r.entity_id, r.from_value, r.to_value) for r in rows] == [
        (entity_id, ABSENT, "first"),
        (entity_id, "first", "second"),
    ]
    assert handle.in_state_since(entity_id, "value") == rows[-1].transitioned_at
    assert handle.transition_count(entity_id, "value", window=timedelta(hours=1)) == 2
    assert handle.value_at(entity_id, "value", rows[0].transitioned_at) == "first"
    assert handle.history(entity_id[:-1] or "other") == ()


@pytest.mark.parametrize("kind", NASTY_KINDS)
def test_kinds_round_trip_verbatim(engine: Engine, kind: str) -> None:
    """Any kind the kind rule allows is stored verbatim and kept apart from the others."""
    storage: DictStorage[Blob] = DictStorage()
    handle = engine.define_entity(kind, Blob, read=storage.read)
    handle.mutate("same-id", storage.put("same-id", Blob(kind)))
    rows = handle.history("same-id")
    assert [(r.kind, r.to_value) for r in rows] == [(kind, kind)]


@pytest.mark.parametrize(
    "value",
    [
        'it\'s "quoted" \\ back\\slash; -- comment',
        "ünïcödé 日本語 🎉 \u2028 \u00e9 vs e\u0301",
        {"'; DROP TABLE x; --": ['"', "'", "\\", "%s", "$1"]},
        {"nested": {"deep": [1, 2.5, -0.0, True, False, None, {}], "": "empty key"}},
        [1e-7, 1e300, -1.5e-300, 12345678901234567890123, 2.0, 0.1 + 0.2],
        None,
        True,
        0,
        "",
    ],
)
def test_json_values_round_trip(blobs: tuple[Any, DictStorage[Blob]], value: Any) -> None:
    """JSON values come back structurally equal, with bool/int/float kinds kept."""
    handle, storage = blobs
    entity_id = f"value-{id(value)}"
    handle.mutate(entity_id, storage.put(entity_id, Blob("start")))
    handle.mutate(entity_id, storage.put(entity_id, Blob(value)))
    row = handle.history(entity_id, field="value")[-1]
    assert structurally_equal(row.to_value, value)
    assert type(row.to_value) is type(value)
    assert handle.in_state_since(entity_id, "value") == row.transitioned_at


def test_values_are_parameters_not_sql(
    blobs: tuple[Any, DictStorage[Blob]], pg_dsn: str, pg_schema: str
) -> None:
    """After storing SQL-shaped ids and values, the schema still has its two logs intact."""
    handle, storage = blobs
    evil = "x'); DROP TABLE transitions; --"
    handle.mutate(evil, storage.put(evil, Blob(evil)))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [pg_schema]
        ).fetchall()
        stored = conn.execute(
            sql.SQL("SELECT entity_id, to_value #>> '{{}}' FROM {} WHERE entity_id = %s").format(
                sql.Identifier(pg_schema, "transitions")
            ),
            [evil],
        ).fetchall()
    assert tables == [
        ("changes",),
        ("consumers",),
        ("deliveries",),
        ("run_secrets",),
        ("schema_migrations",),
        ("secret_runs",),
        ("transitions",),
        ("work_groups",),
    ]
    assert stored == [(evil, evil)]

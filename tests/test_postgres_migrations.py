"""Versioned migrations: applied once, idempotent, safe from many processes, and a
version mismatch is reported with its fix."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from reactive_entities import compose
from reactive_entities.adapters.postgres.migrations import available_migrations, latest_version
from reactive_entities.domain.errors import InvalidArgumentError, SchemaVersionError, StoreError

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection to the test database."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema(pg_schema: str, db: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema name not created yet, dropped after the test."""
    name = f"{pg_schema}_{time.monotonic_ns() % 10**9}"
    yield name
    db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _tables(db: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = db.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [schema]
    ).fetchall()
    return [row[0] for row in rows]


def _migration_rows(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT version, name, applied_at FROM {} ORDER BY version").format(
        sql.Identifier(schema, "schema_migrations")
    )
    return db.execute(query).fetchall()


def test_migrations_ship_as_package_data() -> None:
    """The migrations are found through importlib.resources, numbered from 1."""
    migrations = available_migrations()
    assert migrations[0].version == 1
    assert migrations[0].name == "initial"
    assert b"CREATE TABLE transitions" in migrations[0].sql
    assert latest_version() == len(migrations)


def test_a_fresh_schema_is_created_and_migrated(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """``compose.postgres`` creates the schema, its tables and one migrations table."""
    with compose.postgres(pg_dsn, schema=schema) as engine:
        store = engine.store
        assert store.schema_version() == latest_version()  # type: ignore[attr-defined]
    assert _tables(db, schema) == [
        "changes",
        "consumers",
        "deliveries",
        "run_secrets",
        "schema_migrations",
        "secret_runs",
        "transitions",
        "work_groups",
    ]
    assert [row[:2] for row in _migration_rows(db, schema)] == [
        (m.version, m.name) for m in available_migrations()
    ]


def test_migrating_twice_changes_nothing(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """A second migration (by a new engine, or ``engine.migrate()``) is a no-op."""
    with compose.postgres(pg_dsn, schema=schema):
        pass
    rows = _migration_rows(db, schema)
    with compose.postgres(pg_dsn, schema=schema) as engine:
        engine.migrate()
        assert engine.store.migrate() == ()  # type: ignore[attr-defined]
    assert _migration_rows(db, schema) == rows
    count = db.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"
        " AND schemaname IN (%s, 'public')",
        [schema],
    ).fetchone()
    assert count == (1,)


_MIGRATE_AT = """
import sys, time
from reactive_entities import compose
dsn, schema, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with compose.postgres(dsn, schema=schema, pool_size=1) as engine:
    print(engine.store.schema_version())
"""


def test_processes_migrating_one_fresh_schema_at_once_all_succeed(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """Three OS processes migrating one fresh schema at the same instant all succeed."""
    start = time.time() + 1.5  # after every interpreter has imported the library
    workers = [
        subprocess.Popen(
            [sys.executable, "-P", "-c", _MIGRATE_AT, pg_dsn, schema, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [worker.communicate(timeout=60) for worker in workers]
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert out.strip() == str(latest_version())
    assert [row[0] for row in _migration_rows(db, schema)] == [
        m.version for m in available_migrations()
    ]


def test_a_newer_database_asks_to_upgrade_the_library(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """A schema migrated by a newer version raises ``SchemaVersionError`` either way."""
    with compose.postgres(pg_dsn, schema=schema):
        pass
    newer = latest_version() + 1
    db.execute(
        sql.SQL("INSERT INTO {} (version, name) VALUES (%s, 'from_the_future')").format(
            sql.Identifier(schema, "schema_migrations")
        ),
        [newer],
    )
    for migrate in (True, False):
        with pytest.raises(SchemaVersionError, match="upgrade reactive-entities") as info:
            compose.postgres(pg_dsn, schema=schema, migrate=migrate)
        assert f"version {newer}" in str(info.value)
        assert isinstance(info.value, StoreError)


def test_an_unmigrated_schema_without_migrate_says_how_to_migrate(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """``migrate=False`` on an empty schema raises with the fix, and creates nothing."""
    with pytest.raises(SchemaVersionError) as info:
        compose.postgres(pg_dsn, schema=schema, migrate=False)
    message = str(info.value)
    assert "reactive-entities migrate --dsn" in message
    assert "engine.migrate()" in message
    assert schema in message
    assert _tables(db, schema) == []
    with compose.postgres(pg_dsn, schema=schema):
        pass
    with compose.postgres(pg_dsn, schema=schema, migrate=False) as engine:
        assert engine.store.check_schema() == latest_version()  # type: ignore[attr-defined]


def test_an_older_database_without_migrate_is_refused(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """A schema behind the code (here: its migrations table emptied) is refused."""
    with compose.postgres(pg_dsn, schema=schema):
        pass
    db.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, "schema_migrations")))
    with pytest.raises(SchemaVersionError, match=r"engine\.migrate"):
        compose.postgres(pg_dsn, schema=schema, migrate=False)


@pytest.mark.parametrize("odd", ['x"; DROP SCHEMA public CASCADE; --', "Mixed Case ü", "tab\there"])
def test_schema_names_are_identifiers_never_sql(
    pg_dsn: str, pg_schema: str, db: psycopg.Connection[Any], odd: str
) -> None:
    """Quotes, spaces and unicode in the schema name are quoted, never interpreted."""
    schema = f"{pg_schema[:20]} {odd}"
    try:
        with compose.postgres(pg_dsn, schema=schema) as engine:
            assert engine.store.schema_version() == latest_version()  # type: ignore[attr-defined]
        assert _tables(db, schema) == [
            "changes",
            "consumers",
            "deliveries",
            "run_secrets",
            "schema_migrations",
            "secret_runs",
            "transitions",
            "work_groups",
        ]
        assert db.execute("SELECT to_regnamespace('public') IS NOT NULL").fetchone() == (True,)
    finally:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_bad_options_are_rejected(pg_dsn: str) -> None:
    """A bad schema name, pool size, or both dsn and pool raise ``InvalidArgumentError``."""
    with pytest.raises(InvalidArgumentError, match="schema"):
        compose.postgres(pg_dsn, schema="")
    with pytest.raises(InvalidArgumentError, match="pool_size"):
        compose.postgres(pg_dsn, pool_size=0)
    with (
        ConnectionPool(pg_dsn, min_size=1, open=True) as pool,
        pytest.raises(InvalidArgumentError, match="not both"),
    ):
        compose.postgres(pg_dsn, pool=pool)


def test_the_logs_are_append_only(pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """UPDATE and DELETE on either log are refused; TRUNCATE stays possible."""
    with compose.postgres(pg_dsn, schema=schema):
        pass
    for table in ("changes", "transitions"):
        name = sql.Identifier(schema, table)
        for statement in ("UPDATE {} SET kind = 'x'", "DELETE FROM {}"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="append-only"):
                db.execute(sql.SQL(statement).format(name))
        db.execute(sql.SQL("TRUNCATE {}").format(name))

"""Versioned migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Theory of operation. :func:`migrate` runs in one transaction that first takes a
transaction-level advisory lock derived from the schema name, so any number of processes
may migrate one schema at once: the first applies what is missing, the others wait and
then find nothing to do. Inside the lock it creates the schema if needed, sets
``search_path`` for the transaction only (so the ``.sql`` files use unqualified names),
creates ``schema_migrations`` if needed, and applies each missing version, recording it.
A failure rolls everything back.

The schema name is only ever composed with :class:`psycopg.sql.Identifier`. The files are
package data, read with :mod:`importlib.resources`.

:func:`check_version` is the startup check: it raises :class:`SchemaVersionError` when the
database is newer than this code, or older and not to be migrated.
"""

from __future__ import annotations

import re
from functools import cache
from hashlib import blake2b
from importlib.resources import files

import attrs
from psycopg import Connection, sql
from psycopg.rows import TupleRow

from reactive_entities.domain.errors import SchemaVersionError

__all__ = [
    "Migration",
    "available_migrations",
    "latest_version",
    "schema_version",
    "check_version",
    "migrate",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_MIGRATIONS_TABLE = b"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


@attrs.frozen
class Migration:
    """One migration file: its version, name and SQL text."""

    version: int
    name: str
    sql: bytes = attrs.field(repr=False)


@cache
def available_migrations() -> tuple[Migration, ...]:
    """The migrations shipped with this package, in version order."""
    folder = files("reactive_entities.adapters.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_bytes()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3, … without gaps (got {versions})")
    return tuple(found)


def latest_version() -> int:
    """The newest schema version this code knows."""
    return available_migrations()[-1].version


def _migration_lock_key(schema: str) -> int:
    digest = blake2b(schema.encode("utf-8", "surrogatepass"), digest_size=8, person=b"re-migrate")
    return int.from_bytes(digest.digest(), "big", signed=True)


def schema_version(conn: Connection[TupleRow], schema: str) -> int:
    """The newest version recorded in the schema's ``schema_migrations`` (0 if none)."""
    exists = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_tables"
        " WHERE schemaname = %s AND tablename = 'schema_migrations')",
        [schema],
    ).fetchone()
    if exists is None or not exists[0]:
        return 0
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(
        sql.Identifier(schema)
    )
    row = conn.execute(query).fetchone()
    return 0 if row is None else int(row[0])


def _too_new(schema: str, version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f'database schema "{schema}" is at version {version}, newer than this '
        f"reactive-entities knows (up to version {latest_version()}): upgrade reactive-entities"
    )


def check_version(conn: Connection[TupleRow], schema: str) -> int:
    """The schema's version, which must be exactly the code's; else SchemaVersionError
    saying how to fix it."""
    version = schema_version(conn, schema)
    latest = latest_version()
    if version > latest:
        raise _too_new(schema, version)
    if version < latest:
        state = "is not migrated" if version == 0 else f"is at version {version}"
        raise SchemaVersionError(
            f'database schema "{schema}" {state}; this reactive-entities needs version '
            f"{latest}: run `reactive-entities migrate --dsn … --schema {schema}` or call "
            "engine.migrate() (compose.postgres(..., migrate=True) does it at startup)"
        )
    return version


def migrate(conn: Connection[TupleRow], schema: str) -> tuple[int, ...]:
    """Apply the missing migrations to ``schema`` (creating it); returns the versions
    applied, empty when the schema was up to date. ``conn`` must be idle."""
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_migration_lock_key(schema)])
        present = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)", [schema]
        ).fetchone()
        if present is None or not present[0]:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        conn.execute(_CREATE_MIGRATIONS_TABLE)
        applied: set[int] = {
            row[0] for row in conn.execute("SELECT version FROM schema_migrations")
        }
        newest = max(applied, default=0)
        if newest > latest_version():
            raise _too_new(schema, newest)
        done: list[int] = []
        for migration in available_migrations():
            if migration.version in applied:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                [migration.version, migration.name],
            )
            done.append(migration.version)
    return tuple(done)

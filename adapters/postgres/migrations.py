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

from reactive_entities.adapters.postgres.dialogue import Dialogue, Statement, Steps, run
from reactive_entities.domain.errors import SchemaVersionError

__all__ = [
    "Migration",
    "available_migrations",
    "latest_version",
    "schema_version",
    "check_version",
    "migrate",
    "schema_version_steps",
    "check_version_steps",
    "migrate_steps",
    "upgrade_steps",
    "version_dialogue",
    "check_dialogue",
    "upgrade_dialogue",
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


def schema_version_steps(schema: str) -> Steps[int]:
    """Steps reading the newest version recorded in the schema (0 if none)."""
    exists = yield Statement(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_tables"
        " WHERE schemaname = %s AND tablename = 'schema_migrations')",
        [schema],
    )
    if not exists or not exists[0][0]:
        return 0
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(
        sql.Identifier(schema)
    )
    rows = yield Statement(query)
    return 0 if not rows else int(rows[0][0])


def _too_new(schema: str, version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f'database schema "{schema}" is at version {version}, newer than this '
        f"reactive-entities knows (up to version {latest_version()}): upgrade reactive-entities"
    )


def check_version_steps(schema: str) -> Steps[int]:
    """Steps reading the schema's version, which must be exactly the code's; else
    SchemaVersionError saying how to fix it."""
    version = yield from schema_version_steps(schema)
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


def migrate_steps(schema: str) -> Steps[tuple[int, ...]]:
    """Steps applying the missing migrations to ``schema`` (creating it); they return
    the versions applied. They must run inside one transaction."""
    ident = sql.Identifier(schema)
    yield Statement("SELECT pg_advisory_xact_lock(%s)", [_migration_lock_key(schema)])
    present = yield Statement(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)", [schema]
    )
    if not present or not present[0][0]:
        yield Statement(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
    yield Statement(sql.SQL("SET LOCAL search_path TO {}").format(ident))
    yield Statement(_CREATE_MIGRATIONS_TABLE)
    applied = {row[0] for row in (yield Statement("SELECT version FROM schema_migrations"))}
    newest = max(applied, default=0)
    if newest > latest_version():
        raise _too_new(schema, newest)
    done: list[int] = []
    for migration in available_migrations():
        if migration.version in applied:
            continue
        yield Statement(migration.sql)
        yield Statement(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            [migration.version, migration.name],
        )
        done.append(migration.version)
    return tuple(done)


def upgrade_steps(schema: str) -> Steps[tuple[int, ...]]:
    """:func:`migrate_steps` unless the schema is up to date already (a cheap check that
    takes no lock), for a store's ``migrate``; they must run inside one transaction."""
    if (yield from schema_version_steps(schema)) == latest_version():
        return ()
    return (yield from migrate_steps(schema))


def version_dialogue(schema: str) -> Dialogue[int]:
    """A store's ``schema_version``."""
    return Dialogue(f'read the version of schema "{schema}"', lambda: schema_version_steps(schema))


def check_dialogue(schema: str) -> Dialogue[int]:
    """A store's ``check_schema``."""
    return Dialogue(f'check schema "{schema}"', lambda: check_version_steps(schema))


def upgrade_dialogue(schema: str) -> Dialogue[tuple[int, ...]]:
    """A store's ``migrate``: one transaction under the schema's migration lock."""
    return Dialogue(f'migrate schema "{schema}"', lambda: upgrade_steps(schema), transaction=True)


def schema_version(conn: Connection[TupleRow], schema: str) -> int:
    """The newest version recorded in the schema's ``schema_migrations`` (0 if none)."""
    return run(conn, schema_version_steps(schema))


def check_version(conn: Connection[TupleRow], schema: str) -> int:
    """The schema's version, which must be exactly the code's; else SchemaVersionError
    saying how to fix it."""
    return run(conn, check_version_steps(schema))


def migrate(conn: Connection[TupleRow], schema: str) -> tuple[int, ...]:
    """Apply the missing migrations to ``schema`` (creating it); returns the versions
    applied, empty when the schema was up to date. ``conn`` must be idle."""
    with conn.transaction():
        return run(conn, migrate_steps(schema))

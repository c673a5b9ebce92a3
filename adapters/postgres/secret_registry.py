"""A secret registry shared through PostgreSQL (``compose.postgres(shared_secrets=True)``).

Secrets registered by one process mask the writes of every process that shares the
schema. They are kept for the run's lifetime only: ``drop(run_id)`` deletes the run and,
by cascade, its secrets (migration ``0003_run_secrets.sql``). Nothing here logs, and no
error message names a value.

Theory of operation. Each lookup is one indexed query that returns only the secrets the
process has not seen yet: rows of ``run_secrets`` grow in commit order within a run
(registrations of one run are serialized by the lock on its ``secret_runs`` row), so a
process keeps, per run, the run's ``generation``, the highest id it saw and the
``SecretSet`` built from them; a new generation (the run was dropped and registered
again) starts over. A run with no new secrets costs one round trip and no rebuild.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.memory.secret_registry import checked_secret_values
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.secret_set import EMPTY_SECRETS, Hidden, SecretSet, secret_values
from reactive_entities.domain.validation import has_lone_surrogate
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = ["PostgresSecretRegistry"]


class _Cached:
    __slots__ = ("generation", "seen", "snapshot", "values")

    def __init__(self, generation: int, seen: int, values: set[str]) -> None:
        self.generation = generation
        self.seen = seen
        self.values = values
        self.snapshot = SecretSet(frozenset(values))


def _key(text: str) -> bytes:
    return blake2b(text.encode("utf-8"), digest_size=16).digest()


class PostgresSecretRegistry(SecretRegistry):
    """Run secrets in ``<schema>.secret_runs`` / ``<schema>.run_secrets``, through
    ``pool`` (autocommit connections, as :func:`compose.postgres` opens them). The schema
    must be migrated."""

    def __init__(self, pool: ConnectionPool, *, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        name = sql.Identifier(schema)
        self._upsert_run = sql.SQL(
            "INSERT INTO {}.secret_runs (run_key, run_id) VALUES (%s, %s) "
            "ON CONFLICT (run_key) DO UPDATE SET run_id = EXCLUDED.run_id"
        ).format(name)
        self._insert_secret = sql.SQL(
            "INSERT INTO {}.run_secrets (run_key, value_key, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (run_key, value_key) DO NOTHING"
        ).format(name)
        self._lookup = sql.SQL(
            "SELECT r.generation, s.id, s.value FROM {0}.secret_runs r "
            "LEFT JOIN {0}.run_secrets s ON s.run_key = r.run_key "
            "AND s.id > (CASE WHEN r.generation = %(generation)s THEN %(seen)s ELSE 0 END) "
            "WHERE r.run_key = %(key)s ORDER BY s.id"
        ).format(name)
        self._exists = sql.SQL("SELECT 1 FROM {}.secret_runs WHERE run_key = %s").format(name)
        self._delete = sql.SQL("DELETE FROM {}.secret_runs WHERE run_key = %s").format(name)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PostgresSecretRegistry schema={self._schema!r}>"

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets, for every process (``[]`` makes the run
        known without secrets)."""
        values = Hidden(values)  # type: ignore[assignment]  # no secret in captured locals
        checked = checked_secret_values(run_id, values)  # type: ignore[arg-type]
        if any("\x00" in v or has_lone_surrogate(v) for v in checked) or has_lone_surrogate(run_id):
            raise InvalidArgumentError(
                f'secrets for run "{run_id:.80}": PostgreSQL cannot store a NUL character '
                "or a lone surrogate"
            )
        run_key = _key(run_id)
        # Plain str for the driver, kept behind a repr that hides them.
        rows = Hidden([(run_key, _key(v), str(v)) for v in checked])

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                # A failing statement must not echo its parameters into the server log.
                conn.execute("SET LOCAL log_parameter_max_length_on_error = 0")
                conn.execute(self._upsert_run, (run_key, run_id))
                if rows.value:
                    with conn.cursor() as cursor:
                        cursor.executemany(self._insert_secret, rows.value)  # type: ignore[arg-type]

        self._run(f'register secrets for run "{run_id:.80}"', write)

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets as every process registered them (empty when unknown)."""
        with self._lock:
            cached = self._cache.get(run_id)
        params = {
            "key": _key(run_id),
            "generation": cached.generation if cached else -1,
            "seen": cached.seen if cached else 0,
        }

        def read(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(self._lookup, params).fetchall()

        rows = self._run(f'look up secrets of run "{run_id:.80}"', read)
        if not rows:
            with self._lock:
                self._cache.pop(run_id, None)
            return EMPTY_SECRETS
        generation = rows[0][0]
        new = [(row[1], row[2]) for row in rows if row[1] is not None]
        if cached is not None and cached.generation == generation:
            if not new:
                return cached.snapshot
            values = cached.values | secret_values(value for _, value in new)
            seen = max(cached.seen, new[-1][0])
        else:
            values = secret_values(value for _, value in new)
            seen = new[-1][0] if new else 0
        fresh = _Cached(generation, seen, values)
        with self._lock:
            self._cache[run_id] = fresh
        return fresh.snapshot

    def is_known(self, run_id: str) -> bool:
        """Whether some process registered the run (even with no values) and none has
        dropped it since."""

        def exists(conn: psycopg.Connection[Any]) -> bool:
            return conn.execute(self._exists, (_key(run_id),)).fetchone() is not None

        return bool(self._run(f'look up run "{run_id:.80}"', exists))

    def drop(self, run_id: str) -> None:
        """Delete the run's secrets from the database, for every process."""

        def delete(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._delete, (_key(run_id),))

        self._run(f'drop secrets of run "{run_id:.80}"', delete)
        with self._lock:
            self._cache.pop(run_id, None)

    def _run(self, what: str, action: Any) -> Any:
        failure: str | None = None
        try:
            with self._pool.connection() as conn:
                return action(conn)
        except psycopg.Error as error:
            # The driver's message is left out: a constraint's detail could quote a value.
            failure = type(error).__name__
        raise StoreError(f"could not {what}: {failure}")

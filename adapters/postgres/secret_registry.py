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

:class:`RegistryOperations` holds the statements and the cache, as dialogues that the
synchronous registry here and the asyncio one (``async_secret_registry.py``) run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.memory.secret_registry import checked_secret_values
from reactive_entities.adapters.postgres.dialogue import Dialogue, Statement, Steps, run
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.secret_set import EMPTY_SECRETS, Hidden, SecretSet, secret_values
from reactive_entities.domain.validation import has_lone_surrogate
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = ["PostgresSecretRegistry", "RegistryOperations", "registry_failure"]

T = TypeVar("T")


class _Cached:
    __slots__ = ("generation", "seen", "snapshot", "values")

    def __init__(self, generation: int, seen: int, values: set[str]) -> None:
        self.generation = generation
        self.seen = seen
        self.values = values
        self.snapshot = SecretSet(frozenset(values))


def _key(text: str) -> bytes:
    return blake2b(text.encode("utf-8"), digest_size=16).digest()


def registry_failure(dialogue: Dialogue[Any], error: psycopg.Error) -> StoreError:
    """The error of a failed registry operation. The driver's message is left out: a
    constraint's detail could quote a value."""
    return StoreError(f"could not {dialogue.what}: {type(error).__name__}")


class RegistryOperations:
    """The registry's statements on one schema, and this process's cache of run
    secrets (shared by the operations it builds, guarded for threads)."""

    def __init__(self, schema: str) -> None:
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

    def register(self, run_id: str, values: Iterable[str]) -> Dialogue[None]:
        """Add ``values`` to the run's secrets (checked now, written when run)."""
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

        def steps() -> Steps[None]:
            # A failing statement must not echo its parameters into the server log.
            yield Statement("SET LOCAL log_parameter_max_length_on_error = 0")
            yield Statement(self._upsert_run, (run_key, run_id))
            if rows.value:
                yield Statement(self._insert_secret, rows.value, many=True)

        what = f'register secrets for run "{run_id:.80}"'
        return Dialogue(what, steps, transaction=True)

    def secrets_for(self, run_id: str) -> Dialogue[SecretSet]:
        """The run's secrets as every process registered them (empty when unknown)."""

        def steps() -> Steps[SecretSet]:
            with self._lock:
                cached = self._cache.get(run_id)
            params = {
                "key": _key(run_id),
                "generation": cached.generation if cached else -1,
                "seen": cached.seen if cached else 0,
            }
            rows = yield Statement(self._lookup, params)
            return self._absorb(run_id, cached, rows)

        return Dialogue(f'look up secrets of run "{run_id:.80}"', steps)

    def _absorb(self, run_id: str, cached: _Cached | None, rows: list[Any]) -> SecretSet:
        """Fold the secrets a lookup returned into the cache; the run's secrets."""
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

    def is_known(self, run_id: str) -> Dialogue[bool]:
        """Whether some process registered the run and none has dropped it since."""

        def steps() -> Steps[bool]:
            return bool((yield Statement(self._exists, (_key(run_id),))))

        return Dialogue(f'look up run "{run_id:.80}"', steps)

    def drop(self, run_id: str) -> Dialogue[None]:
        """Delete the run's secrets from the database, for every process."""

        def steps() -> Steps[None]:
            yield Statement(self._delete, (_key(run_id),))
            with self._lock:
                self._cache.pop(run_id, None)

        return Dialogue(f'drop secrets of run "{run_id:.80}"', steps)


class PostgresSecretRegistry(SecretRegistry):
    """Run secrets in ``<schema>.secret_runs`` / ``<schema>.run_secrets``, through
    ``pool`` (autocommit connections, as :func:`compose.postgres` opens them). The schema
    must be migrated."""

    def __init__(self, pool: ConnectionPool, *, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        self._ops = RegistryOperations(schema)

    def __repr__(self) -> str:
        return f"<PostgresSecretRegistry schema={self._schema!r}>"

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets, for every process (``[]`` makes the run
        known without secrets)."""
        self._run(self._ops.register(run_id, values))

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets as every process registered them (empty when unknown)."""
        return self._run(self._ops.secrets_for(run_id))

    def is_known(self, run_id: str) -> bool:
        """Whether some process registered the run (even with no values) and none has
        dropped it since."""
        return self._run(self._ops.is_known(run_id))

    def drop(self, run_id: str) -> None:
        """Delete the run's secrets from the database, for every process."""
        self._run(self._ops.drop(run_id))

    def _run(self, dialogue: Dialogue[T]) -> T:
        failure: StoreError | None = None
        try:
            with self._pool.connection() as conn:
                if not dialogue.transaction:
                    return run(conn, dialogue.steps())
                with conn.transaction():
                    return run(conn, dialogue.steps())
        except psycopg.Error as error:
            failure = registry_failure(dialogue, error)
        raise failure

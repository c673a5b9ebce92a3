"""The shared PostgreSQL secret registry (issue 12): the port's contract, and secrets
registered by one OS process masking the writes of another."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

from reactive_entities import compose
from reactive_entities.adapters.postgres.connections import open_pool
from reactive_entities.adapters.postgres.secret_registry import PostgresSecretRegistry
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.testing import SecretRegistryContract
from reactive_entities.testing.plugin import DictStorage


@pytest.fixture(scope="module")
def migrated(pg_dsn: str, pg_schema: str) -> str:
    """The module's schema, migrated once."""
    with compose.postgres(pg_dsn, schema=pg_schema):
        pass
    return pg_schema


def _clear(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.secret_runs CASCADE").format(sql.Identifier(schema)))


class TestPostgresSecretRegistry(SecretRegistryContract):
    """The shared registry passes the ``SecretRegistry`` contract suite."""

    @pytest.fixture
    def registry(self, pg_dsn: str, migrated: str) -> Iterator[SecretRegistry]:
        """A registry on an emptied table."""
        _clear(pg_dsn, migrated)
        pool = open_pool(pg_dsn, size=10, timeout=10, name="secret-registry-contract")
        try:
            yield PostgresSecretRegistry(pool, schema=migrated)
        finally:
            pool.close()


_PROCESS_A = """
import sys
from reactive_entities import compose
dsn, schema, action, run_id, *values = sys.argv[1:]
with compose.postgres(dsn, schema=schema, shared_secrets=True) as engine:
    if action == "register":
        engine.secrets.register(run_id, values)
    else:
        engine.secrets.drop(run_id)
"""


def _in_process_a(dsn: str, schema: str, action: str, run_id: str, *values: str) -> None:
    subprocess.run(
        [sys.executable, "-P", "-c", _PROCESS_A, dsn, schema, action, run_id, *values],
        check=True,
        timeout=60,
    )


@attrs.frozen
class Note:
    """A state holding free text."""

    text: str


def _dump(dsn: str, schema: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows: list[Any] = []
        for table in ("changes", "transitions", "secret_runs", "run_secrets"):
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            rows += conn.execute(query).fetchall()
    return json.dumps(rows, default=str)


def test_secrets_registered_in_one_process_mask_writes_in_another(
    pg_dsn: str, migrated: str
) -> None:
    """Process A registers; process B's write is masked; after drop nothing remains."""
    secret = "shared-Sekret-77"
    _in_process_a(pg_dsn, migrated, "register", "run-shared", secret)
    storage: DictStorage[Note] = DictStorage()
    with compose.postgres(
        pg_dsn, schema=migrated, shared_secrets=True, unknown_run="error"
    ) as engine:
        handle = engine.define_entity("note", Note, read=storage.read)
        handle.mutate("n-1", storage.put("n-1", Note(f"key {secret} here")), run_id="run-shared")
        assert [r.to_value for r in handle.history("n-1")] == ["key **** here"]
        assert secret in _dump(pg_dsn, migrated)  # held for the run's lifetime
        engine.secrets.drop("run-shared")
        assert not engine.secrets.is_known("run-shared")
    assert secret not in _dump(pg_dsn, migrated)


def test_a_drop_and_new_registration_in_another_process_are_seen(
    pg_dsn: str, migrated: str
) -> None:
    """B's cached set follows A's drop and re-registration (a new generation)."""
    storage: DictStorage[Note] = DictStorage()
    with compose.postgres(pg_dsn, schema=migrated, shared_secrets=True) as engine:
        handle = engine.define_entity("memo", Note, read=storage.read)
        _in_process_a(pg_dsn, migrated, "register", "run-g", "first-Sekret-1")
        assert engine.secrets.secrets_for("run-g").values == {"first-Sekret-1"}
        _in_process_a(pg_dsn, migrated, "drop", "run-g")
        assert not engine.secrets.secrets_for("run-g")
        _in_process_a(pg_dsn, migrated, "register", "run-g", "second-Sekret-2")
        _in_process_a(pg_dsn, migrated, "register", "run-g", "third-Sekret-3")
        assert engine.secrets.secrets_for("run-g").values == {"second-Sekret-2", "third-Sekret-3"}
        handle.mutate(
            "m-1", storage.put("m-1", Note("first-Sekret-1 second-Sekret-2")), run_id="run-g"
        )
        assert handle.history("m-1")[0].to_value == "first-Sekret-1 ****"


def test_shared_secrets_and_an_explicit_registry_are_exclusive(pg_dsn: str, migrated: str) -> None:
    """``shared_secrets=True`` with ``secrets=`` is refused before connecting."""
    from reactive_entities import InvalidArgumentError
    from reactive_entities.adapters.memory import InMemorySecretRegistry

    with pytest.raises(InvalidArgumentError, match="shared_secrets"):
        compose.postgres(
            pg_dsn, schema=migrated, shared_secrets=True, secrets=InMemorySecretRegistry()
        )

"""The asyncio twin of ``secret_registry.py``: the same tables, statements and cache
(:class:`~reactive_entities.adapters.postgres.secret_registry.RegistryOperations`),
through an ``AsyncConnectionPool``. Nothing here logs, and no error names a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from reactive_entities.adapters.postgres.dialogue import Dialogue, run_async
from reactive_entities.adapters.postgres.secret_registry import (
    RegistryOperations,
    registry_failure,
)
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry

__all__ = ["AsyncPostgresSecretRegistry"]

T = TypeVar("T")


class AsyncPostgresSecretRegistry(AsyncSecretRegistry):
    """Run secrets shared through PostgreSQL, for asyncio (the schema must be migrated)."""

    def __init__(self, pool: AsyncConnectionPool, *, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        self._ops = RegistryOperations(schema)

    def __repr__(self) -> str:
        return f"<AsyncPostgresSecretRegistry schema={self._schema!r}>"

    async def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets, for every process."""
        await self._run(self._ops.register(run_id, values))

    async def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets as every process registered them (empty when unknown)."""
        return await self._run(self._ops.secrets_for(run_id))

    async def is_known(self, run_id: str) -> bool:
        """Whether some process registered the run and none has dropped it since."""
        return await self._run(self._ops.is_known(run_id))

    async def drop(self, run_id: str) -> None:
        """Delete the run's secrets from the database, for every process."""
        await self._run(self._ops.drop(run_id))

    async def _run(self, dialogue: Dialogue[T]) -> T:
        failure: StoreError | None = None
        try:
            async with self._pool.connection() as conn:
                if not dialogue.transaction:
                    return await run_async(conn, dialogue.steps())
                async with conn.transaction():
                    return await run_async(conn, dialogue.steps())
        except psycopg.Error as error:
            failure = registry_failure(dialogue, error)
        raise failure

"""The asyncio twin of the ``SecretRegistry`` port: the same methods as coroutines, so a
registry kept in a database (``shared_secrets=True``) is read without blocking the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from reactive_entities.domain.secret_set import SecretSet

__all__ = ["AsyncSecretRegistry"]


@runtime_checkable
class AsyncSecretRegistry(Protocol):
    """Run-scoped secrets, looked up on every write that names a ``run_id``."""

    async def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets; ``register(run_id, [])`` makes it known."""
        ...

    async def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets; an empty set for an unknown or dropped run."""
        ...

    async def is_known(self, run_id: str) -> bool:
        """Whether the run was registered (even with no values) and not dropped."""
        ...

    async def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        ...

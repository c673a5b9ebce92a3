"""The asyncio in-memory secret registry: the blocking
:class:`~reactive_entities.adapters.memory.secret_registry.InMemorySecretRegistry`
behind the ``AsyncSecretRegistry`` port (nothing it does waits)."""

from __future__ import annotations

from collections.abc import Iterable

from reactive_entities.adapters.memory.secret_registry import InMemorySecretRegistry
from reactive_entities.domain.secret_set import Hidden, SecretSet
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry

__all__ = ["AsyncInMemorySecretRegistry"]


class AsyncInMemorySecretRegistry(AsyncSecretRegistry):
    """Secrets per run, held in this process only.

    >>> import asyncio
    >>> registry = AsyncInMemorySecretRegistry()
    >>> asyncio.run(registry.register("run-1", ["s3cr3t"]))
    >>> asyncio.run(registry.secrets_for("run-1")).maskable == ("s3cr3t",)
    True
    """

    def __init__(self, registry: InMemorySecretRegistry | None = None) -> None:
        #: The blocking registry that keeps the runs.
        self.registry = registry if registry is not None else InMemorySecretRegistry()

    def __repr__(self) -> str:
        return f"<AsyncInMemorySecretRegistry of {self.registry!r}>"

    async def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets (``[]`` makes the run known)."""
        values = Hidden(values)  # type: ignore[assignment]  # no secret in captured locals
        self.registry.register(run_id, values.value)  # type: ignore[attr-defined]

    async def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets (empty for an unknown or dropped run)."""
        return self.registry.secrets_for(run_id)

    async def is_known(self, run_id: str) -> bool:
        """Whether the run was registered (even with no values) and not dropped."""
        return self.registry.is_known(run_id)

    async def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        self.registry.drop(run_id)

    def runs(self) -> tuple[str, ...]:
        """The runs that are currently known."""
        return self.registry.runs()

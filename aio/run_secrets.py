"""``engine.secrets`` of an :class:`~reactive_entities.aio.engine.AsyncEngine`: the
asyncio registry bound to the engine's lifetime and to its ``unknown_run`` policy — the
very policy object of the blocking engine (:class:`~reactive_entities.run_secrets.UnknownRuns`),
asked through awaits."""

from __future__ import annotations

from collections.abc import Iterable

from reactive_entities.domain.secret_set import Hidden, SecretSet
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.run_secrets import SecretsView

__all__ = ["AsyncEngineSecrets"]


class AsyncEngineSecrets(SecretsView[AsyncSecretRegistry], AsyncSecretRegistry):
    """The registry as the asyncio engine exposes it: every call raises
    ``EngineClosedError`` once the engine is closed, and writes look runs up through
    :meth:`for_write`."""

    async def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets (``[]`` makes the run known)."""
        values = Hidden(values)  # type: ignore[assignment]  # no secret in captured locals
        self._check_open()
        await self._registry.register(run_id, values.value)  # type: ignore[attr-defined]
        self._runs.forget(run_id)

    async def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets; an empty set for an unknown or dropped run."""
        self._check_open()
        return await self._registry.secrets_for(run_id)

    async def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        self._check_open()
        await self._registry.drop(run_id)
        self._runs.forget(run_id)

    async def is_known(self, run_id: str) -> bool:
        """Whether the run is registered (with secrets, or explicitly with none)."""
        self._check_open()
        return await self._registry.is_known(run_id)

    async def for_write(self, run_id: str) -> SecretSet:
        """The secrets a write of ``run_id`` is masked with, applying the policy."""
        secrets = await self._registry.secrets_for(run_id)
        if not self._runs.settled(secrets) and not await self._registry.is_known(run_id):
            self._runs.unknown(run_id)
        return secrets

"""The in-memory secret registry: run id → ``SecretSet``."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = ["InMemorySecretRegistry"]


class InMemorySecretRegistry(SecretRegistry):
    """Secrets per run, held in this process only (they are never persisted).

    >>> registry = InMemorySecretRegistry()
    >>> registry.register("run-1", ["s3cr3t"])
    >>> registry.secrets_for("run-1").maskable
    ('s3cr3t',)
    """

    def __init__(self) -> None:
        self._runs: dict[str, SecretSet] = {}
        self._lock = threading.Lock()

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` (non-empty strings) to the run's secrets."""
        _check_run_id(run_id)
        if isinstance(values, str | bytes):
            raise InvalidArgumentError(
                f'secrets for run "{run_id}" must be an iterable of str, not a single string'
            )
        try:
            incoming = SecretSet.of(values)
        except TypeError as error:
            raise InvalidArgumentError(f'secrets for run "{run_id}": {error}') from None
        with self._lock:
            current = self._runs.get(run_id, EMPTY_SECRETS)
            self._runs[run_id] = current.union(incoming.values)

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets (empty for an unknown or dropped run)."""
        return self._runs.get(run_id, EMPTY_SECRETS)

    def drop(self, run_id: str) -> None:
        """Forget the run's secrets; dropping an unknown run does nothing."""
        with self._lock:
            self._runs.pop(run_id, None)

    def runs(self) -> tuple[str, ...]:
        """The runs that currently have secrets."""
        return tuple(self._runs)


def _check_run_id(run_id: object) -> None:
    if not isinstance(run_id, str) or not run_id.strip():
        raise InvalidArgumentError(f"run_id must be a non-empty str (got {run_id!r:.40})")

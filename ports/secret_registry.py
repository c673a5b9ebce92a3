"""The ``SecretRegistry`` port: the secret values of each run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from reactive_entities.domain.secret_set import SecretSet

__all__ = ["SecretRegistry", "RunAwareSecretRegistry"]


@runtime_checkable
class SecretRegistry(Protocol):
    """Run-scoped secrets, looked up on every write that names a ``run_id``."""

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets (registering again adds, never replaces).
        ``register(run_id, [])`` makes the run known without secrets."""
        ...

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets; an empty set for an unknown or dropped run."""
        ...

    def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        ...


@runtime_checkable
class RunAwareSecretRegistry(SecretRegistry, Protocol):
    """A registry that also tells a run registered without secrets from an unknown one.

    Optional: for a registry without ``is_known``, a run is known when it has secrets.
    """

    def is_known(self, run_id: str) -> bool:
        """Whether the run was registered (even with no values) and not dropped."""
        ...

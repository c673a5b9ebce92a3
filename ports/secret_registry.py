"""The ``SecretRegistry`` port: the secret values of each run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from reactive_entities.domain.secret_set import SecretSet

__all__ = ["SecretRegistry"]


@runtime_checkable
class SecretRegistry(Protocol):
    """Run-scoped secrets, looked up on every write that names a ``run_id``."""

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets (registering again adds, never replaces)."""
        ...

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets; an empty set for an unknown or dropped run."""
        ...

    def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        ...

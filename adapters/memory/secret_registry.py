"""The in-memory secret registry: run id → ``SecretSet``.

Registering is linear overall (SPEC §16.6): each run keeps a plain set of its values, and
``register`` only adds to it; the immutable ``SecretSet`` a write needs is built on the
first ``secrets_for`` after a change and then reused, and its matcher is built on first
use. Ten thousand one-value calls therefore cost ten thousand set insertions, not ten
thousand rebuilds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.secret_set import EMPTY_SECRETS, Hidden, SecretSet, secret_values
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = ["InMemorySecretRegistry", "checked_secret_values"]


class _Run:
    __slots__ = ("snapshot", "values")

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.snapshot: SecretSet | None = EMPTY_SECRETS


class InMemorySecretRegistry(SecretRegistry):
    """Secrets per run, held in this process only (they are never persisted).

    >>> registry = InMemorySecretRegistry()
    >>> registry.register("run-1", ["s3cr3t"])
    >>> registry.secrets_for("run-1").maskable == ("s3cr3t",)
    True
    >>> registry
    <InMemorySecretRegistry: 1 run>
    """

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        count = len(self._runs)
        return f"<InMemorySecretRegistry: {count} run{'' if count == 1 else 's'}>"

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` (non-empty strings) to the run's secrets. An empty iterable
        makes the run known without secrets."""
        # Rebound at once: a traceback capturing locals must not show the values.
        values = Hidden(values)  # type: ignore[assignment]
        checked = checked_secret_values(run_id, values)  # type: ignore[arg-type]
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                run = self._runs[run_id] = _Run()
            before = len(run.values)
            run.values |= checked
            if len(run.values) != before:
                run.snapshot = None

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets (empty for an unknown or dropped run)."""
        run = self._runs.get(run_id)
        if run is None:
            return EMPTY_SECRETS
        snapshot = run.snapshot
        if snapshot is None:
            with self._lock:
                snapshot = run.snapshot
                if snapshot is None:
                    snapshot = run.snapshot = SecretSet(frozenset(run.values))
        return snapshot

    def is_known(self, run_id: str) -> bool:
        """Whether the run was registered (even with no values) and not dropped."""
        return run_id in self._runs

    def drop(self, run_id: str) -> None:
        """Forget the run's secrets; dropping an unknown run does nothing."""
        with self._lock:
            self._runs.pop(run_id, None)

    def runs(self) -> tuple[str, ...]:
        """The runs that are currently known."""
        return tuple(self._runs)


def checked_secret_values(run_id: object, values: Hidden) -> set[str]:
    """The hidden ``values`` as a set of secret strings, after checking ``run_id`` and
    them; ``InvalidArgumentError`` (naming no value) when either is malformed.

    The values are never bound to a local name here, so no frame of a failed call holds
    them in clear.
    """
    _check_run_id(run_id)
    if isinstance(values.value, str | bytes):
        raise InvalidArgumentError(
            f'secrets for run "{run_id}" must be an iterable of str, not a single string'
        )
    try:
        return secret_values(values.value)  # type: ignore[arg-type]
    except TypeError as error:
        problem = str(error)
    raise InvalidArgumentError(f'secrets for run "{run_id}": {problem}')


def _check_run_id(run_id: object) -> None:
    if not isinstance(run_id, str) or not run_id.strip():
        raise InvalidArgumentError(f"run_id must be a non-empty str (got {run_id!r:.40})")

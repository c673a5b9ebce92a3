"""``engine.secrets``: the engine's secret registry, bound to the engine's lifetime and
to its policy for run ids that have no registered secrets (SPEC §16.7, issue 12).

A write that names a run whose secrets this engine does not know would record that run's
data unmasked, in an append-only log, forever: a mistyped run id, or secrets registered
in another process. ``unknown_run`` says what to do then:

* ``"warn"`` (the default): record as asked, and log one WARNING per run id;
* ``"error"``: raise ``InvalidArgumentError`` before ``apply`` runs;
* ``"allow"``: record silently (the behaviour before the option existed).

A run registered with no values (``register(run_id, [])``) is known.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Generic, Literal, TypeAlias, TypeVar

from reactive_entities.domain.errors import EngineClosedError, InvalidArgumentError
from reactive_entities.domain.secret_set import Hidden, SecretSet
from reactive_entities.ports.secret_registry import RunAwareSecretRegistry, SecretRegistry

__all__ = [
    "UNKNOWN_RUN_POLICIES",
    "EngineSecrets",
    "UnknownRunPolicy",
    "UnknownRuns",
    "SecretsView",
    "unknown_run_problem",
]

UnknownRunPolicy: TypeAlias = Literal["error", "warn", "allow"]
UNKNOWN_RUN_POLICIES: tuple[UnknownRunPolicy, ...] = ("error", "warn", "allow")
#: The warned-about run ids are forgotten past this many, so memory stays bounded.
_MAX_WARNED = 10_000
R = TypeVar("R")


def unknown_run_problem(policy: object) -> str | None:
    """Why ``policy`` is not a valid ``unknown_run`` option, or None."""
    if policy in UNKNOWN_RUN_POLICIES and isinstance(policy, str):
        return None
    return f'unknown_run must be one of "error", "warn", "allow" (got {policy!r:.40})'


class UnknownRuns:
    """The ``unknown_run`` policy and its once-per-run-id warnings, shared by the
    blocking and the asyncio engine's secrets (which differ only in how they ask the
    registry)."""

    def __init__(self, policy: UnknownRunPolicy, logger: logging.Logger) -> None:
        problem = unknown_run_problem(policy)
        if problem is not None:
            raise InvalidArgumentError(problem)
        self.policy: UnknownRunPolicy = policy
        self._logger = logger
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def settled(self, secrets: SecretSet) -> bool:
        """Whether a write with these secrets needs no look-up of the run's existence."""
        return bool(secrets.values) or self.policy == "allow"

    def unknown(self, run_id: str) -> None:
        """A write names a run without registered secrets: raise or warn, by policy."""
        if self.policy == "error":
            raise InvalidArgumentError(
                f'run_id "{run_id:.80}" has no registered secrets (unknown_run="error"): '
                "register its secrets first, or register(run_id, []) for a run without any"
            )
        with self._lock:
            if run_id in self._warned:
                return
            if len(self._warned) >= _MAX_WARNED:
                self._warned.clear()
            self._warned.add(run_id)
        # The record holds the run id only: never data of the write, never an exception.
        self._logger.warning(
            'run_id "%.80s" has no registered secrets: its writes are recorded without '
            "run masking (register its secrets, or register(run_id, []) for a run without "
            'any; compose option unknown_run="error" refuses such writes)',
            run_id,
        )

    def forget(self, run_id: str) -> None:
        """The run was registered or dropped: warn again if it becomes unknown."""
        with self._lock:
            self._warned.discard(run_id)


class SecretsView(Generic[R]):
    """What both engines' ``engine.secrets`` share: the registry behind the view, the
    ``unknown_run`` policy, and refusing every call once the engine is closed."""

    def __init__(
        self,
        registry: R,
        *,
        unknown_run: UnknownRunPolicy = "warn",
        logger: logging.Logger,
        is_closed: Callable[[], bool],
    ) -> None:
        self._runs = UnknownRuns(unknown_run, logger)
        self._registry = registry
        self._is_closed = is_closed

    @property
    def registry(self) -> R:
        """The adapter behind this view (the one given to ``compose``)."""
        return self._registry

    @property
    def unknown_run(self) -> UnknownRunPolicy:
        """The policy for writes naming a run without registered secrets."""
        return self._runs.policy

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<{name} unknown_run={self.unknown_run!r} registry={self._registry!r}>"

    def _check_open(self) -> None:
        if self._is_closed():
            raise EngineClosedError("the engine is closed")


class EngineSecrets(SecretsView[SecretRegistry], SecretRegistry):
    """The registry as the engine exposes it: every call raises ``EngineClosedError``
    once the engine is closed, and writes look runs up through :meth:`for_write`."""

    def __init__(
        self,
        registry: SecretRegistry,
        *,
        unknown_run: UnknownRunPolicy = "warn",
        logger: logging.Logger,
        is_closed: Callable[[], bool],
    ) -> None:
        super().__init__(registry, unknown_run=unknown_run, logger=logger, is_closed=is_closed)
        self._knows = registry.is_known if isinstance(registry, RunAwareSecretRegistry) else None

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Add ``values`` to the run's secrets (``[]`` makes the run known)."""
        values = Hidden(values)  # type: ignore[assignment]  # no secret in captured locals
        self._check_open()
        self._registry.register(run_id, values.value)  # type: ignore[attr-defined]
        self._runs.forget(run_id)

    def secrets_for(self, run_id: str) -> SecretSet:
        """The run's secrets; an empty set for an unknown or dropped run."""
        self._check_open()
        return self._registry.secrets_for(run_id)

    def drop(self, run_id: str) -> None:
        """Forget the run's secrets (idempotent)."""
        self._check_open()
        self._registry.drop(run_id)
        self._runs.forget(run_id)

    def is_known(self, run_id: str) -> bool:
        """Whether the run is registered (with secrets, or explicitly with none)."""
        self._check_open()
        return self._known(run_id, self._registry.secrets_for(run_id))

    def for_write(self, run_id: str) -> SecretSet:
        """The secrets a write of ``run_id`` is masked with, applying the policy."""
        secrets = self._registry.secrets_for(run_id)
        if not self._runs.settled(secrets) and not self._known(run_id, secrets):
            self._runs.unknown(run_id)
        return secrets

    def _known(self, run_id: str, secrets: SecretSet) -> bool:
        if secrets.values:
            return True
        return self._knows is not None and self._knows(run_id)

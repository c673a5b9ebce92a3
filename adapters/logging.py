"""Logging adapters: an emitter that logs each change, and decorators that log calls.

* :class:`LoggingEmitter` — one structured INFO record per change. The event is already
  masked; the record's ``event`` attribute holds its JSON-ready dict for structured
  handlers.
* :class:`LoggedStore`, :class:`LoggedEmitter`, :class:`LoggedSecretRegistry` — wrap any
  adapter and log each call with its duration at DEBUG. They log names, ids and counts,
  never values, so no secret can reach a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from reactive_entities.domain.events import ChangeEvent, ChangeRecord, Plan, TransitionRecord
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.emitter import Emitter
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore, StoreTransaction

__all__ = [
    "LoggingEmitter",
    "LoggedStore",
    "LoggedTransaction",
    "LoggedEmitter",
    "LoggedSecretRegistry",
]

T = TypeVar("T")

_EVENTS = logging.getLogger("reactive_entities.events")
_CALLS = logging.getLogger("reactive_entities.calls")


class LoggingEmitter(Emitter):
    """Logs every change at INFO (masked, like every event)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else _EVENTS
        self.level = level

    def emit(self, event: ChangeEvent) -> None:
        """Log one record describing ``event``."""
        if not self.logger.isEnabledFor(self.level):
            return
        self.logger.log(
            self.level,
            "%s %s:%s fields=%s actor=%s:%s run=%s change=%s",
            event.op,
            event.kind,
            event.entity_id,
            ",".join(event.changed_fields),
            event.actor.type,
            event.actor.id,
            event.run_id,
            event.change_id,
            extra={"event": event.to_dict()},
        )


def _timed(logger: logging.Logger, what: str, call: Callable[[], T]) -> T:
    if not logger.isEnabledFor(logging.DEBUG):
        return call()
    started = time.perf_counter()
    failed = True
    try:
        result = call()
        failed = False
        return result
    finally:
        elapsed = (time.perf_counter() - started) * 1e6
        logger.debug("%s %s in %.0f µs", what, "failed" if failed else "ok", elapsed)


class LoggedStore(EntityStore):
    """Any ``EntityStore``, with each call logged at DEBUG."""

    def __init__(self, inner: EntityStore, logger: logging.Logger | None = None) -> None:
        self.inner = inner
        self.logger = logger if logger is not None else _CALLS

    def begin(self, connection: Any = None) -> StoreTransaction:
        """Begin through the inner store; the transaction's calls are logged too."""
        inner = _timed(self.logger, "store.begin", lambda: self.inner.begin(connection))
        return LoggedTransaction(inner, self.logger)

    def reader(self) -> AbstractContextManager[Any]:
        """The inner store's reader."""
        return self.inner.reader()

    def now(self) -> datetime:
        """The inner store's now."""
        return _timed(self.logger, "store.now", self.inner.now)

    def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """Delegate."""
        return _timed(
            self.logger,
            f"store.latest_transition {kind}:{entity_id}.{field}",
            lambda: self.inner.latest_transition(kind, entity_id, field, at=at),
        )

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """Delegate."""
        return _timed(
            self.logger,
            f"store.latest_change {kind}:{entity_id}",
            lambda: self.inner.latest_change(kind, entity_id, at=at),
        )

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Delegate."""
        return _timed(
            self.logger,
            f"store.count_transitions {kind}:{entity_id}.{field}",
            lambda: self.inner.count_transitions(kind, entity_id, field, since, until),
        )

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Delegate."""
        return _timed(
            self.logger,
            f"store.transitions {kind}:{entity_id}",
            lambda: self.inner.transitions(kind, entity_id, field, since, limit),
        )

    def close(self) -> None:
        """Delegate."""
        _timed(self.logger, "store.close", self.inner.close)

    def __getattr__(self, name: str) -> object:
        # Adapter-specific extras (``migrate``, ``changes``) stay reachable.
        return getattr(self.inner, name)


class LoggedTransaction(StoreTransaction):
    """A store transaction with each call logged at DEBUG (ids and timings, no values)."""

    def __init__(self, inner: StoreTransaction, logger: logging.Logger) -> None:
        self.inner = inner
        self.logger = logger

    @property
    def connection(self) -> Any:
        """The inner transaction's connection."""
        return self.inner.connection

    def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock through the inner transaction."""
        what = f"store.lock {kind}:{entity_id}"
        return _timed(self.logger, what, lambda: self.inner.lock(kind, entity_id))

    def record(self, plan: Plan) -> datetime:
        """Record through the inner transaction."""
        what = f"store.record {plan.op} {plan.kind}:{plan.entity_id} rows={len(plan.transitions)}"
        return _timed(self.logger, what, lambda: self.inner.record(plan))

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Commit through the inner transaction."""
        _timed(self.logger, "store.commit", lambda: self.inner.commit(then))

    def rollback(self) -> None:
        """Roll back through the inner transaction."""
        _timed(self.logger, "store.rollback", self.inner.rollback)

    def __enter__(self) -> LoggedTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()


class LoggedEmitter(Emitter):
    """Any ``Emitter``, with each call logged at DEBUG."""

    def __init__(self, inner: Emitter, logger: logging.Logger | None = None) -> None:
        self.inner = inner
        self.logger = logger if logger is not None else _CALLS

    def emit(self, event: ChangeEvent) -> None:
        """Delegate."""
        _timed(
            self.logger,
            f"emitter.emit {event.op} {event.kind}:{event.entity_id}",
            lambda: self.inner.emit(event),
        )


class LoggedSecretRegistry(SecretRegistry):
    """Any ``SecretRegistry``, with each call logged at DEBUG (counts, never values)."""

    def __init__(self, inner: SecretRegistry, logger: logging.Logger | None = None) -> None:
        self.inner = inner
        self.logger = logger if logger is not None else _CALLS

    def register(self, run_id: str, values: Iterable[str]) -> None:
        """Delegate, logging how many values were given."""
        values = list(values) if not isinstance(values, str | bytes) else values
        _timed(
            self.logger,
            f"secrets.register run={run_id} values={len(values)}",
            lambda: self.inner.register(run_id, values),
        )

    def secrets_for(self, run_id: str) -> SecretSet:
        """Delegate."""
        return _timed(
            self.logger, f"secrets.secrets_for run={run_id}", lambda: self.inner.secrets_for(run_id)
        )

    def drop(self, run_id: str) -> None:
        """Delegate."""
        _timed(self.logger, f"secrets.drop run={run_id}", lambda: self.inner.drop(run_id))

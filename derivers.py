"""Derivers and payload mappers (SPEC §10): which other entities an event concerns.

A *deriver* maps a change event of one kind to ids of related entities (an incident's
change concerns the systems it names); a kind may also have one *payload mapper* that
turns its events into the payload automation consumes. The registry keeps them per kind;
a deriver that raises is logged — masked with the event's run secrets — and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reactive_entities.domain.errors import DefinitionError, InvalidArgumentError
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.validation import callable_problem, kind_problem
from reactive_entities.masked_logging import log_failure
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = ["Deriver", "PayloadMapper", "Derivers", "Failed"]

Deriver = Callable[[ChangeEvent], Iterable[str]]
PayloadMapper = Callable[[ChangeEvent], Mapping[str, Any]]
#: A deriver that raised, and what it raised.
Failed = tuple[Deriver, Exception]


class Derivers:
    """Per-kind derivers (in registration order) and payload mappers."""

    def __init__(self, secrets: SecretRegistry | None, logger: logging.Logger) -> None:
        self._secrets = secrets
        self._logger = logger
        self._lock = threading.Lock()
        self._derivers: dict[str, tuple[Deriver, ...]] = {}
        self._payload_mappers: dict[str, PayloadMapper] = {}

    def register(self, kind: str, derive: Deriver, to_payload: PayloadMapper | None) -> None:
        """Add ``derive`` (once) and, optionally, the kind's one payload mapper.

        A second, *different* mapper for the kind raises ``DefinitionError`` and
        registers nothing.
        """
        problem = kind_problem(kind)
        if problem is not None:
            raise DefinitionError(f"kind {kind!r:.80} {problem}")
        for name, value in (("derive", derive), ("to_payload", to_payload)):
            problem = None if value is None else callable_problem(value)
            if problem is not None:
                raise InvalidArgumentError(f'{name} for kind "{kind}" {problem}')
        with self._lock:
            mapper = self._payload_mappers.get(kind)
            if to_payload is not None and mapper is not None and mapper != to_payload:
                raise DefinitionError(
                    f'kind "{kind}" already has a different payload mapper ({mapper!r})'
                )
            derivers = self._derivers.get(kind, ())
            if derive not in derivers:
                self._derivers[kind] = (*derivers, derive)
            if to_payload is not None:
                self._payload_mappers[kind] = to_payload

    def derive(self, event: ChangeEvent) -> tuple[str, ...]:
        """De-duplicated, non-empty string ids, in first-seen order, from each deriver
        of the event's kind in registration order."""
        ids, failures = self.collect(event)
        for derive, error in failures:
            log_failure(self._logger, f"deriver {derive!r}", event, error, self._secrets)
        return ids

    def collect(self, event: ChangeEvent) -> tuple[tuple[str, ...], list[Failed]]:
        """What :meth:`derive` returns, and the derivers that raised (not logged yet:
        the asyncio engine looks the run's secrets up before it logs them)."""
        seen: dict[str, None] = {}
        failures: list[Failed] = []
        for derive in self._derivers.get(event.kind, ()):
            try:
                ids = [i for i in derive(event) if _is_id(i)]
            except Exception as error:  # one deriver must not stop the rest
                failures.append((derive, error))
                continue
            for entity_id in ids:
                seen.setdefault(entity_id)
        return tuple(seen), failures

    def payload(self, event: ChangeEvent) -> dict[str, Any] | None:
        """The kind's payload mapper applied to ``event``, or None without one."""
        mapper = self._payload_mappers.get(event.kind)
        return None if mapper is None else dict(mapper(event))


def _is_id(value: object) -> bool:
    return isinstance(value, str) and value != ""

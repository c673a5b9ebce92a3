"""How a subscription is delivered (DESIGN §9): in this process, to every engine, or to
one member of a group.

>>> Broadcast(consumer="audit-export").consumer
'audit-export'
>>> WorkQueue(group="billing").max_retries
3
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from reactive_entities.domain.errors import InvalidArgumentError

__all__ = ["InProcess", "Broadcast", "WorkQueue", "Delivery"]


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{what} must be a non-empty str (got {value!r:.60})")
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} must not contain NUL")
    return value


def _positive(what: str, value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidArgumentError(f"{what} must be a positive timedelta (got {value!r:.60})")
    return value


@attrs.frozen
class InProcess:
    """Handlers in this process, called after commit (the default)."""


@attrs.frozen
class Broadcast:
    """Every engine sharing the store receives each matching change committed after it
    subscribed, at least once, in feed order. With ``consumer`` the cursor is stored
    under that name, so a restarted process resumes after its last handled change."""

    consumer: str | None = attrs.field(default=None)

    @consumer.validator
    def _check(self, _: object, value: object) -> None:
        if value is not None:
            _name("Broadcast consumer", value)


@attrs.frozen
class WorkQueue:
    """Across every engine subscribed with ``group``, each matching change is handled by
    one member, at least once, in per-entity order. A handler that raises is retried
    with exponential backoff (from ``backoff``) up to ``max_retries`` times, then
    dead-lettered. A member holds a claim for ``lease``; if it dies, another member
    takes the change over once the lease expires."""

    group: str = attrs.field()
    max_retries: int = attrs.field(default=3)
    lease: timedelta = attrs.field(default=timedelta(seconds=30))
    backoff: timedelta = attrs.field(default=timedelta(milliseconds=200))

    @group.validator
    def _check_group(self, _: object, value: object) -> None:
        _name("WorkQueue group", value)

    @max_retries.validator
    def _check_retries(self, _: object, value: object) -> None:
        if type(value) is not int or value < 0:
            raise InvalidArgumentError(f"max_retries must be an int >= 0 (got {value!r:.60})")

    @lease.validator
    def _check_lease(self, _: object, value: object) -> None:
        _positive("lease", value)

    @backoff.validator
    def _check_backoff(self, _: object, value: object) -> None:
        _positive("backoff", value)

    def delay(self, attempts: int) -> timedelta:
        """How long to wait before attempt ``attempts + 1``: doubling, at most 60 s."""
        delay: timedelta = self.backoff * (2 ** max(attempts - 1, 0))
        return min(delay, timedelta(seconds=60))


Delivery = InProcess | Broadcast | WorkQueue

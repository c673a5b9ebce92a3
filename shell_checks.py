"""Argument checks and error conversions both shells share (``engine`` and ``aio``).

Each function here is synchronous and does no I/O, so the blocking engine and the asyncio
engine run the very same checks and raise the very same errors and messages; only the
I/O around them differs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import NoReturn

from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.errors import (
    EngineClosedError,
    InvalidArgumentError,
    ReactiveEntitiesError,
    StoreError,
)
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.domain.validation import has_lone_surrogate, id_problem, limit_problem
from reactive_entities.run_secrets import unknown_run_problem

__all__ = [
    "check_id",
    "checked_actor",
    "checked_run_id",
    "position",
    "checked_limit",
    "takes_connection",
    "checked_lock_timeout",
    "check_unknown_run",
    "check_postgres_options",
    "raise_closed",
    "store_errors",
    "store_failure",
    "reentry_problem",
    "commit_failure",
]


def check_id(entity_id: object) -> None:
    """``InvalidArgumentError`` unless ``entity_id`` is a usable entity id."""
    if (
        type(entity_id) is str
        and entity_id
        and entity_id.isascii()  # non-ASCII ids may hold a lone surrogate: id_problem checks
        and not entity_id.isspace()
        and "\x00" not in entity_id
    ):
        return  # the fast path of every call
    problem = id_problem(entity_id)
    if problem is not None:
        # A type problem already says what it got; others show the value.
        got = "" if "(got " in problem else f" (got {entity_id!r:.60})"
        raise InvalidArgumentError(f"entity id {problem}{got}")


def checked_actor(actor: object) -> Actor:
    """The write's actor: ``SYSTEM_ACTOR`` for None."""
    if actor is None:
        return SYSTEM_ACTOR
    if isinstance(actor, Actor):
        return actor
    raise InvalidArgumentError(f"actor must be an Actor or None (got {type(actor).__name__})")


def checked_run_id(run_id: object) -> str | None:
    """The write's run id, checked (None means no run)."""
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not run_id.strip():
        raise InvalidArgumentError(f"run_id must be a non-empty str or None (got {run_id!r:.60})")
    if has_lone_surrogate(run_id):
        raise InvalidArgumentError(f"run_id must not contain a lone surrogate (got {run_id!r:.60})")
    return run_id


def position(after: object) -> Position | None:
    """``changes(after=…)``: a position, its ``str``, or None."""
    if after is None or isinstance(after, Position):
        return after
    if isinstance(after, str):
        try:
            return Position.parse(after)
        except ValueError as error:
            raise InvalidArgumentError(f"after: {error}") from None
    raise InvalidArgumentError(
        f"after must be a position, its str, or None (got {type(after).__name__})"
    )


def checked_limit(limit: object) -> None:
    """``changes(limit=…)``: a positive int."""
    problem = limit_problem(limit)
    if problem is not None or limit == 0:
        raise InvalidArgumentError(f"limit {problem or 'must be positive'} (got {limit!r:.40})")


def takes_connection(read: Callable[..., object]) -> bool:
    """Whether ``read`` takes ``(ids, connection)`` rather than ``(ids)``: decided once,
    at ``define_entity``."""
    try:
        signature = inspect.signature(read)
    except (TypeError, ValueError):  # a builtin without a signature: the round-1 form
        return False
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def checked_lock_timeout(value: object) -> timedelta:
    """``compose(lock_timeout=…)``: a positive ``timedelta``."""
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidArgumentError(f"lock_timeout must be a positive timedelta (got {value!r:.60})")
    return value


def check_unknown_run(policy: object) -> None:
    """``compose(unknown_run=…)``: one of the policies."""
    problem = unknown_run_problem(policy)
    if problem is not None:
        raise InvalidArgumentError(problem)


def check_postgres_options(
    dsn: object, pool: object, secrets: object, shared_secrets: bool, unknown_run: object
) -> None:
    """``compose.postgres``'s options that exclude each other, and the policy."""
    if pool is not None and dsn is not None:
        raise InvalidArgumentError("pass either dsn or pool to compose.postgres, not both")
    check_unknown_run(unknown_run)
    if shared_secrets and secrets is not None:
        raise InvalidArgumentError("pass either secrets or shared_secrets=True, not both")


def raise_closed() -> NoReturn:
    """Every call on a closed engine ends here."""
    raise EngineClosedError("the engine is closed")


class store_errors:  # noqa: N801 (used like a function: ``with store_errors(...)``)
    """An adapter's own failure inside the block becomes ``StoreError`` — ``failure``,
    followed by ``kind:id`` when ``key`` is given — the original chained; the library's
    errors pass unchanged.

    A class rather than a ``contextmanager`` generator, and the message built only on
    failure: every write enters this twice, and the generator cost more than the lock.
    """

    __slots__ = ("_failure", "_key")

    def __init__(self, failure: str, key: tuple[str, str] | None = None) -> None:
        self._failure = failure
        self._key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, ReactiveEntitiesError) or not isinstance(exc, Exception):
            return
        raise store_failure(self._failure, self._key) from exc


def store_failure(failure: str, key: tuple[str, str] | None = None) -> StoreError:
    """The ``StoreError`` an adapter's own failure becomes: ``failure``, followed by
    ``kind:id`` when ``key`` is given (raise it ``from`` the failure).

    The write pipeline's steps use it in ``except`` clauses rather than
    :class:`store_errors`: a ``try`` costs nothing until something fails, the context
    manager about 0.25 µs per step, three steps per write.
    """
    return StoreError(failure if key is None else f"{failure} {key[0]}:{key[1]}")


def reentry_problem(
    key: tuple[str, str], *, writing_here: bool, held_elsewhere: bool, by_writer: bool, who: str
) -> str | None:
    """Why locking ``key`` would wait for the caller itself, or None.

    ``writing_here``: this transaction is running the entity's own ``apply``;
    ``held_elsewhere``: another open transaction of the same ``who`` (thread, task)
    holds it — ``by_writer`` when that one is running the entity's ``apply``.
    """
    if not writing_here and not held_elsewhere:
        return None  # every write asks: answered before any message is built
    ref = f"{key[0]}:{key[1]}"
    if writing_here:
        return (
            f"{ref} is being written: a mutate or remove of it inside its own apply would "
            "wait for itself"
        )
    holder = (
        f"a write running in this {who} (a mutate inside its own apply?)"
        if by_writer
        else f"an open transaction of this {who}: pass tx= to write it there"
    )
    return f"{ref} is locked by {holder}; waiting for it would never end"


def commit_failure(events: Sequence[ChangeEvent]) -> str:
    """The message of a failed commit of ``events`` (naming the first change)."""
    if not events:
        return "could not commit 0 change(s)"
    first = events[0]
    return (
        f"could not commit {len(events)} change(s) "
        f"(first: change {first.change_id} of {first.kind}:{first.entity_id})"
    )

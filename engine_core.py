"""What an engine knows and decides without I/O, shared by the blocking ``Engine`` and
the asyncio ``AsyncEngine``: its kinds and their handles, derivers, declarations, the
checks of ``subscribe`` and ``changes``, and whether it is closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import cattrs
from returns.result import Failure

from reactive_entities.derivers import Deriver, Derivers, PayloadMapper
from reactive_entities.domain.declarations import NonReactiveDeclaration, declaration_problem
from reactive_entities.domain.errors import (
    DefinitionError,
    InvalidArgumentError,
    InvalidReadError,
    UnknownKindError,
)
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.domain.schema import Schema, build_schema
from reactive_entities.domain.subscriptions import Broadcast, InProcess, WorkQueue
from reactive_entities.domain.validation import callable_problem, kind_problem
from reactive_entities.kind_core import KindCore
from reactive_entities.shell_checks import checked_limit, position, raise_closed

__all__ = ["EngineCore", "Mode", "require_feed"]

H = TypeVar("H", bound=KindCore[Any])
F = TypeVar("F")
Mode = InProcess | Broadcast | WorkQueue

_LOGGER = logging.getLogger("reactive_entities")


class EngineCore(Generic[H]):
    """Kinds (handles of type ``H``), derivers, declarations and the open/closed state."""

    def __init__(
        self,
        *,
        converter: cattrs.Converter,
        logger: logging.Logger | None,
        derivers: Callable[[logging.Logger], Derivers],
        new_change_id: Callable[[], str],
    ) -> None:
        self.converter = converter
        self.logger = logger if logger is not None else _LOGGER
        self._new_change_id = new_change_id
        self._handles: dict[str, H] = {}
        self._define_lock = threading.Lock()
        self._derivers = derivers(self.logger)
        self._declarations: tuple[NonReactiveDeclaration, ...] = ()
        self._closed = False

    # -- kinds ---------------------------------------------------------------------------

    def _define(
        self,
        kind: str,
        state: type[Any],
        read: object,
        sensitive: Iterable[str],
        make: Callable[[Schema], H],
    ) -> H:
        """SPEC §1's checks, in order, then ``make`` the handle and register it."""
        self._check_open()
        problem = kind_problem(kind)
        if problem is not None:
            raise DefinitionError(f"kind {kind!r:.80} {problem}")
        with self._define_lock:
            if kind in self._handles:
                raise DefinitionError(f'duplicate kind "{kind}": it is already defined')
            problem = callable_problem(read)
            if problem is not None:
                raise InvalidReadError(f'read of kind "{kind}" {problem}')
            schema = build_schema(kind, state, sensitive, self.converter)
            if isinstance(schema, Failure):
                raise schema.failure()
            handle = make(schema.unwrap())
            self._handles[kind] = handle
        return handle

    def kinds(self) -> tuple[str, ...]:
        """Defined kinds, in definition order."""
        self._check_open()
        return tuple(self._handles)

    def handle(self, kind: str) -> H:
        """The handle of a defined kind."""
        self._check_open()
        try:
            return self._handles[kind]
        except (KeyError, TypeError):
            known = ", ".join(self._handles) or "none"
            raise UnknownKindError(f'unknown kind "{kind}" (defined: {known})') from None

    # -- subscriptions and the feed: arguments ----------------------------------------------

    def _subscription(
        self, handler: object, kind: str | None, fields: Iterable[str] | None, delivery: object
    ) -> tuple[frozenset[str] | None, Mode]:
        """``subscribe``'s arguments checked: the wanted fields (None: all) and where
        to deliver."""
        self._check_open()
        problem = callable_problem(handler)
        if problem is not None:
            raise InvalidArgumentError(f"handler {problem}")
        wanted: frozenset[str] | None = None
        if fields is not None:
            wanted = frozenset((fields,) if isinstance(fields, str) else fields)
            if not wanted:
                raise InvalidArgumentError("fields must not be empty (None means every field)")
        if kind is not None:
            handle = self.handle(kind)
            for field in sorted(wanted or ()):
                handle._check_field(field)
        elif wanted is not None:
            _check_fields_of_some_kind(wanted, tuple(self._handles.values()))
        if delivery is None:
            return wanted, InProcess()
        if not isinstance(delivery, InProcess | Broadcast | WorkQueue):
            raise InvalidArgumentError(
                "delivery must be InProcess(), Broadcast(…) or WorkQueue(…) "
                f"(got {type(delivery).__name__})"
            )
        return wanted, delivery

    def _changes_from(self, after: object, kind: str | None, limit: int) -> Position | None:
        """``changes``' arguments checked; the position to read after."""
        self._check_open()
        start = position(after)
        if kind is not None:
            self.handle(kind)
        checked_limit(limit)
        return start

    # -- derivers ------------------------------------------------------------------------

    def register_deriver(
        self, kind: str, derive: Deriver, to_payload: PayloadMapper | None = None
    ) -> None:
        """Register a function deriving related entity ids from ``kind``'s events, and
        optionally the kind's payload mapper (SPEC §10)."""
        self._check_open()
        self._derivers.register(kind, derive, to_payload)

    def payload(self, event: ChangeEvent) -> dict[str, Any] | None:
        """The kind's payload mapper applied to ``event``, or None without one."""
        self._check_open()
        return self._derivers.payload(event)

    # -- declarations --------------------------------------------------------------------

    def declare_non_reactive_state(
        self, *, table: str, reason: str, note: str | None = None
    ) -> NonReactiveDeclaration:
        """Record that ``table`` is deliberately not reactive, and why (SPEC §10)."""
        self._check_open()
        problem = declaration_problem(table, reason, note)
        if problem is not None:
            raise InvalidArgumentError(f"non-reactive declaration: {problem}")
        declaration = NonReactiveDeclaration(table, reason, note)  # type: ignore[arg-type]
        with self._define_lock:
            if declaration not in self._declarations:
                self._declarations = (*self._declarations, declaration)
        return declaration

    def non_reactive_declarations(self) -> tuple[NonReactiveDeclaration, ...]:
        """Every declaration, in declaration order."""
        self._check_open()
        return self._declarations

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise_closed()


def require_feed(feed: F | None, what: str) -> F:
    """The engine's change feed, or ``InvalidArgumentError`` saying ``what`` needs one."""
    if feed is None:
        raise InvalidArgumentError(f"{what} needs a change feed, and this engine's store has none")
    return feed


def _check_fields_of_some_kind(fields: frozenset[str], handles: Sequence[KindCore[Any]]) -> None:
    """``subscribe(fields=...)`` without a kind: each name must be a field of some
    defined kind, else the subscription could never fire (SPEC §16.7)."""
    unknown = sorted(f for f in fields if not any(f in h._schema.field_set for h in handles))
    if unknown:
        kinds = ", ".join(h.kind for h in handles) or "none"
        raise InvalidArgumentError(
            f"fields {', '.join(map(repr, unknown))} are not fields of any defined kind "
            f"(defined: {kinds}); define the kind first, or pass kind="
        )

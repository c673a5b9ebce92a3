"""The imperative shell: ``Engine`` and ``EntityHandle``.

Theory of operation. Every write runs in a :class:`~reactive_entities.transaction.Transaction`
— the caller's (``tx=``) or one begun and committed around the single write — whose
pipeline does I/O in a fixed order around one pure decision:

    lock → read prev → apply → plan_write (validate + plan) → record → commit → deliver

``plan_write`` (in ``domain``) validates the next state and decides whether anything
changed; the store stamps and records; events reach in-process handlers after commit,
outside every lock, in recording order per entity (``delivery``).

Ports are used as given; only ``compose`` chooses concrete adapters.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import cattrs
from returns.result import Failure

from reactive_entities.delivery import Delivery
from reactive_entities.derivers import Deriver, Derivers, PayloadMapper
from reactive_entities.domain import temporal
from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.declarations import NonReactiveDeclaration, declaration_problem
from reactive_entities.domain.errors import (
    DefinitionError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidReadError,
    ReactiveEntitiesError,
    StateValidationError,
    StoreError,
    UnknownFieldError,
    UnknownKindError,
)
from reactive_entities.domain.events import ChangeEvent, TransitionRecord
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.position import Position
from reactive_entities.domain.schema import Schema, build_schema
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.subscriptions import Broadcast, InProcess, WorkQueue
from reactive_entities.domain.validation import (
    aware_datetime_problem,
    callable_problem,
    has_lone_surrogate,
    id_problem,
    kind_problem,
    limit_problem,
    window_problem,
)
from reactive_entities.domain.writes import validate_state
from reactive_entities.durable import DEFAULT_POLL_INTERVAL, DurableSubscription
from reactive_entities.ids import new_change_id
from reactive_entities.ports.emitter import Emitter, Subscription, SubscriptionHub
from reactive_entities.ports.feed import ChangeFeed, ConsumerStatus, DeadLetter
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore
from reactive_entities.run_secrets import EngineSecrets, UnknownRunPolicy
from reactive_entities.transaction import HeldLocks, Transaction

__all__ = ["Engine", "EntityHandle", "write_through", "remove_through"]

S = TypeVar("S")
T = TypeVar("T")
Read = Callable[..., Mapping[str, Any]]

_LOGGER = logging.getLogger("reactive_entities")


class EntityHandle(Generic[S]):
    """Reads, writes and temporal questions for one kind. Get one from
    :meth:`Engine.define_entity` or :meth:`Engine.handle`."""

    def __init__(self, engine: Engine, schema: Schema, read: Read) -> None:
        self._engine = engine
        self._schema = schema
        self._read = read
        self._read_takes_connection = _takes_connection(read)
        self._store = engine.store
        self._kind = schema.kind

    @property
    def kind(self) -> str:
        """The kind's name."""
        return self._kind

    @property
    def state_class(self) -> type[S]:
        """The attrs class of this kind's states."""
        return self._schema.state_class

    @property
    def fields(self) -> tuple[str, ...]:
        """The state's field names, in class order."""
        return self._schema.fields

    @property
    def sensitive(self) -> frozenset[str]:
        """Fields always masked whole."""
        return self._schema.sensitive

    def __repr__(self) -> str:
        return f"<EntityHandle {self._kind} ({self._schema.state_class.__name__})>"

    # -- writes --------------------------------------------------------------------------

    def mutate(
        self,
        entity_id: str,
        apply: Callable[[], S | Mapping[str, Any] | None],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: Transaction | None = None,
    ) -> S:
        """Run the plugin's write ``apply`` and record what it changed (SPEC §5, §14).

        With ``tx`` the change is recorded in that transaction and delivered after it
        commits. Returns the validated resulting state (never masked).
        """
        return self._write(entity_id, apply, actor, run_id, tx, removing=False)  # type: ignore[no-any-return]

    def remove(
        self,
        entity_id: str,
        apply: Callable[[], object],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
        tx: Transaction | None = None,
    ) -> None:
        """Run the plugin's delete ``apply`` and record the removal (SPEC §5, §14)."""
        self._write(entity_id, apply, actor, run_id, tx, removing=True)

    def _write(
        self,
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor | None,
        run_id: str | None,
        tx: Transaction | None,
        *,
        removing: bool,
    ) -> Any:
        """Check the arguments, then run the pipeline in ``tx`` or in a transaction of
        its own (see :mod:`reactive_entities.transaction`)."""
        engine = self._engine
        _check_id(entity_id)
        if not callable(apply):
            raise InvalidArgumentError(f"apply {callable_problem(apply)} ({self._ref(entity_id)})")
        actor = _checked_actor(actor)
        secrets = _run_secrets(engine.secrets, run_id)
        engine._check_open()
        if tx is not None:
            if getattr(tx, "_engine", None) is not engine:
                raise InvalidArgumentError(
                    f"tx must be a transaction of this engine (got {type(tx).__name__}; "
                    f"{self._ref(entity_id)})"
                )
            return tx._write(self, entity_id, apply, actor, run_id, secrets, removing=removing)
        own = engine._begin(None)
        try:
            state = own._write(self, entity_id, apply, actor, run_id, secrets, removing=removing)
        except BaseException:
            own.rollback()
            raise
        own.commit()
        return state

    # -- reads ---------------------------------------------------------------------------

    def get(self, entity_id: str) -> S | None:
        """The entity's current state through the plugin's ``read``, or None if absent."""
        _check_id(entity_id)
        self._engine._check_open()
        return self._current(entity_id, EMPTY_SECRETS, outside=True)[0]  # type: ignore[no-any-return]

    def get_many(self, entity_ids: Iterable[str]) -> dict[str, S]:
        """The current states of the ids that exist (absent ids are left out)."""
        if isinstance(entity_ids, str | bytes):
            raise InvalidArgumentError(
                f'get_many of kind "{self._kind}" takes an iterable of ids, not a single str'
            )
        given = list(entity_ids)
        for entity_id in given:
            _check_id(entity_id)
        ids = list(dict.fromkeys(given))
        self._engine._check_open()
        found = self._read_outside(ids)
        states: dict[str, S] = {}
        for entity_id in ids:
            if entity_id in found:
                states[entity_id] = self._validated(
                    found[entity_id], entity_id, EMPTY_SECRETS, "read"
                )[0]
        return states

    def in_state_since(self, entity_id: str, field: str) -> datetime | None:
        """Since when the field has held its current value (SPEC §8)."""
        self._check_query(entity_id, field)
        doc = self._current(entity_id, EMPTY_SECRETS, outside=True)[1]
        if doc is None:
            return None  # absent: the store is not consulted
        latest = self._query(lambda: self._store.latest_transition(self._kind, entity_id, field))
        return temporal.in_state_since(latest, doc.get(field))

    def in_state_for(self, entity_id: str, field: str) -> timedelta | None:
        """How long the field has held its current value (``now − since``, never negative)."""
        since = self.in_state_since(entity_id, field)
        if since is None:
            return None
        return temporal.in_state_for(since, self._query(self._store.now))

    def transition_count(self, entity_id: str, field: str, *, window: timedelta) -> int:
        """Rows of the field within the last ``window`` (inclusive), by the store's clock."""
        self._check_query(entity_id, field)
        problem = window_problem(window)
        if problem is not None:
            raise InvalidArgumentError(f"window {problem} ({self._ref(entity_id)}.{field})")
        return self._query(
            lambda: self._store.count_transitions(self._kind, entity_id, field, window)
        )

    def value_at(self, entity_id: str, field: str, at: datetime) -> JSONValue:
        """The field's recorded value at ``at``; None if there is none or it was removed."""
        self._check_query(entity_id, field)
        problem = aware_datetime_problem(at)
        if problem is not None:
            raise InvalidArgumentError(f"at {problem} ({self._ref(entity_id)}.{field})")
        store = self._store
        change = self._query(lambda: store.latest_change(self._kind, entity_id, at=at))
        if change is None or change.op == "remove":
            return None
        row = self._query(lambda: store.latest_transition(self._kind, entity_id, field, at=at))
        return temporal.value_at(change, row)

    def history(
        self,
        entity_id: str,
        *,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[TransitionRecord, ...]:
        """Transition rows oldest first; ``limit`` keeps the newest N (SPEC §8)."""
        _check_id(entity_id)
        if field is not None:
            self._check_field(field)
        for name, problem in (
            ("since", None if since is None else aware_datetime_problem(since)),
            ("limit", None if limit is None else limit_problem(limit)),
        ):
            if problem is not None:
                raise InvalidArgumentError(f"{name} {problem} ({self._ref(entity_id)})")
        self._engine._check_open()
        rows = self._query(
            lambda: self._store.transitions(self._kind, entity_id, field, since, limit)
        )
        return tuple(rows)

    def changes(
        self, entity_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> tuple[ChangeEvent, ...]:
        """The entity's recorded changes (masked), oldest first, each with its
        ``position``; ``since`` inclusive; ``limit`` keeps the newest N (SPEC §15.5)."""
        _check_id(entity_id)
        for name, problem in (
            ("since", None if since is None else aware_datetime_problem(since)),
            ("limit", None if limit is None else limit_problem(limit)),
        ):
            if problem is not None:
                raise InvalidArgumentError(f"{name} {problem} ({self._ref(entity_id)})")
        self._engine._check_open()
        feed = self._engine._require_feed("changes")
        return self._query(
            lambda: tuple(feed.entity_changes(self._kind, entity_id, since=since, limit=limit))
        )

    # -- helpers -------------------------------------------------------------------------

    def _ref(self, entity_id: str) -> str:
        return f"{self._kind}:{entity_id}"

    def _check_field(self, field: str) -> None:
        if field not in self._schema.field_set:
            raise UnknownFieldError(
                f'"{field}" is not a field of kind "{self._kind}" '
                f"(fields: {', '.join(self._schema.fields)})"
            )

    def _check_query(self, entity_id: str, field: str) -> None:
        _check_id(entity_id)
        self._check_field(field)
        self._engine._check_open()

    def _read_mapping(self, ids: Sequence[str], connection: Any) -> Mapping[str, Any]:
        found = self._read(ids, connection) if self._read_takes_connection else self._read(ids)
        if type(found) is not dict and not isinstance(found, Mapping):
            raise StateValidationError(
                self._kind,
                ids[0] if len(ids) == 1 else None,
                {"$": f"read must return a mapping of id to state (got {type(found).__name__})"},
                "value returned by read",
            )
        return found

    def _read_outside(self, ids: Sequence[str]) -> Mapping[str, Any]:
        """``read`` outside any write: with a connection of the store's for a ``read``
        that takes one (None in memory)."""
        if not self._read_takes_connection:
            return self._read_mapping(ids, None)
        with self._store.reader() as connection:
            return self._read_mapping(ids, connection)

    def _current(
        self, entity_id: str, secrets: SecretSet, connection: Any = None, *, outside: bool = False
    ) -> tuple[Any, Document | None]:
        """``(state, document)`` as ``read`` has it now; ``(None, None)`` when absent.
        ``outside`` means no write is running (the store lends a connection)."""
        ids = [entity_id]
        found = self._read_outside(ids) if outside else self._read_mapping(ids, connection)
        value = found.get(entity_id)
        if value is None:
            return None, None
        return self._validated(value, entity_id, secrets, "read")

    def _validated(
        self, value: object, entity_id: str, secrets: SecretSet, source: str
    ) -> tuple[Any, Document]:
        checked = validate_state(self._schema, entity_id, value, secrets, source)
        if isinstance(checked, Failure):
            raise checked.failure()
        return checked.unwrap()

    def _query(self, run: Callable[[], T]) -> T:
        return _queried(run, f'store query failed for kind "{self._kind}"')


class Engine:
    """Kinds, their handles, subscriptions and secrets, wired to one set of adapters.

    Build one with :func:`reactive_entities.compose.in_memory` or
    :func:`reactive_entities.compose.postgres`; use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        *,
        store: EntityStore,
        emitter: Emitter,
        subscriptions: SubscriptionHub,
        secrets: SecretRegistry,
        converter: cattrs.Converter,
        logger: logging.Logger | None = None,
        new_change_id: Callable[[], str] = new_change_id,
        on_close: Sequence[Callable[[], None]] = (),
        feed: ChangeFeed | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        unknown_run: UnknownRunPolicy = "warn",
    ) -> None:
        self.store = store
        self.emitter = emitter
        self.converter = converter
        self.logger = logger if logger is not None else _LOGGER
        self.secrets = EngineSecrets(
            secrets, unknown_run=unknown_run, logger=self.logger, is_closed=lambda: self._closed
        )
        self._subscriptions = subscriptions
        self._new_change_id = new_change_id
        self._on_close = tuple(on_close)
        self._handles: dict[str, EntityHandle[Any]] = {}
        self._define_lock = threading.Lock()
        self._derivers = Derivers(secrets, self.logger)
        self._declarations: tuple[NonReactiveDeclaration, ...] = ()
        self._closed = False
        self._held = HeldLocks()
        self._delivery = Delivery(emitter.emit, self.logger)
        self.feed = feed
        self._poll_interval = poll_interval
        self._durable: set[DurableSubscription] = set()

    # -- kinds ---------------------------------------------------------------------------

    def define_entity(
        self,
        kind: str,
        state: type[S],
        *,
        read: Callable[[Sequence[str]], Mapping[str, S | Mapping[str, Any]]]
        | Callable[[Sequence[str], Any], Mapping[str, S | Mapping[str, Any]]],
        sensitive: Iterable[str] = (),
    ) -> EntityHandle[S]:
        """Register a kind and return its handle (SPEC §1). Nothing is registered when
        a check fails."""
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
            handle: EntityHandle[S] = EntityHandle(self, schema.unwrap(), read)
            self._handles[kind] = handle
        return handle

    def kinds(self) -> tuple[str, ...]:
        """Defined kinds, in definition order."""
        self._check_open()
        return tuple(self._handles)

    def handle(self, kind: str) -> EntityHandle[Any]:
        """The handle of a defined kind."""
        self._check_open()
        try:
            return self._handles[kind]
        except (KeyError, TypeError):
            known = ", ".join(self._handles) or "none"
            raise UnknownKindError(f'unknown kind "{kind}" (defined: {known})') from None

    # -- transactions --------------------------------------------------------------------

    def transaction(self, connection: Any = None) -> Transaction:
        """A unit of work (DESIGN §8): use it as ``with engine.transaction() as tx`` and
        pass ``tx=tx`` to ``mutate``/``remove``. The application's statements on
        ``tx.connection``, the change rows and the transition rows commit together when
        the block ends; an exception rolls all of it back and nothing is delivered.

        ``connection`` (PostgreSQL) joins an idle connection of the application's: the
        library begins and ends the transaction on it and leaves it open and idle.
        """
        self._check_open()
        return self._begin(connection)

    def _begin(self, connection: Any) -> Transaction:
        try:
            store_tx = self.store.begin(connection)
        except ReactiveEntitiesError:
            raise
        except Exception as error:
            raise StoreError("could not begin a transaction") from error
        return Transaction(self, store_tx)

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
        delivery: InProcess | Broadcast | WorkQueue | None = None,
    ) -> Subscription:
        """Call ``handler`` with each recorded change of ``kind`` touching ``fields``
        (SPEC §9, §15).

        ``delivery`` says where: in this process after commit (the default,
        :class:`InProcess`); in every engine sharing the store (:class:`Broadcast`); or
        in one member of a group (:class:`WorkQueue`). A handler that raises is logged,
        masked, and does not affect others (a work queue retries it).
        """
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
        if delivery is None or isinstance(delivery, InProcess):
            return self._subscriptions.subscribe(handler, kind=kind, fields=wanted)
        if not isinstance(delivery, Broadcast | WorkQueue):
            raise InvalidArgumentError(
                "delivery must be InProcess(), Broadcast(…) or WorkQueue(…) "
                f"(got {type(delivery).__name__})"
            )
        feed = self._require_feed(type(delivery).__name__)
        durable = DurableSubscription(
            feed,
            handler,
            kind=kind,
            fields=wanted,
            mode=delivery,
            secrets=self.secrets,
            logger=self.logger,
            poll_interval=self._poll_interval,
            on_stop=self._durable.discard,
        )
        self._durable.add(durable)
        return durable

    # -- the feed ------------------------------------------------------------------------

    def changes(
        self, after: Position | str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> tuple[ChangeEvent, ...]:
        """Changes from the feed strictly after ``after`` (a position or its ``str``;
        from the start when None), in feed order, each with its ``position``; at most
        ``limit`` (SPEC §15.2)."""
        self._check_open()
        start = _position(after)
        if kind is not None:
            self.handle(kind)
        problem = limit_problem(limit)
        if problem is not None or limit == 0:
            raise InvalidArgumentError(f"limit {problem or 'must be positive'} (got {limit!r:.40})")
        feed = self._require_feed("changes")
        return _queried(lambda: tuple(feed.changes(start, kind=kind, limit=limit)))

    def consumers(self) -> tuple[ConsumerStatus, ...]:
        """Every named broadcast consumer and work-queue group: position, lag, claims
        in flight, dead letters."""
        self._check_open()
        feed = self._require_feed("consumers")
        return _queried(lambda: tuple(feed.consumers()))

    def dead_letters(self, group: str) -> tuple[DeadLetter, ...]:
        """The work-queue group's dead letters, oldest first."""
        self._check_open()
        WorkQueue(group=group)  # validates the name
        feed = self._require_feed("dead_letters")
        return _queried(lambda: tuple(feed.dead_letters(group)))

    def retry_dead_letters(self, group: str) -> int:
        """Deliver the group's dead letters again (attempts reset); how many."""
        self._check_open()
        WorkQueue(group=group)
        feed = self._require_feed("retry_dead_letters")
        count = _queried(lambda: feed.retry_dead_letters(group))
        for durable in list(self._durable):
            durable.wake()
        return count

    def _require_feed(self, what: str) -> ChangeFeed:
        if self.feed is None:
            raise InvalidArgumentError(
                f"{what} needs a change feed, and this engine's store has none"
            )
        return self.feed

    # -- derivers ------------------------------------------------------------------------

    def register_deriver(
        self, kind: str, derive: Deriver, to_payload: PayloadMapper | None = None
    ) -> None:
        """Register a function deriving related entity ids from ``kind``'s events, and
        optionally the kind's payload mapper (SPEC §10)."""
        self._check_open()
        self._derivers.register(kind, derive, to_payload)

    def derive(self, event: ChangeEvent) -> tuple[str, ...]:
        """Ids derived from ``event`` by its kind's derivers: de-duplicated, non-empty
        strings, in first-seen order. A deriver that raises is logged and skipped."""
        self._check_open()
        return self._derivers.derive(event)

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

    def migrate(self) -> None:
        """Bring the store's schema up to date (a no-op for stores without one)."""
        self._check_open()
        migrate = getattr(self.store, "migrate", None)
        if migrate is not None:
            migrate()

    def close(self) -> None:
        """Release the store and whatever the composition root opened; idempotent."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + 5.0  # every delivery thread stops within 5 s
        for durable in list(self._durable):
            durable.cancel(timeout=max(deadline - time.monotonic(), 0.0))
        close_feed = getattr(self.feed, "close", None)
        if close_feed is not None:
            close_feed()
        self.store.close()
        for release in self._on_close:
            release()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            _raise_closed()


def write_through(
    handle: EntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``handle.mutate(...)`` when there is a handle, else just ``apply()``."""
    if handle is None:
        apply()
    else:
        handle.mutate(entity_id, apply, actor=actor, run_id=run_id)


def remove_through(
    handle: EntityHandle[Any] | None,
    entity_id: str,
    apply: Callable[[], object],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
) -> None:
    """``handle.remove(...)`` when there is a handle, else just ``apply()``."""
    if handle is None:
        apply()
    else:
        handle.remove(entity_id, apply, actor=actor, run_id=run_id)


def _position(after: object) -> Position | None:
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


def _queried(run: Callable[[], T], failure: str = "the change feed could not be read") -> T:
    """``run()``, an adapter's own failure turned into ``StoreError(failure)``."""
    try:
        return run()
    except ReactiveEntitiesError:
        raise
    except Exception as error:
        raise StoreError(failure) from error


def _takes_connection(read: Callable[..., object]) -> bool:
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


def _raise_closed() -> NoReturn:
    raise EngineClosedError("the engine is closed")


def _check_id(entity_id: object) -> None:
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


def _checked_actor(actor: object) -> Actor:
    if actor is None:
        return SYSTEM_ACTOR
    if isinstance(actor, Actor):
        return actor
    raise InvalidArgumentError(f"actor must be an Actor or None (got {type(actor).__name__})")


def _run_secrets(registry: SecretRegistry, run_id: object) -> SecretSet:
    if run_id is None:
        return EMPTY_SECRETS
    if not isinstance(run_id, str) or not run_id.strip():
        raise InvalidArgumentError(f"run_id must be a non-empty str or None (got {run_id!r:.60})")
    if has_lone_surrogate(run_id):
        raise InvalidArgumentError(f"run_id must not contain a lone surrogate (got {run_id!r:.60})")
    if type(registry) is EngineSecrets:
        return registry.for_write(run_id)  # applies the engine's unknown_run policy
    return registry.secrets_for(run_id)


def _check_fields_of_some_kind(
    fields: frozenset[str], handles: Sequence[EntityHandle[Any]]
) -> None:
    """``subscribe(fields=...)`` without a kind: each name must be a field of some
    defined kind, else the subscription could never fire (SPEC §16.7)."""
    unknown = sorted(f for f in fields if not any(f in h._schema.field_set for h in handles))
    if unknown:
        kinds = ", ".join(h.kind for h in handles) or "none"
        raise InvalidArgumentError(
            f"fields {', '.join(map(repr, unknown))} are not fields of any defined kind "
            f"(defined: {kinds}); define the kind first, or pass kind="
        )

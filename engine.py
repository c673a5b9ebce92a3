"""The imperative shell: ``Engine`` and ``EntityHandle``.

Theory of operation. Every write goes through :meth:`EntityHandle._write`, which does
I/O in a fixed order around one pure decision:

    lock → read prev → apply → validate next → plan_change → record → emit

``plan_change`` (in ``domain``) decides whether anything changed and builds the masked
event and rows; this module only executes that plan. The entity lock is held from
before ``read`` until the event is emitted, so the log of one entity is a chain and its
events reach in-process subscribers in recording order.

Ports are used as given; only ``compose`` chooses concrete adapters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import cattrs
from returns.result import Failure, Result

from reactive_entities.derivers import Deriver, Derivers, PayloadMapper
from reactive_entities.domain import temporal
from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.declarations import NonReactiveDeclaration, declaration_problem
from reactive_entities.domain.errors import (
    DefinitionError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidReadError,
    MissingStateError,
    ReactiveEntitiesError,
    StateValidationError,
    StoreError,
    UnknownFieldError,
    UnknownKindError,
)
from reactive_entities.domain.events import ChangeEvent, TransitionRecord
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.schema import Problems, Schema, build_schema
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.validation import (
    aware_datetime_problem,
    callable_problem,
    has_lone_surrogate,
    id_problem,
    kind_problem,
    limit_problem,
    window_problem,
)
from reactive_entities.ids import new_change_id
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.emitter import Emitter, Subscription, SubscriptionHub
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore
from reactive_entities.run_secrets import EngineSecrets, UnknownRunPolicy

__all__ = ["Engine", "EntityHandle", "write_through", "remove_through"]

S = TypeVar("S")
T = TypeVar("T")
Read = Callable[[Sequence[str]], Mapping[str, Any]]

_LOGGER = logging.getLogger("reactive_entities")


class EntityHandle(Generic[S]):
    """Reads, writes and temporal questions for one kind. Get one from
    :meth:`Engine.define_entity` or :meth:`Engine.handle`."""

    def __init__(self, engine: Engine, schema: Schema, read: Read) -> None:
        self._engine = engine
        self._schema = schema
        self._read = read
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
    ) -> S:
        """Run the plugin's write ``apply`` and record what it changed (SPEC §5).

        Returns the validated resulting state (never masked).
        """
        return self._write(entity_id, apply, actor, run_id, removing=False)  # type: ignore[return-value]

    def remove(
        self,
        entity_id: str,
        apply: Callable[[], object],
        *,
        actor: Actor | None = None,
        run_id: str | None = None,
    ) -> None:
        """Run the plugin's delete ``apply`` and record the removal (SPEC §5)."""
        self._write(entity_id, apply, actor, run_id, removing=True)

    def _write(
        self,
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor | None,
        run_id: str | None,
        *,
        removing: bool,
    ) -> S | None:
        """The pipeline: lock → read → apply → validate → plan → record → emit."""
        engine = self._engine
        _check_id(entity_id)
        if not callable(apply):
            raise InvalidArgumentError(f"apply {callable_problem(apply)} ({self._ref(entity_id)})")
        actor = _checked_actor(actor)
        secrets = _run_secrets(engine.secrets, run_id)
        engine._check_open()
        schema = self._schema
        store = self._store
        lock = _enter_lock(store, self._kind, entity_id)
        try:
            prev_doc = self._current(entity_id, secrets)[1]
            result = apply()
            if removing:
                next_state = next_doc = None
            elif result is None:
                raise MissingStateError(
                    f"apply returned None for {self._ref(entity_id)}: mutate needs the "
                    "resulting state (use remove to delete)"
                )
            else:
                next_state, next_doc = self._validated(result, entity_id, secrets, "apply")
            change = plan_change(
                self._kind,
                entity_id,
                prev_doc,
                next_doc,
                actor=actor,
                run_id=run_id,
                secrets=secrets,
                sensitive=schema.sensitive,
                change_id=engine._new_change_id(),
                occurred_at=engine._clock.now(),
            )
            if change is not None:
                try:
                    stamp = store.record(change)
                except ReactiveEntitiesError:
                    raise
                except Exception as error:
                    raise StoreError(
                        f"could not record change {change.event.change_id} of "
                        f"{self._ref(entity_id)}"
                    ) from error
                engine.emitter.emit(change.stamped(stamp))
        except BaseException as error:
            lock.__exit__(type(error), error, error.__traceback__)
            raise
        lock.__exit__(None, None, None)
        return next_state

    # -- reads ---------------------------------------------------------------------------

    def get(self, entity_id: str) -> S | None:
        """The entity's current state through the plugin's ``read``, or None if absent."""
        _check_id(entity_id)
        self._engine._check_open()
        return self._current(entity_id, EMPTY_SECRETS)[0]  # type: ignore[no-any-return]

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
        found = self._read_mapping(ids)
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
        doc = self._current(entity_id, EMPTY_SECRETS)[1]
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

    def _read_mapping(self, ids: Sequence[str]) -> Mapping[str, Any]:
        found = self._read(ids)
        if type(found) is not dict and not isinstance(found, Mapping):
            raise StateValidationError(
                self._kind,
                ids[0] if len(ids) == 1 else None,
                {"$": f"read must return a mapping of id to state (got {type(found).__name__})"},
                "value returned by read",
            )
        return found

    def _current(self, entity_id: str, secrets: SecretSet) -> tuple[Any, Document | None]:
        """``(state, document)`` as ``read`` has it now; ``(None, None)`` when absent."""
        value = self._read_mapping([entity_id]).get(entity_id)
        if value is None:
            return None, None
        return self._validated(value, entity_id, secrets, "read")

    def _validated(
        self, value: object, entity_id: str, secrets: SecretSet, source: str
    ) -> tuple[Any, Document]:
        doc = self._schema.instance_document(value)
        if doc is not None:
            return value, doc
        result: Result[tuple[Any, Document], Problems] = self._schema.validate(value, secrets)
        if isinstance(result, Failure):
            raise StateValidationError(
                self._kind, entity_id, dict(result.failure()), f"state returned by {source}"
            )
        return result.unwrap()

    def _query(self, run: Callable[[], T]) -> T:
        try:
            return run()
        except ReactiveEntitiesError:
            raise
        except Exception as error:
            raise StoreError(f'store query failed for kind "{self._kind}"') from error


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
        clock: Clock,
        converter: cattrs.Converter,
        logger: logging.Logger | None = None,
        new_change_id: Callable[[], str] = new_change_id,
        on_close: Sequence[Callable[[], None]] = (),
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
        self._clock = clock
        self._new_change_id = new_change_id
        self._on_close = tuple(on_close)
        self._handles: dict[str, EntityHandle[Any]] = {}
        self._define_lock = threading.Lock()
        self._derivers = Derivers(secrets, self.logger)
        self._declarations: tuple[NonReactiveDeclaration, ...] = ()
        self._closed = False

    # -- kinds ---------------------------------------------------------------------------

    def define_entity(
        self,
        kind: str,
        state: type[S],
        *,
        read: Callable[[Sequence[str]], Mapping[str, S | Mapping[str, Any]]],
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

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        handler: Callable[[ChangeEvent], object],
        *,
        kind: str | None = None,
        fields: Iterable[str] | None = None,
    ) -> Subscription:
        """Call ``handler`` with each recorded change of ``kind`` touching ``fields``
        (SPEC §9). A handler that raises is logged, masked, and does not affect others."""
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
        return self._subscriptions.subscribe(handler, kind=kind, fields=wanted)

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


def _enter_lock(store: EntityStore, kind: str, entity_id: str) -> AbstractContextManager[object]:
    """The entity's lock, entered; a store failure becomes ``StoreError``."""
    try:
        lock = store.lock(kind, entity_id)
        lock.__enter__()
    except ReactiveEntitiesError:
        raise
    except Exception as error:
        raise StoreError(f"could not lock {kind}:{entity_id}") from error
    return lock

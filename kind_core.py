"""What an entity handle knows and decides without I/O, shared by the blocking
``EntityHandle`` and the asyncio ``AsyncEntityHandle``.

A handle's methods do I/O in a fixed order around pure checks and decisions; the
checks (ids, fields, windows, limits), the validation of what ``read`` and ``apply``
returned, and the plan of a write live here once, so both handles raise the same errors
with the same messages and record the same changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from returns.result import Failure

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import (
    InvalidArgumentError,
    StateValidationError,
    UnknownFieldError,
)
from reactive_entities.domain.json import Document
from reactive_entities.domain.schema import Schema
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.domain.validation import (
    aware_datetime_problem,
    callable_problem,
    limit_problem,
    window_problem,
)
from reactive_entities.domain.writes import Planned, plan_write, validate_state
from reactive_entities.shell_checks import check_id, checked_actor, takes_connection

if TYPE_CHECKING:
    from reactive_entities.engine_core import EngineCore

__all__ = ["KindCore"]

S = TypeVar("S")
Read = Callable[..., Any]


class KindCore(Generic[S]):
    """The kind's schema and ``read``, and every check a handle makes."""

    def __init__(self, engine: EngineCore[Any], schema: Schema, read: Read) -> None:
        self._core = engine
        self._schema = schema
        self._read = read
        self._read_takes_connection = takes_connection(read)
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
        name = self._schema.state_class.__name__
        return f"<{type(self).__name__} {self._kind} ({name})>"

    # -- argument checks ------------------------------------------------------------------

    def _ref(self, entity_id: str) -> str:
        return f"{self._kind}:{entity_id}"

    def _check_field(self, field: str) -> None:
        if field not in self._schema.field_set:
            raise UnknownFieldError(
                f'"{field}" is not a field of kind "{self._kind}" '
                f"(fields: {', '.join(self._schema.fields)})"
            )

    def _check_query(self, entity_id: str, field: str) -> None:
        check_id(entity_id)
        self._check_field(field)
        self._core._check_open()

    def _check_write(self, entity_id: str, apply: object, actor: Actor | None) -> Actor:
        """A write's id and ``apply`` checked; its actor (``SYSTEM_ACTOR`` for None)."""
        check_id(entity_id)
        if not callable(apply):
            raise InvalidArgumentError(f"apply {callable_problem(apply)} ({self._ref(entity_id)})")
        return checked_actor(actor)

    def _check_tx(self, tx: object, entity_id: str) -> None:
        if getattr(tx, "_engine", None) is not self._core:
            raise InvalidArgumentError(
                f"tx must be a transaction of this engine (got {type(tx).__name__}; "
                f"{self._ref(entity_id)})"
            )

    def _check_window(self, entity_id: str, field: str, window: timedelta) -> None:
        self._check_query(entity_id, field)
        problem = window_problem(window)
        if problem is not None:
            raise InvalidArgumentError(f"window {problem} ({self._ref(entity_id)}.{field})")

    def _check_at(self, entity_id: str, field: str, at: datetime) -> None:
        self._check_query(entity_id, field)
        problem = aware_datetime_problem(at)
        if problem is not None:
            raise InvalidArgumentError(f"at {problem} ({self._ref(entity_id)}.{field})")

    def _check_log_query(
        self, entity_id: str, field: str | None, since: datetime | None, limit: int | None
    ) -> None:
        """``history`` and ``changes``: the id, the field, ``since`` and ``limit``."""
        check_id(entity_id)
        if field is not None:
            self._check_field(field)
        for name, problem in (
            ("since", None if since is None else aware_datetime_problem(since)),
            ("limit", None if limit is None else limit_problem(limit)),
        ):
            if problem is not None:
                raise InvalidArgumentError(f"{name} {problem} ({self._ref(entity_id)})")
        self._core._check_open()

    def _ids_of(self, entity_ids: Iterable[str]) -> list[str]:
        """``get_many``'s ids, checked and de-duplicated in first-seen order."""
        if isinstance(entity_ids, str | bytes):
            raise InvalidArgumentError(
                f'get_many of kind "{self._kind}" takes an iterable of ids, not a single str'
            )
        given = list(entity_ids)
        for entity_id in given:
            check_id(entity_id)
        self._core._check_open()
        return list(dict.fromkeys(given))

    @property
    def _query_failure(self) -> str:
        return f'store query failed for kind "{self._kind}"'

    # -- what read and apply returned -----------------------------------------------------

    def _checked_mapping(self, found: object, ids: Sequence[str]) -> Mapping[str, Any]:
        """What ``read`` returned, which must be a mapping of id to state."""
        if type(found) is not dict and not isinstance(found, Mapping):
            raise StateValidationError(
                self._kind,
                ids[0] if len(ids) == 1 else None,
                {"$": f"read must return a mapping of id to state (got {type(found).__name__})"},
                "value returned by read",
            )
        return found

    def _state_of(
        self, found: Mapping[str, Any], entity_id: str, secrets: SecretSet
    ) -> tuple[Any, Document | None]:
        """``(state, document)`` of the entity in ``read``'s answer; ``(None, None)``
        when absent."""
        value = found.get(entity_id)
        if value is None:
            return None, None
        doc = self._schema.instance_document(value)  # every write's common case, inline
        if doc is not None:
            return value, doc
        return self._validated(value, entity_id, secrets, "read")

    def _states_of(
        self, found: Mapping[str, Any], ids: Sequence[str], secrets: SecretSet
    ) -> dict[str, S]:
        """``get_many``'s answer: the states of the ids ``read`` found, in ``ids`` order."""
        return {
            entity_id: self._validated(found[entity_id], entity_id, secrets, "read")[0]
            for entity_id in ids
            if entity_id in found
        }

    def _validated(
        self, value: object, entity_id: str, secrets: SecretSet, source: str
    ) -> tuple[Any, Document]:
        checked = validate_state(self._schema, entity_id, value, secrets, source)
        if type(checked) is Failure:  # not isinstance: ABC checks cost 5x more
            raise checked.failure()
        return checked.unwrap()

    def _plan(
        self,
        entity_id: str,
        prev_doc: Document | None,
        result: object,
        *,
        removing: bool,
        actor: Actor,
        run_id: str | None,
        secrets: SecretSet,
    ) -> Planned:
        """Validate what ``apply`` returned and plan the change (raising on failure)."""
        planned = plan_write(
            self._schema,
            entity_id,
            prev_doc,
            result,
            removing=removing,
            actor=actor,
            run_id=run_id,
            secrets=secrets,
            change_id=self._core._new_change_id(),
        )
        if type(planned) is Failure:  # not isinstance: ABC checks cost 5x more
            raise planned.failure()
        return planned.unwrap()

"""The PostgreSQL store's operations, independent of the driver's flavour.

Each read of the log is a :class:`~reactive_entities.adapters.postgres.dialogue.Dialogue`
built here — its statement, its parameters, how its rows become records and what a
failure message says — and run by the synchronous store (``store.py``) or the asyncio
one (``async_store.py``) on a connection of its own kind. The parameters of a recorded
change and the check that settles a lost ``COMMIT`` live here for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from reactive_entities.adapters.postgres.codec import (
    bool_array,
    change_record,
    encode_json,
    text_array,
    transition_record,
    utc,
)
from reactive_entities.adapters.postgres.dialogue import Dialogue, Pause, Statement, Steps
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.queries import Queries, schema_problem
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import ABSENT, ChangeRecord, Plan, TransitionRecord
from reactive_entities.domain.validation import limit_problem
from reactive_entities.ports.clock import Clock

__all__ = [
    "StoreOperations",
    "checked_schema",
    "checked_timeout",
    "checked_pool_size",
    "first_line",
    "ref",
]


def ref(kind: str, entity_id: str) -> str:
    """``kind:id`` for a message, a long id shortened."""
    if len(entity_id) <= 120:
        return f"{kind}:{entity_id}"
    return f"{kind}:{entity_id[:120]}… ({len(entity_id)} characters)"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def checked_schema(schema: object) -> str:
    """``schema`` when it can name the library's schema, else ``InvalidArgumentError``."""
    problem = schema_problem(schema)
    if problem is not None:
        raise InvalidArgumentError(f"schema {problem} (got {schema!r:.80})")
    assert isinstance(schema, str)
    return schema


def checked_timeout(timeout: object) -> timedelta:
    """``timeout`` when it is a positive ``timedelta``, else ``InvalidArgumentError``."""
    if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
        raise InvalidArgumentError(
            f"lock_timeout must be a positive timedelta (got {timeout!r:.60})"
        )
    return timeout


def checked_pool_size(pool_size: object) -> int:
    """``pool_size`` when it is a positive int, else ``InvalidArgumentError``."""
    if type(pool_size) is not int or pool_size < 1:
        raise InvalidArgumentError(f"pool_size must be a positive int (got {pool_size!r})")
    return pool_size


class StoreOperations:
    """The statements, parameters and decoding of one schema's store (either flavour)."""

    __slots__ = ("_actor_json", "clock", "keys", "queries", "schema")

    def __init__(self, schema: str, clock: Clock | None) -> None:
        self.schema = schema
        self.clock = clock
        self.queries = Queries.for_schema(schema)
        self.keys = EntityKeys(schema)
        # The last actor's JSON: most changes are made by one actor (often SYSTEM_ACTOR).
        self._actor_json: tuple[object, str] = (None, "")

    # -- reads -----------------------------------------------------------------------------

    def now(self) -> Dialogue[datetime]:
        """The database's ``clock_timestamp()`` (a store with a clock asks the clock)."""

        def steps() -> Steps[datetime]:
            rows = yield Statement(self.queries.now, (), prepare=True)
            return utc(rows[0][0])

        return Dialogue("read the database clock", steps, retry=True)

    def latest_transition(
        self, kind: str, entity_id: str, field: str, at: datetime | None
    ) -> Dialogue[TransitionRecord | None]:
        """The field's newest row stamped at or before ``at`` (or newest overall)."""
        params = (self.keys.entity_key(kind, entity_id), field, at, kind, entity_id)

        def steps() -> Steps[TransitionRecord | None]:
            rows = yield Statement(self.queries.latest_transition, params, prepare=True)
            return transition_record(kind, entity_id, rows[0]) if rows else None

        what = f"read the latest {field} transition of {ref(kind, entity_id)}"
        return Dialogue(what, steps, retry=True)

    def latest_change(
        self, kind: str, entity_id: str, at: datetime | None
    ) -> Dialogue[ChangeRecord | None]:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        params = (self.keys.entity_key(kind, entity_id), at, kind, entity_id)

        def steps() -> Steps[ChangeRecord | None]:
            rows = yield Statement(self.queries.latest_change, params, prepare=True)
            return change_record(kind, entity_id, rows[0]) if rows else None

        return Dialogue(f"read the latest change of {ref(kind, entity_id)}", steps, retry=True)

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None,
    ) -> Dialogue[int]:
        """Rows of the field with ``since ≤ transitioned_at ≤ until``; ``until`` None is
        the store's now (the database's, in the same statement)."""
        if until is None and self.clock is not None:
            until = self.clock.now()
        window: timedelta | None = None
        start: datetime | None = None
        if isinstance(since, timedelta):
            if until is None:
                window = since
            else:
                start = until - since
        else:
            start = since
        params = {
            "key": self.keys.entity_key(kind, entity_id),
            "field": field,
            "until": until,
            "since": start,
            "window": window,
            "kind": kind,
            "entity_id": entity_id,
        }

        def steps() -> Steps[int]:
            rows = yield Statement(self.queries.count_transitions, params, prepare=True)
            return int(rows[0][0])

        what = f"count {field} transitions of {ref(kind, entity_id)}"
        return Dialogue(what, steps, retry=True)

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None,
        since: datetime | None,
        limit: int | None,
    ) -> Dialogue[Sequence[TransitionRecord]]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        problem = None if limit is None else limit_problem(limit)
        if problem is not None:
            raise InvalidArgumentError(f"limit {problem} ({ref(kind, entity_id)})")
        key = self.keys.entity_key(kind, entity_id)
        if field is None:
            statement = Statement(
                self.queries.entity_transitions,
                (key, since, limit, kind, entity_id),
                prepare=True,
            )
        else:
            statement = Statement(
                self.queries.field_transitions,
                (key, field, since, limit, kind, entity_id),
                prepare=True,
            )

        def steps() -> Steps[Sequence[TransitionRecord]]:
            rows = yield statement
            return tuple(transition_record(kind, entity_id, row) for row in rows)

        return Dialogue(f"read the transitions of {ref(kind, entity_id)}", steps, retry=True)

    # -- writes ----------------------------------------------------------------------------

    def record_params(self, plan: Plan, at: datetime) -> dict[str, Any]:
        """The parameters of ``queries.record`` for ``plan`` stamped ``at``."""
        rows = plan.transitions
        prev = plan.prev
        nxt = plan.next
        actor = plan.actor
        last_actor, actor_json = self._actor_json
        if last_actor is not actor:
            actor_json = encode_json(actor.to_dict())
            self._actor_json = (actor, actor_json)
        return {
            "at": at,
            "key": self.keys.entity_key(plan.kind, plan.entity_id),
            "change_id": plan.change_id,
            "kind": plan.kind,
            "entity_id": plan.entity_id,
            "op": plan.op,
            "actor": actor_json,
            "run_id": plan.run_id,
            "prev": None if prev is None else encode_json(prev),
            "next": None if nxt is None else encode_json(nxt),
            "delta": encode_json(plan.delta),
            "changed_fields": text_array(plan.changed_fields),
            "fields": text_array([t.field for t in rows]),
            "from_values": text_array(
                [None if t.from_value is ABSENT else encode_json(t.from_value) for t in rows]
            ),
            "to_values": text_array([encode_json(t.to_value) for t in rows]),
            "masked": bool_array([t.masked for t in rows]),
        }

    def recorded_after_session_end(
        self, pid: int, change_ids: Sequence[str], wait: float
    ) -> Steps[set[str]]:
        """Which of ``change_ids`` are recorded, asked (on a fresh connection) once the
        session ``pid`` — whose ``COMMIT`` may or may not have happened — has ended, so
        the answer cannot change afterwards. ``TimeoutError`` when it does not end."""
        deadline = time.monotonic() + wait
        yield Statement("SELECT pg_terminate_backend(%s)", (pid,))
        while (yield Statement("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {pid} did not end")
            yield Pause(0.01)
        rows = yield Statement(self.queries.recorded, (list(change_ids),))
        return {row[0] for row in rows}

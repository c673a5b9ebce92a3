"""Model-based stateful tests: engines over different stores must be indistinguishable.

Two hypothesis state machines (STYLE §6, after hypothesis' ``DatabaseComparison``):

* :class:`MemoryVsPostgres` — an in-memory engine and a PostgreSQL engine (a fresh schema
  per run), sharing one :class:`ManualClock`, each over its own plugin storage, receive
  the same random writes; every query rule asks both and demands the same answer.
* :class:`TwoPostgresEnginesVsModel` — two PostgreSQL engines on two pools sharing one
  schema (and, like two processes of one application, one plugin storage) are written
  through alternately; an in-memory engine receiving every write is the model, and all
  three must answer every query alike (SPEC §11).

The machines share their rules (:class:`EngineComparison`). After every step the
invariants check, for each log: no secret a run had registered when it wrote survives in
that write's event, stored change or transition rows (sensitive fields are ``****``);
each field's rows form a chain (``from_value`` continues the previous ``to_value``, a
create starts from ``ABSENT``, removes record no rows); the stores hold exactly one change
row per event (counted by SQL for PostgreSQL) and never rewrite a row; subscribers get
exactly the matching events; and no value handed to an engine was mutated.

Documents are compared structurally (canonical JSON), timestamps exactly, and rows by
the position of their change in the log instead of by ``change_id`` (random per engine).
A known, intended difference between engines would be declared in ONE place,
:func:`known_divergence`, and ``assume``d away there; there is none today.
"""

from __future__ import annotations

import copy
import enum
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from secrets import token_hex
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

import attrs
import psycopg
from hypothesis import HealthCheck, assume, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from reactive_entities import (
    ABSENT,
    Actor,
    ChangeEvent,
    Engine,
    MissingStateError,
    ReactiveEntitiesError,
    StateValidationError,
    Subscription,
    TransitionRecord,
    compose,
)
from reactive_entities.adapters.memory import InMemoryEntityStore, ManualClock
from reactive_entities.adapters.postgres.connections import open_pool
from reactive_entities.domain.actor import ACTOR_TYPES
from reactive_entities.domain.events import Absent
from reactive_entities.domain.json import JSONValue, canonical_json, structurally_equal
from reactive_entities.domain.masking import TOKEN
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.testing.laws import same_value, surviving_secrets
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.strategies import SECRET_ALPHABET, aware_datetimes

T = TypeVar("T")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
ZONES = (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30)))

# -- the plugin's state classes ---------------------------------------------------------


class Status(enum.Enum):
    """A ticket's status (a plain enum with string values)."""

    OPEN = "open"
    ACKED = "acked"
    CLOSED = "closed"


class Level(enum.IntEnum):
    """A probe's level (an ``IntEnum``)."""

    LOW = 1
    MID = 2
    HIGH = 3


@attrs.frozen
class Ticket:
    """An enum, text, an optional text and datetime, a list, and a token worth hiding."""

    status: Status
    title: str
    assignee: str | None = None
    due: datetime | None = None
    labels: list[str] = attrs.Factory(list)
    token: str = ""


@attrs.frozen
class Probe:
    """Nested dicts and lists of floats, strings and datetimes; an ``IntEnum``."""

    level: Level
    readings: dict[str, list[float]] = attrs.Factory(dict)
    seen: list[datetime] = attrs.Factory(list)
    meta: dict[str, dict[str, str]] = attrs.Factory(dict)
    ratio: float = 0.0
    secret: str | None = None


@attrs.frozen
class Switch:
    """A flag, an unbounded int, a set and a note."""

    on: bool
    count: int = 0
    tags: frozenset[str] = frozenset()
    note: str = ""


# -- strategies -------------------------------------------------------------------------

#: Text values of states: the characters secrets are made of, plus a few that JSON,
#: SQL and UTF-8 treat specially.
FRESH_TEXT = st.text(SECRET_ALPHABET + "%{}$😀\u2028", max_size=8)
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**53), 2**53).map(float),
    st.sampled_from((0.0, -0.0, 0.1, 1e16, -1e300, 5e-324, 2.5e-7)),
)
INTS = st.one_of(st.integers(), st.sampled_from((0, -1, 2**63, -(2**64) - 1, 10**40)))
ENTITY_ID_VALUES = st.one_of(
    st.sampled_from(("A", "B", "C", "o'brien", "Ωμέγα", "x; DROP TABLE t;--", "%s", "L" * 300)),
    st.text("ABCDEFGHIJ-_.:/ ", min_size=1, max_size=6).filter(str.strip),
)
KIND_NAMES = ("ticket", "probe", "switch", "Ticket", "ticket.v2")
RUN_IDS = ("RUN-1", "RUN-2", "RUN-3")
#: How long a write waits before it runs (zero: its stamp ties with the previous one).
WAITS = st.sampled_from((timedelta(0), MICRO, timedelta(seconds=1), timedelta(minutes=5)))
WINDOWS = (MICRO, timedelta(seconds=1), timedelta(days=1), timedelta(days=10_000))
INVALID_WINDOWS = (timedelta(0), -MICRO)

KINDS: Bundle[str] = Bundle("kinds")
ENTITY_IDS: Bundle[str] = Bundle("entity_ids")
TEXTS: Bundle[str] = Bundle("texts")
WATCHES: Bundle[int] = Bundle("watches")

#: A text for a state: one already seen (so secrets drawn from them occur) or a new one.
TEXT_VALUES = st.one_of(TEXTS, FRESH_TEXT)
RUN_ID_VALUES = st.none() | st.sampled_from(RUN_IDS)
ACTORS = st.none() | st.builds(
    Actor,
    type=st.sampled_from(ACTOR_TYPES),
    id=TEXT_VALUES.map(lambda text: f"user {text}"),
    name=st.none() | TEXT_VALUES,
)


def ticket_states(text: st.SearchStrategy[str]) -> st.SearchStrategy[Ticket]:
    """Tickets whose texts come from ``text``."""
    return st.builds(
        Ticket,
        status=st.sampled_from(Status),
        title=text,
        assignee=st.none() | text,
        due=st.none() | aware_datetimes(),
        labels=st.lists(text, max_size=3),
        token=text,
    )


def probe_states(text: st.SearchStrategy[str]) -> st.SearchStrategy[Probe]:
    """Probes whose texts come from ``text``."""
    return st.builds(
        Probe,
        level=st.sampled_from(Level),
        readings=st.dictionaries(text, st.lists(FLOATS, max_size=3), max_size=3),
        seen=st.lists(aware_datetimes(), max_size=2),
        meta=st.dictionaries(text, st.dictionaries(text, text, max_size=2), max_size=2),
        ratio=FLOATS,
        secret=st.none() | text,
    )


def switch_states(text: st.SearchStrategy[str]) -> st.SearchStrategy[Switch]:
    """Switches whose texts come from ``text``."""
    return st.builds(
        Switch,
        on=st.booleans(),
        count=INTS,
        tags=st.frozensets(text, max_size=3),
        note=text,
    )


@attrs.frozen
class KindSpec:
    """A state class with what the machine needs to make valid and invalid states."""

    cls: type[Any]
    states: Callable[[st.SearchStrategy[str]], st.SearchStrategy[Any]]
    required: str  # a field without a default
    text_field: str  # a str field
    number_field: str | None  # a float field
    sensitive_choices: tuple[tuple[str, ...], ...]
    naive: Callable[[Any], Any] | None  # the state holding a naive datetime

    @property
    def fields(self) -> tuple[str, ...]:
        """The state's field names."""
        return tuple(a.name for a in attrs.fields(self.cls))


NAIVE = datetime(2024, 5, 6, 7, 8, 9)  # noqa: DTZ001 - invalid on purpose
SPECS: dict[str, KindSpec] = {
    "Ticket": KindSpec(
        Ticket,
        ticket_states,
        "status",
        "title",
        None,
        ((), ("token",), ("token", "assignee")),
        lambda s: attrs.evolve(s, due=NAIVE),
    ),
    "Probe": KindSpec(
        Probe,
        probe_states,
        "level",
        "secret",
        "ratio",
        ((), ("secret",), ("meta",)),
        lambda s: attrs.evolve(s, seen=[*s.seen, NAIVE]),
    ),
    "Switch": KindSpec(Switch, switch_states, "on", "note", None, ((), ("note",)), None),
}
#: Arguments every write must refuse, by name.
BAD_ARGUMENTS: dict[str, dict[str, str]] = {
    "an empty id": {"entity_id": ""},
    "a blank id": {"entity_id": " \t"},
    "a NUL in the id": {"entity_id": "nul\x00"},
    "a lone surrogate in the id": {"entity_id": "lone\udc80surrogate"},
    "a lone surrogate in the actor id": {"actor_id": "user\udc80"},
    "a lone surrogate in the actor name": {"actor_name": "name\udc80"},
    "a blank run id": {"run_id": " "},
    "a lone surrogate in the run id": {"run_id": "RUN\udc80"},
}
MAPPING_FORMS = ("document", "python mapping", "sparse document")
INVALID_HOWS = (
    "unknown key",
    "missing field",
    "wrong type",
    "NUL in text",
    "lone surrogate",
    "NaN",
    "naive datetime",
    "not a mapping",
    "other class",
    "None",
)

# -- what the machine keeps -------------------------------------------------------------


@attrs.frozen
class StoredChange:
    """A change row as a store keeps it (documents only where the store exposes them)."""

    change_id: str
    op: str
    run_id: str | None
    occurred_at: datetime
    changed_fields: tuple[str, ...]
    documents: tuple[JSONValue, ...]  # PostgreSQL: prev, next, delta, actor; memory: ()


@attrs.frozen
class StoredRow:
    """A transition row as a store keeps it."""

    change_id: str
    field: str
    from_value: JSONValue | Absent
    to_value: JSONValue
    masked: bool
    transitioned_at: datetime


EntityKey: TypeAlias = tuple[str, str]
Dump: TypeAlias = dict[EntityKey, tuple[tuple[StoredChange, ...], tuple[StoredRow, ...]]]
Outcome: TypeAlias = tuple[object, ...]


@attrs.define(eq=False)
class World:
    """A plugin's storage and one transition log, seen through one or more engines."""

    name: str
    dump: Callable[[], Dump]
    storages: dict[str, DictStorage[Any]] = attrs.Factory(dict)
    #: Every event of this log, in recording order (whichever engine emitted it).
    events: list[ChangeEvent] = attrs.Factory(list)
    #: change id → the secrets its run had when it was written.
    secrets_at: dict[str, SecretSet] = attrs.Factory(dict)
    #: entity → the log's length each time the plugin changed the entity without the
    #: engine: the next row of each field need not continue the chain there.
    drifts: dict[EntityKey, list[int]] = attrs.Factory(dict)
    last_dump: Dump = attrs.Factory(dict)

    def storage(self, kind: str) -> DictStorage[Any]:
        """The plugin's storage for ``kind``."""
        return self.storages.setdefault(kind, DictStorage())

    def ordinals(self) -> dict[str, int]:
        """change id → its position in the log."""
        return {event.change_id: i for i, event in enumerate(self.events)}

    def written(self, since: int, secrets: SecretSet) -> None:
        """Remember the secrets of the events recorded since index ``since``."""
        for event in self.events[since:]:
            self.secrets_at[event.change_id] = secrets

    def drifted(self, key: EntityKey, after: int, upto: int) -> bool:
        """Whether the plugin changed the entity behind the engine's back after the
        change at position ``after`` (-1: from the start) and before ``upto``."""
        return any(after < drift <= upto for drift in self.drifts.get(key, ()))


@attrs.define(eq=False)
class Side:
    """One engine and the world it works in."""

    name: str
    engine: Engine
    world: World


@attrs.define(eq=False)
class Watch:
    """A subscription made on every engine, with what each world's handlers received."""

    kind: str | None
    fields: frozenset[str] | None
    start: dict[str, int]  # world name → events recorded before subscribing
    end: dict[str, int] = attrs.Factory(dict)  # world name → events recorded at cancel
    received: dict[str, list[ChangeEvent]] = attrs.Factory(dict)
    subscriptions: list[Subscription] = attrs.Factory(list)


class PluginWriteError(RuntimeError):
    """What a failing ``apply`` raises."""


# -- normal forms of answers ------------------------------------------------------------


def json_form(value: JSONValue | Absent) -> str:
    """Canonical JSON of a value; ``ABSENT`` stays distinct from every JSON value."""
    return "ABSENT" if isinstance(value, Absent) else canonical_json(value)


def instant(moment: datetime | None) -> str | None:
    """An aware datetime as ISO text (the offset included, so non-UTC answers show)."""
    return None if moment is None else moment.isoformat()


def event_form(event: ChangeEvent) -> Outcome:
    """Every field of an event but ``change_id``; documents canonical."""
    return (
        event.kind,
        event.entity_id,
        event.op,
        None if event.prev is None else canonical_json(event.prev),
        None if event.next is None else canonical_json(event.next),
        canonical_json(event.delta),
        event.changed_fields,
        event.actor,
        event.run_id,
        instant(event.occurred_at),
    )


def record_form(record: TransitionRecord, ordinals: dict[str, int]) -> Outcome:
    """Every field of a row; ``change_id`` as the position of its change in the log."""
    return (
        record.kind,
        record.entity_id,
        record.field,
        json_form(record.from_value),
        json_form(record.to_value),
        record.masked,
        ordinals.get(record.change_id, f"unknown change {record.change_id}"),
        instant(record.transitioned_at),
    )


def attempt(call: Callable[[], object]) -> Outcome:
    """``("returned", value)``, or ``("raised", type, message)`` for a library error."""
    try:
        return ("returned", call())
    except ReactiveEntitiesError as error:
        return ("raised", type(error).__name__, str(error))


def known_divergence(what: str, outcomes: Sequence[tuple[str, Outcome]]) -> bool:
    """THE one place for known, intended differences between engines' answers.

    Return True for a difference that is by design (and say why here): the comparison
    then ``assume``s it away, discarding the example. There is none: every engine
    answers every query identically.
    """
    del what, outcomes
    return False


def same_input(snapshot: object, live: object) -> bool:
    """Whether ``live`` still equals its snapshot, built alike all the way down."""
    cls: Any = type(snapshot)
    if attrs.has(cls):
        return cls is type(live) and all(
            same_input(getattr(snapshot, a.name), getattr(live, a.name)) for a in attrs.fields(cls)
        )
    return same_value(snapshot, live)


def strings_in(value: object) -> Iterator[str]:
    """Every string inside a JSON value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def field_values(doc: object) -> Iterator[str]:
    """Strings of a document's values (top-level keys are field names: never masked)."""
    if isinstance(doc, dict):
        for value in doc.values():
            yield from strings_in(value)


def require_no_secret(texts: Iterator[str], secrets: SecretSet, where: str) -> None:
    """Fail if a maskable secret survives in any of ``texts``."""
    for text in texts:
        found = surviving_secrets(text, secrets)
        if found:
            raise AssertionError(f"secret(s) {found!r} survive in {where}: {text!r}")


# -- dumps of what the stores hold ------------------------------------------------------


def memory_dump(engine: Engine, world: World) -> Callable[[], Dump]:
    """What the in-memory store holds for every entity the world's events mention."""

    def dump() -> Dump:
        store = engine.store
        assert isinstance(store, InMemoryEntityStore)
        out: Dump = {}
        for kind, entity_id in dict.fromkeys((e.kind, e.entity_id) for e in world.events):
            changes = tuple(
                StoredChange(
                    c.change_id, c.op, c.run_id, c.occurred_at, c.changed_fields, documents=()
                )
                for c in store.changes(kind, entity_id)
            )
            rows = tuple(
                StoredRow(
                    r.change_id, r.field, r.from_value, r.to_value, r.masked, r.transitioned_at
                )
                for r in store.transitions(kind, entity_id)
            )
            out[(kind, entity_id)] = (changes, rows)
        counted = (store.changes_recorded, store.rows_recorded)
        actual = (sum(len(c) for c, _ in out.values()), sum(len(r) for _, r in out.values()))
        if counted != actual:
            raise AssertionError(f"memory store counts {counted} ≠ rows it holds {actual}")
        return out

    return dump


def postgres_dump(db: psycopg.Connection[Any], schema: str) -> Callable[[], Dump]:
    """What the PostgreSQL schema holds, read by plain SQL (not through the store)."""
    changes_query = sql.SQL(
        "SELECT kind, entity_id, change_id::text, op, run_id, occurred_at, changed_fields,"
        " prev::text, next::text, delta::text, actor::text FROM {} ORDER BY position"
    ).format(sql.Identifier(schema, "changes"))
    rows_query = sql.SQL(
        "SELECT kind, entity_id, change_id::text, field, from_value::text, to_value::text,"
        " masked, transitioned_at FROM {} ORDER BY id"
    ).format(sql.Identifier(schema, "transitions"))

    def decode(text: str | None) -> JSONValue:
        value: JSONValue = None if text is None else json.loads(text)
        return value

    def dump() -> Dump:
        changes: dict[EntityKey, list[StoredChange]] = {}
        rows: dict[EntityKey, list[StoredRow]] = {}
        for kind, entity_id, cid, op, run_id, at, fields, *docs in db.execute(changes_query):
            changes.setdefault((kind, entity_id), []).append(
                StoredChange(cid, op, run_id, at, tuple(fields), tuple(map(decode, docs)))
            )
        for kind, entity_id, cid, field, from_text, to_text, masked, at in db.execute(rows_query):
            from_value: JSONValue | Absent = ABSENT if from_text is None else decode(from_text)
            rows.setdefault((kind, entity_id), []).append(
                StoredRow(cid, field, from_value, decode(to_text), masked, at)
            )
        keys = dict.fromkeys([*changes, *rows])
        return {key: (tuple(changes.get(key, ())), tuple(rows.get(key, ()))) for key in keys}

    return dump


# -- the shared rules -------------------------------------------------------------------


class EngineComparison(RuleBasedStateMachine):
    """Rules and invariants shared by both machines; subclasses build the sides."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.model: Side
        self.replicas: list[Side] = []
        self.specs: dict[str, KindSpec] = {}
        self.sensitive: dict[str, frozenset[str]] = {}
        #: The plugin's current state per entity (every world's storage must agree).
        self.expected: dict[EntityKey, Any] = {}
        #: The secret registry as a model: run id → values registered since its drop.
        self.runs: dict[str, list[str]] = {}
        #: (what, snapshot, live) for every value handed to an engine.
        self.inputs: list[tuple[str, object, object]] = []
        self.watches: dict[int, Watch] = {}
        #: Writes since the clock last moved (moving it twice in a row adds nothing).
        self.writes_since_tick = 0
        #: Writes attempted, and how many of them the stored logs were last checked after.
        self.writes = 0
        self.logs_checked_after = -1

    # -- structure (overridden) ----------------------------------------------------------

    @property
    def sides(self) -> list[Side]:
        """Every engine, the model first."""
        return [self.model, *self.replicas]

    def writers(self) -> list[Side]:
        """The engines a write goes through: one per world."""
        return self.sides

    def worlds(self) -> list[World]:
        """Each world once."""
        return list({id(side.world): side.world for side in self.sides}.values())

    # -- helpers -------------------------------------------------------------------------

    def agree(self, what: str, outcomes: Sequence[tuple[str, Outcome]]) -> Outcome:
        """The common outcome of every engine, or a failure showing each one."""
        _, first = outcomes[0]
        if any(o != first for _, o in outcomes[1:]):
            assume(not known_divergence(what, outcomes))  # the one documented spot
            lines = "\n".join(f"  {name}: {o!r}" for name, o in outcomes)
            raise AssertionError(f"engines disagree on {what}:\n{lines}")
        note(f"{what} → {first!r}")
        return first

    def ask(self, what: str, query: Callable[[Side], object]) -> Outcome:
        """Ask every engine the same question and require the same answer."""
        return self.agree(
            what,
            [(side.name, attempt(lambda: query(side))) for side in self.sides],  # noqa: B023
        )

    def secrets_of(self, run_id: str | None) -> SecretSet:
        """The secrets ``run_id`` has registered now (as the model registry says)."""
        if run_id is None:
            return EMPTY_SECRETS
        return SecretSet.of(self.runs.get(run_id, ()))

    def fields(self, kind: str) -> tuple[str, ...]:
        """The fields of ``kind``'s state class."""
        return self.specs[kind].fields

    def document(self, state: Any) -> dict[str, JSONValue]:
        """A state's document, by the model engine's converter."""
        doc: dict[str, JSONValue] = self.model.engine.converter.unstructure(state)
        return doc

    def hand_over(self, what: str, value: T) -> T:
        """Register ``value`` as handed to an engine, to check it is never mutated."""
        self.inputs.append((what, copy.deepcopy(value), value))
        return value

    def write(
        self,
        what: str,
        run_id: str | None,
        call: Callable[[Side], object],
        *,
        form: Callable[[object], object] = lambda result: result,
        wait: timedelta = timedelta(0),
    ) -> Outcome:
        """Run one write through each writer (``wait`` after the clock's now); the
        outcomes must agree."""
        if wait:
            note(f"now = {self.clock.advance(wait).isoformat()}")
        secrets = self.secrets_of(run_id)
        self.writes_since_tick += 1
        self.writes += 1
        outcomes = []
        for side in self.writers():
            before = len(side.world.events)
            outcome = attempt(lambda: form(call(side)))  # noqa: B023 - called at once
            side.world.written(before, secrets)
            outcomes.append((side.name, outcome))
        return self.agree(what, outcomes)

    def state_form(self, state: object) -> Outcome | None:
        """A state as its class name and canonical document."""
        if state is None:
            return None
        return (type(state).__name__, canonical_json(self.document(state)))

    def handed(self, spec: KindSpec, state: Any, form: str) -> object:
        """What ``apply`` returns for ``state`` in the given form."""
        if form == "instance":
            return state
        if form == "document":
            return self.document(state)
        if form == "python mapping":
            return {a.name: getattr(state, a.name) for a in attrs.fields(spec.cls)}
        doc = self.document(state)
        for a in attrs.fields(spec.cls):
            default = a.default
            factory = getattr(default, "factory", None)
            if factory is not None:
                default = factory()
            if default is not attrs.NOTHING and same_value(getattr(state, a.name), default):
                del doc[a.name]
        return doc

    def instants(self, kind: str, entity_id: str) -> list[datetime]:
        """Instants worth asking about: each stamp of the entity, just before and after
        it, between stamps, before everything, now and later."""
        stamps = sorted(
            {
                e.occurred_at
                for e in self.model.world.events
                if (e.kind, e.entity_id) == (kind, entity_id)
            }
        )
        now = self.clock.now()
        found = {T0 - timedelta(seconds=1), now, now + timedelta(hours=1)}
        for stamp in stamps:
            found.update((stamp, stamp - MICRO, stamp + MICRO))
        for a, b in itertools.pairwise(stamps):
            found.add(a + (b - a) / 2)
        return sorted(found)

    def set_plugin_state(self, world: World, kind: str, entity_id: str, state: Any) -> None:
        """Write the plugin's storage directly (as the plugin itself would)."""
        rows = world.storage(kind).rows
        if state is None:
            rows.pop(entity_id, None)
        else:
            rows[entity_id] = self.hand_over(f"{world.name} {kind}:{entity_id}", state)

    def drift(self, kind: str, entity_id: str, new: Any) -> None:
        """Note that the plugin's state of an entity changed without a recorded change."""
        key = (kind, entity_id)
        old = self.expected.get(key)
        old_doc = None if old is None else canonical_json(self.document(old))
        new_doc = None if new is None else canonical_json(self.document(new))
        if old_doc != new_doc:
            for world in self.worlds():
                world.drifts.setdefault(key, []).append(len(world.events))
        if new is None:
            self.expected.pop(key, None)
        else:
            self.expected[key] = new

    # -- bundles ---------------------------------------------------------------------------

    @initialize(target=TEXTS, values=st.lists(FRESH_TEXT, min_size=2, max_size=4))
    def seed_texts(self, values: list[str]) -> MultipleResults[str]:
        """Start with a few text values."""
        return multiple(*values)

    @initialize(target=ENTITY_IDS, ids=st.lists(ENTITY_ID_VALUES, min_size=1, max_size=2))
    def seed_entity_ids(self, ids: list[str]) -> MultipleResults[str]:
        """Start with an entity id or two."""
        return multiple(*ids)

    @initialize(target=KINDS, spec=st.sampled_from(sorted(SPECS)), data=st.data())
    def seed_kind(self, spec: str, data: st.DataObject) -> str | MultipleResults[str]:
        """Start with one kind."""
        return self.define_kind(KIND_NAMES[0], spec, data)

    @precondition(lambda self: len(self.bundle("texts")) < 12)
    @rule(target=TEXTS, text=FRESH_TEXT)
    def new_text(self, text: str) -> str:
        """A new text value for states (and secrets)."""
        return text

    @precondition(lambda self: len(self.bundle("entity_ids")) < 5)
    @rule(target=ENTITY_IDS, entity_id=ENTITY_ID_VALUES)
    def new_entity_id(self, entity_id: str) -> str:
        """A new entity id."""
        return entity_id

    @precondition(lambda self: len(self.specs) < 3)
    @rule(
        target=KINDS,
        name=st.sampled_from(KIND_NAMES),
        spec=st.sampled_from(sorted(SPECS)),
        data=st.data(),
    )
    def define_kind(self, name: str, spec: str, data: st.DataObject) -> str | MultipleResults[str]:
        """Define a kind on every engine (a duplicate name must fail alike everywhere)."""
        kind_spec = SPECS[spec]
        sensitive = data.draw(st.sampled_from(kind_spec.sensitive_choices), label="sensitive")

        def define(side: Side) -> None:
            side.engine.define_entity(
                name, kind_spec.cls, read=side.world.storage(name).read, sensitive=sensitive
            )

        outcome = self.ask(f"define {name} as {spec} (sensitive {sensitive})", define)
        if outcome[0] == "raised":
            assert name in self.specs, f"defining new kind {name} failed: {outcome}"
            return multiple()
        self.specs[name] = kind_spec
        self.sensitive[name] = frozenset(sensitive)
        return name

    # -- writes ----------------------------------------------------------------------------

    @rule(
        kind=KINDS,
        entity_id=ENTITY_IDS,
        data=st.data(),
        run_id=RUN_ID_VALUES,
        actor=ACTORS,
        wait=WAITS,
    )
    def mutate(
        self,
        kind: str,
        entity_id: str,
        data: st.DataObject,
        run_id: str | None,
        actor: Actor | None,
        wait: timedelta,
    ) -> None:
        """Write a valid state, returned by ``apply`` as an instance, through every world."""
        state = data.draw(self.specs[kind].states(TEXT_VALUES), label="state")
        self.write_state(kind, entity_id, state, "instance", run_id, actor, wait)

    @rule(
        kind=KINDS,
        entity_id=ENTITY_IDS,
        data=st.data(),
        form=st.sampled_from(MAPPING_FORMS),
        run_id=RUN_ID_VALUES,
        actor=ACTORS,
        wait=WAITS,
    )
    def mutate_returning_a_mapping(
        self,
        kind: str,
        entity_id: str,
        data: st.DataObject,
        form: str,
        run_id: str | None,
        actor: Actor | None,
        wait: timedelta,
    ) -> None:
        """Write a valid state, returned by ``apply`` as a mapping, through every world."""
        state = data.draw(self.specs[kind].states(TEXT_VALUES), label="state")
        self.write_state(kind, entity_id, state, form, run_id, actor, wait)

    def write_state(
        self,
        kind: str,
        entity_id: str,
        state: Any,
        form: str,
        run_id: str | None,
        actor: Actor | None,
        wait: timedelta,
    ) -> None:
        """Store ``state`` in each world's plugin storage and return it from ``apply`` in
        the given form; every engine must return the state itself."""
        spec = self.specs[kind]

        def call(side: Side) -> object:
            stored = copy.deepcopy(state)
            returned = self.handed(spec, stored, form)
            storage = side.world.storage(kind)
            self.hand_over(f"{side.name} {kind}:{entity_id} stored", stored)
            self.hand_over(f"{side.name} {kind}:{entity_id} returned {form}", returned)

            def apply() -> object:
                storage.rows[entity_id] = stored
                return returned

            result = side.engine.handle(kind).mutate(entity_id, apply, actor=actor, run_id=run_id)
            assert result == state, f"{side.name} mutate returned {result!r}, not {state!r}"
            assert type(result) is spec.cls
            return result

        what = f"mutate {kind}:{entity_id} ({form})"
        self.write(what, run_id, call, form=self.state_form, wait=wait)
        self.expected[(kind, entity_id)] = state

    @precondition(lambda self: bool(self.expected))
    @rule(data=st.data(), run_id=RUN_ID_VALUES, wait=WAITS)
    def mutate_one_field(self, data: st.DataObject, run_id: str | None, wait: timedelta) -> None:
        """Change one field of an existing entity (the usual update), as an instance."""
        kind, entity_id = data.draw(st.sampled_from(sorted(self.expected)), label="entity")
        spec = self.specs[kind]
        field = data.draw(st.sampled_from(spec.fields), label="field")
        fresh = data.draw(spec.states(TEXT_VALUES), label="from state")
        state = attrs.evolve(self.expected[(kind, entity_id)], **{field: getattr(fresh, field)})
        note(f"{kind}:{entity_id}.{field} = {getattr(state, field)!r}")
        self.write_state(kind, entity_id, state, "instance", run_id, None, wait)

    @rule(
        kind=KINDS,
        entity_id=ENTITY_IDS,
        data=st.data(),
        how=st.sampled_from(INVALID_HOWS),
        run_id=RUN_ID_VALUES,
    )
    def mutate_with_invalid_state(
        self, kind: str, entity_id: str, data: st.DataObject, how: str, run_id: str | None
    ) -> None:
        """``apply`` returns something invalid: every engine raises alike, records nothing."""
        spec = self.specs[kind]
        state = data.draw(spec.states(TEXT_VALUES), label="state")
        doc = self.document(state)
        other = data.draw(
            st.sampled_from([s for s in SPECS.values() if s.cls is not spec.cls]), label="other"
        )
        bad: object
        if how == "unknown key":
            bad = {**doc, "no_such_field": 1}
        elif how == "missing field":
            bad = {k: v for k, v in doc.items() if k != spec.required}
        elif how == "wrong type":
            bad = {**doc, spec.required: [[]]}
        elif how == "NUL in text":
            bad = {**doc, spec.text_field: f"{doc.get(spec.text_field) or ''}\x00"}
        elif how == "lone surrogate":  # not Unicode: no UTF-8 form, PostgreSQL cannot store it
            bad = {**doc, spec.text_field: f"{doc.get(spec.text_field) or ''}\udc80"}
        elif how == "NaN":
            bad = {**doc, spec.number_field or spec.text_field: float("nan")}
        elif how == "naive datetime" and spec.naive is not None:
            bad = spec.naive(state)
        elif how == "other class":
            bad = data.draw(other.states(TEXT_VALUES), label="other state")
        elif how == "None":
            bad = None
        else:
            bad = [doc]
        note(f"apply returns {bad!r}")
        expected = MissingStateError if bad is None else StateValidationError
        secrets = self.secrets_of(run_id)

        def call(side: Side) -> object:
            handed = self.hand_over(f"{side.name} {kind}:{entity_id} invalid", copy.deepcopy(bad))
            before = len(side.world.events)
            try:
                side.engine.handle(kind).mutate(entity_id, lambda: handed, run_id=run_id)
            except ReactiveEntitiesError as error:
                require_no_secret(iter([str(error)]), secrets, f"{side.name} error message")
                assert len(side.world.events) == before, "an invalid state was recorded"
                raise
            return f"accepted, {len(side.world.events) - before} change(s) recorded"

        outcome = self.write(f"invalid mutate ({how}) {kind}:{entity_id}", run_id, call)
        assert outcome[:2] == ("raised", expected.__name__), outcome

    @rule(
        kind=KINDS,
        entity_id=ENTITY_IDS,
        bad=st.sampled_from(sorted(BAD_ARGUMENTS)),
        removing=st.booleans(),
    )
    def write_with_invalid_arguments(
        self, kind: str, entity_id: str, bad: str, removing: bool
    ) -> None:
        """A bad id, actor or run id fails alike everywhere before ``apply`` runs;
        nothing is recorded. (A lone surrogate has no UTF-8 form: PostgreSQL cannot
        store it, so every engine must refuse it up front.)"""
        arguments: dict[str, Any] = {"entity_id": entity_id, "run_id": None, **BAD_ARGUMENTS[bad]}

        def call(side: Side) -> object:
            def apply() -> object:
                raise PluginWriteError("apply ran")

            handle = side.engine.handle(kind)
            before = len(side.world.events)
            try:
                actor = None
                if "actor_id" in arguments or "actor_name" in arguments:
                    actor = Actor(
                        "user", arguments.get("actor_id", "u-1"), arguments.get("actor_name")
                    )
                write = handle.remove if removing else handle.mutate
                write(arguments["entity_id"], apply, actor=actor, run_id=arguments["run_id"])
            except PluginWriteError:
                return "accepted: apply ran"
            finally:
                assert len(side.world.events) == before, "a write with a bad argument was recorded"
            return "accepted"

        outcome = self.write(f"write with {bad}", None, call)
        assert outcome[:2] == ("raised", "InvalidArgumentError"), outcome

    @rule(
        kind=KINDS,
        entity_id=ENTITY_IDS,
        data=st.data(),
        removing=st.booleans(),
        writes_first=st.booleans(),
    )
    def write_with_failing_apply(
        self,
        kind: str,
        entity_id: str,
        data: st.DataObject,
        removing: bool,
        writes_first: bool,
    ) -> None:
        """``apply`` raises (perhaps after writing): the very error propagates from every
        engine and nothing is recorded; the plugin's write is not rolled back."""
        spec = self.specs[kind]
        new = None if removing else data.draw(spec.states(TEXT_VALUES), label="written first")

        def call(side: Side) -> object:
            error = PluginWriteError(f"plugin failed on {kind}:{entity_id}")
            world = side.world
            before = len(world.events)

            def apply() -> object:
                if writes_first:
                    self.set_plugin_state(world, kind, entity_id, copy.deepcopy(new))
                raise error

            handle = side.engine.handle(kind)
            caught: BaseException | None = None
            try:
                if removing:
                    handle.remove(entity_id, apply)
                else:
                    handle.mutate(entity_id, apply)
            except PluginWriteError as raised:
                caught = raised
            assert caught is error, f"{side.name} did not propagate the error unchanged"
            assert len(world.events) == before, "a failed apply was recorded"
            return "raised the plugin's error"

        self.write(f"failing {'remove' if removing else 'mutate'} {kind}:{entity_id}", None, call)
        if writes_first:
            self.drift(kind, entity_id, new)

    @rule(kind=KINDS, entity_id=ENTITY_IDS, run_id=RUN_ID_VALUES, actor=ACTORS, wait=WAITS)
    def remove(
        self, kind: str, entity_id: str, run_id: str | None, actor: Actor | None, wait: timedelta
    ) -> None:
        """Remove an entity through every world (a no-op when it is absent)."""

        def call(side: Side) -> object:
            rows = side.world.storage(kind).rows
            side.engine.handle(kind).remove(
                entity_id, lambda: rows.pop(entity_id, None), actor=actor, run_id=run_id
            )
            return None

        self.write(f"remove {kind}:{entity_id}", run_id, call, wait=wait)
        self.expected.pop((kind, entity_id), None)

    @rule(kind=KINDS, entity_id=ENTITY_IDS, data=st.data(), delete=st.booleans())
    def plugin_writes_behind_the_engines_back(
        self, kind: str, entity_id: str, data: st.DataObject, delete: bool
    ) -> None:
        """The plugin changes its storage without the engine: the log does not see it,
        and ``in_state_since`` may then find log and state disagreeing."""
        new = None if delete else data.draw(self.specs[kind].states(TEXT_VALUES), label="state")
        for world in self.worlds():
            self.set_plugin_state(world, kind, entity_id, copy.deepcopy(new))
        self.drift(kind, entity_id, new)

    # -- secrets and time ------------------------------------------------------------------

    @rule(
        run_id=st.sampled_from(RUN_IDS),
        values=st.lists(TEXT_VALUES, min_size=1, max_size=3),
        data=st.data(),
    )
    def register_secrets(self, run_id: str, values: list[str], data: st.DataObject) -> None:
        """Register secrets for a run: texts, and pieces of strings the states hold."""
        values = list(values)
        present = sorted(
            {
                text
                for state in self.expected.values()
                for text in field_values(self.document(state))
                if len(text) >= 4
            }
        )
        if present:
            for text in data.draw(st.lists(st.sampled_from(present), max_size=2), label="from"):
                start = data.draw(st.integers(0, len(text) - 4), label="start")
                end = data.draw(st.integers(start + 4, len(text)), label="end")
                values.append(text[start:end])
        note(f"secrets of {run_id} += {values!r}")
        for side in self.sides:
            side.engine.secrets.register(run_id, list(values))
        self.runs.setdefault(run_id, []).extend(values)

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def drop_run(self, data: st.DataObject) -> None:
        """Forget a run's secrets on every engine."""
        run_id = data.draw(st.sampled_from(sorted(self.runs)), label="run")
        for side in self.sides:
            side.engine.secrets.drop(run_id)
        del self.runs[run_id]

    @precondition(lambda self: self.writes_since_tick > 0)
    @rule(
        delta=st.one_of(
            st.sampled_from((timedelta(0), MICRO, timedelta(seconds=1), timedelta(hours=1))),
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
        )
    )
    def advance_clock(self, delta: timedelta) -> None:
        """Move the shared clock (zero steps make stamps tie, as do writes in a row)."""
        self.writes_since_tick = 0
        note(f"now = {self.clock.advance(delta).isoformat()}")

    # -- subscriptions ---------------------------------------------------------------------

    @rule(target=WATCHES, kind=st.none() | KINDS, data=st.data(), raising=st.booleans())
    def subscribe(
        self, kind: str | None, data: st.DataObject, raising: bool
    ) -> int | MultipleResults[int]:
        """Subscribe on every engine (a handler that raises must not matter)."""
        names = sorted({f for k in ([kind] if kind else self.specs) for f in self.fields(k)})
        fields = data.draw(
            st.none()
            | st.lists(st.sampled_from([*names, "no_such_field"]), min_size=1, max_size=2),
            label="fields",
        )
        wanted = None if fields is None else frozenset(fields)
        watch = Watch(kind, wanted, {w.name: len(w.events) for w in self.worlds()})
        for world in self.worlds():
            watch.received[world.name] = []

        def subscribe_on(side: Side) -> None:
            received = watch.received[side.world.name]

            def handler(event: ChangeEvent) -> None:
                received.append(event)
                if raising:
                    raise RuntimeError("a subscriber failed")

            watch.subscriptions.append(side.engine.subscribe(handler, kind=kind, fields=wanted))

        outcome = self.ask(f"subscribe kind={kind} fields={fields}", subscribe_on)
        if outcome[0] == "raised":
            return multiple()
        key = len(self.watches)
        self.watches[key] = watch
        return key

    @rule(key=consumes(WATCHES))
    def cancel_subscription(self, key: int) -> None:
        """Cancel a subscription everywhere (twice: cancelling is idempotent)."""
        watch = self.watches[key]
        for subscription in watch.subscriptions * 2:
            subscription.cancel()
        watch.end = {w.name: len(w.events) for w in self.worlds()}

    # -- queries ---------------------------------------------------------------------------

    @rule(kind=KINDS, ids=st.lists(ENTITY_IDS, min_size=1, max_size=4))
    def compare_reads(self, kind: str, ids: list[str]) -> None:
        """``get`` and ``get_many`` answer alike, and as the plugin's storage holds it."""
        for entity_id in dict.fromkeys(ids):
            outcome = self.ask(
                f"get {kind}:{entity_id}",
                lambda side: self.state_form(side.engine.handle(kind).get(entity_id)),  # noqa: B023
            )
            assert outcome == ("returned", self.state_form(self.expected.get((kind, entity_id))))
        self.ask(
            f"get_many {kind}:{ids}",
            lambda side: [
                (i, self.state_form(s)) for i, s in side.engine.handle(kind).get_many(ids).items()
            ],
        )

    @rule(kind=KINDS, entity_id=ENTITY_IDS, data=st.data())
    def compare_history(self, kind: str, entity_id: str, data: st.DataObject) -> None:
        """``history`` (with field, since and limit) answers alike."""
        field = data.draw(st.none() | st.sampled_from(self.fields(kind)), label="field")
        since = data.draw(
            st.none() | st.sampled_from(self.instants(kind, entity_id)), label="since"
        )
        if since is not None:
            since = since.astimezone(data.draw(st.sampled_from(ZONES), label="zone"))
        limit = data.draw(st.none() | st.integers(0, 4), label="limit")

        def history(side: Side) -> object:
            rows = side.engine.handle(kind).history(
                entity_id, field=field, since=since, limit=limit
            )
            ordinals = side.world.ordinals()
            return tuple(record_form(row, ordinals) for row in rows)

        self.ask(f"history {kind}:{entity_id} field={field} since={since} limit={limit}", history)

    @rule(kind=KINDS, entity_id=ENTITY_IDS, data=st.data())
    def compare_temporal_queries(self, kind: str, entity_id: str, data: st.DataObject) -> None:
        """``in_state_since``, ``in_state_for``, ``transition_count`` and ``value_at`` of a
        field answer alike, and as the log says."""
        field = data.draw(st.sampled_from(self.fields(kind)), label="field")
        self.compare_in_state(kind, entity_id, field)
        self.compare_transition_count(kind, entity_id, field, data)
        self.compare_value_at(kind, entity_id, field, data)

    def compare_in_state(self, kind: str, entity_id: str, field: str) -> None:
        """``in_state_since`` and ``in_state_for`` answer alike, and agree together."""
        since = self.ask(
            f"in_state_since {kind}:{entity_id}.{field}",
            lambda side: instant(side.engine.handle(kind).in_state_since(entity_id, field)),
        )
        duration = self.ask(
            f"in_state_for {kind}:{entity_id}.{field}",
            lambda side: side.engine.handle(kind).in_state_for(entity_id, field),
        )
        if since[1] is None:
            assert duration == ("returned", None)
        else:
            start = datetime.fromisoformat(str(since[1]))
            assert duration == ("returned", max(self.clock.now() - start, timedelta(0)))

    def compare_transition_count(
        self, kind: str, entity_id: str, field: str, data: st.DataObject
    ) -> None:
        """``transition_count`` answers alike, and as counting the rows says, for every
        window reaching exactly back to one of the field's stamps, and for one more
        window (just past or short of a stamp, or bad: then it fails alike)."""
        now = self.clock.now()
        rows = self.model.engine.handle(kind).history(entity_id, field=field)
        exact = {now - r.transitioned_at for r in rows if r.transitioned_at < now}
        windows = set(WINDOWS) | set(INVALID_WINDOWS) | exact
        for moment in self.instants(kind, entity_id):
            if moment < now:
                windows.add(now - moment)
        drawn = data.draw(st.sampled_from(sorted(windows)), label="window")
        for window in [*sorted(exact), drawn]:
            outcome = self.ask(
                f"transition_count {kind}:{entity_id}.{field} window={window!r}",
                lambda side: side.engine.handle(kind).transition_count(
                    entity_id,
                    field,
                    window=window,  # noqa: B023 - called at once
                ),
            )
            if window > timedelta(0):
                brute = sum(1 for r in rows if now - window <= r.transitioned_at <= now)
                assert outcome == ("returned", brute), f"counting the rows gives {brute}"

    def compare_value_at(self, kind: str, entity_id: str, field: str, data: st.DataObject) -> None:
        """``value_at`` answers alike, and as replaying the events says, at each stamp
        of the entity and at one more instant (between stamps, before, after)."""
        stamps = sorted(
            {
                e.occurred_at
                for e in self.model.world.events
                if (e.kind, e.entity_id) == (kind, entity_id)
            }
        )
        drawn = data.draw(st.sampled_from(self.instants(kind, entity_id)), label="at")
        drawn = drawn.astimezone(data.draw(st.sampled_from(ZONES), label="zone"))
        for at in [*stamps, drawn]:
            outcome = self.ask(
                f"value_at {kind}:{entity_id}.{field} at={at.isoformat()}",
                lambda side: json_form(
                    side.engine.handle(kind).value_at(entity_id, field, at)  # noqa: B023
                ),
            )
            value = self.replayed_value(kind, entity_id, field, at)
            assert outcome == ("returned", json_form(value)), f"the events say {value!r}"

    def replayed_value(self, kind: str, entity_id: str, field: str, at: datetime) -> JSONValue:
        """The model of ``value_at`` (SPEC §8), from the entity's events up to ``at``: the
        field's newest value, or None when it has none or the newest change is a remove.
        (The newest value may predate a remove when the plugin re-created the entity
        behind the engine's back: the next write is then an update, not a create.)"""
        value: JSONValue = None
        removed = False
        for event in self.model.world.events:
            if (event.kind, event.entity_id) != (kind, entity_id) or event.occurred_at > at:
                continue
            removed = event.op == "remove"
            if field in event.changed_fields and not removed:
                value = event.delta[field]
        return None if removed else value

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def engines_and_logs_are_sound(self) -> None:
        """After every step: the engines emitted the same events, subscribers got exactly
        theirs, no run secret escaped, the stored logs are sound, inputs are unchanged
        and the plugin storages agree (one invariant, so a replay prints one line)."""
        self.check_events_agree()
        self.check_subscribers_get_exactly_the_matching_events()
        self.check_events_hold_no_secret()
        self.check_stored_logs_are_sound()
        self.check_inputs_are_never_mutated()
        self.check_storages_agree()

    def check_events_agree(self) -> None:
        """Every log emitted the same events (all fields but ``change_id``), each with a
        fresh UUID4 ``change_id``."""
        expected = [event_form(e) for e in self.model.world.events]
        for world in self.worlds():
            got = [event_form(e) for e in world.events]
            if got != expected:
                i = next(
                    (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                    min(len(got), len(expected)),
                )
                model = self.model.world.name
                raise AssertionError(
                    f"{world.name} events differ from {model}'s at #{i}:\n"
                    f"  {model}: {expected[i : i + 1]}\n  {world.name}: {got[i : i + 1]}"
                )
            ids = [e.change_id for e in world.events]
            assert len(set(ids)) == len(ids), f"{world.name} reused a change_id"
            assert all(UUID(i).version == 4 for i in ids[-1:]), ids[-1:]

    def check_subscribers_get_exactly_the_matching_events(self) -> None:
        """Each subscription received exactly the events of its kind and fields recorded
        while it was active, in recording order."""
        for key, watch in self.watches.items():
            for world in self.worlds():
                window = world.events[watch.start[world.name] : watch.end.get(world.name)]
                wanted = [
                    e
                    for e in window
                    if (watch.kind is None or e.kind == watch.kind)
                    and (watch.fields is None or not watch.fields.isdisjoint(e.changed_fields))
                ]
                got = watch.received[world.name]
                assert [event_form(e) for e in got] == [event_form(e) for e in wanted], (
                    f"subscription {key} on {world.name} received {len(got)} events, "
                    f"expected {len(wanted)}"
                )

    def check_events_hold_no_secret(self) -> None:
        """No secret of a write's run survives in its event; sensitive fields are ``****``."""
        for world in self.worlds():
            for i, event in enumerate(world.events):
                secrets = world.secrets_at.get(event.change_id, EMPTY_SECRETS)
                where = f"{world.name} event #{i} ({event.kind}:{event.entity_id})"
                texts = [*field_values(event.prev), *field_values(event.next)]
                texts += [*field_values(event.delta), event.actor.id, event.actor.name or ""]
                require_no_secret(iter(texts), secrets, where)
                for doc in (event.prev, event.next, event.delta):
                    for field in self.sensitive[event.kind] & set(doc or ()):
                        assert doc is not None
                        # A null sensitive field stays null (SPEC §16.2).
                        assert doc[field] in (TOKEN, None), f"{where}: {field} clear"

    def check_stored_logs_are_sound(self) -> None:
        """Per log: one change row per event and the rows of its changed fields, append
        only; each field's rows chain; no run secret or sensitive value is stored.
        (Only writes change the logs: after a query the check is skipped.)"""
        if self.logs_checked_after == self.writes:
            return
        self.logs_checked_after = self.writes
        for world in self.worlds():
            dump = world.dump()
            self.check_counts(world, dump)
            for key, (changes, rows) in dump.items():
                old_changes, old_rows = world.last_dump.get(key, ((), ()))
                assert changes[: len(old_changes)] == old_changes, f"{key} changes rewritten"
                assert rows[: len(old_rows)] == old_rows, f"{key} rows rewritten"
                self.check_chain(world, key, changes, rows)
                self.check_stored_secrets(world, key, changes, rows)
            world.last_dump = dump

    def check_counts(self, world: World, dump: Dump) -> None:
        """Change rows match events one to one; rows match each change's fields."""
        events = {e.change_id: e for e in world.events}
        stored = [c for changes, _ in dump.values() for c in changes]
        assert len(stored) == len(world.events), (
            f"{world.name}: {len(stored)} change rows for {len(world.events)} events"
        )
        rows_of: dict[str, list[StoredRow]] = {}
        for _, rows in dump.values():
            for row in rows:
                rows_of.setdefault(row.change_id, []).append(row)
        for change in stored:
            event = events.get(change.change_id)
            assert event is not None, f"{world.name}: change {change} emitted no event"
            assert (change.op, change.changed_fields, change.run_id) == (
                event.op,
                event.changed_fields,
                event.run_id,
            )
            assert change.occurred_at == event.occurred_at, "the event is not stamped as stored"
            mine = rows_of.pop(change.change_id, [])
            expected = () if change.op == "remove" else change.changed_fields
            assert tuple(r.field for r in mine) == expected, f"{world.name}: rows of {change}"
            assert all(r.transitioned_at == change.occurred_at for r in mine)
        assert not rows_of, f"{world.name}: rows without a change: {rows_of}"

    def check_chain(
        self,
        world: World,
        key: EntityKey,
        changes: tuple[StoredChange, ...],
        rows: tuple[StoredRow, ...],
    ) -> None:
        """Creates only of absent entities, their rows from ``ABSENT``; every other row
        continues its field's previous row — unless masking hides the values, or the
        plugin changed the entity behind the engine's back in between."""
        ordinals = world.ordinals()
        ops = {c.change_id: c.op for c in changes}
        exists = False
        last = -1
        last_stamp = T0
        for change in changes:
            at = ordinals[change.change_id]
            assert change.occurred_at >= last_stamp, f"{world.name} {key}: stamps go back"
            if not world.drifted(key, last, at):
                assert (change.op == "create") == (not exists), (
                    f"{world.name} {key}: {change.op} while the entity "
                    f"{'existed' if exists else 'was absent'}"
                )
            exists = change.op != "remove"
            last, last_stamp = at, change.occurred_at
        previous: dict[str, StoredRow] = {}
        for row in rows:
            op = ops[row.change_id]
            before = previous.get(row.field)
            where = f"{world.name} {key}.{row.field} row of a {op}"
            if op == "create":
                assert row.from_value is ABSENT, f"{where} starts from {row.from_value!r}"
            else:
                assert not isinstance(row.from_value, Absent), f"{where} starts from ABSENT"
                after = -1 if before is None else ordinals[before.change_id]
                if not world.drifted(key, after, ordinals[row.change_id]):
                    assert before is not None, f"{where} has no earlier row"
                    if not (row.masked or before.masked):
                        assert structurally_equal(row.from_value, before.to_value), (
                            f"{where}: from {row.from_value!r} ≠ previous to {before.to_value!r}"
                        )
            previous[row.field] = row

    def check_stored_secrets(
        self,
        world: World,
        key: EntityKey,
        changes: tuple[StoredChange, ...],
        rows: tuple[StoredRow, ...],
    ) -> None:
        """Stored rows and documents hold no secret of their run; sensitive fields are
        ``****``."""
        sensitive = self.sensitive[key[0]]
        for change in changes:
            secrets = world.secrets_at[change.change_id]
            where = f"{world.name} stored change of {key}"
            if change.documents:
                *docs, actor = change.documents
                assert isinstance(actor, dict)
                texts = [t for doc in docs for t in field_values(doc)]
                texts += [t for t in (actor["id"], actor["name"]) if isinstance(t, str)]
                require_no_secret(iter(texts), secrets, where)
                for doc in docs:
                    if isinstance(doc, dict):
                        for field in sensitive & doc.keys():
                            assert doc[field] in (TOKEN, None), f"{where}: {field} in clear"
        for row in rows:
            secrets = world.secrets_at[row.change_id]
            where = f"{world.name} row {key}.{row.field}"
            values = [row.to_value] if row.from_value is ABSENT else [row.from_value, row.to_value]
            require_no_secret((t for v in values for t in strings_in(v)), secrets, where)
            if row.field in sensitive:
                assert row.to_value in (TOKEN, None), where
                assert row.from_value in (ABSENT, TOKEN, None), where

    def check_inputs_are_never_mutated(self) -> None:
        """No state or mapping handed to an engine (by apply or read) changed."""
        for what, snapshot, live in self.inputs:
            assert same_input(snapshot, live), f"{what} was mutated: {snapshot!r} → {live!r}"

    def check_storages_agree(self) -> None:
        """Every world's plugin storage holds the model's states."""
        for world in self.worlds():
            for kind, storage in world.storages.items():
                held = {i: self.state_form(s) for i, s in storage.rows.items()}
                want = {i: self.state_form(s) for (k, i), s in self.expected.items() if k == kind}
                assert held == want, f"{world.name} storage of {kind} drifted from the model"


# -- the machines -----------------------------------------------------------------------


@attrs.frozen
class Postgres:
    """The test database: two pools (two "processes") and a plain connection for SQL."""

    pools: tuple[ConnectionPool, ConnectionPool]
    db: psycopg.Connection[Any]

    def fresh_schema(self) -> str:
        """A schema name no run used before."""
        return f"re_model_{token_hex(6)}"

    def drop(self, schema: str) -> None:
        """Drop a run's schema."""
        self.db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def postgres(dsn: str) -> Iterator[Postgres]:
    """Pools and a connection to ``dsn`` for the machines' runs.

    Their sessions commit without waiting for the WAL flush (``synchronous_commit=off``,
    durability being no concern of a test): each run migrates and drops a schema, and a
    faster run is a faster shrink.
    """
    options = conninfo_to_dict(dsn).get("options") or ""
    dsn = make_conninfo(dsn, options=f"{options} -c synchronous_commit=off".strip())
    with (
        open_pool(dsn, size=2, timeout=10.0, name="model-a") as a,
        open_pool(dsn, size=2, timeout=10.0, name="model-b") as b,
        psycopg.connect(dsn, autocommit=True) as db,
    ):
        yield Postgres((a, b), db)


def memory_side(clock: ManualClock) -> Side:
    """The in-memory engine, in its own world."""
    engine = compose.in_memory(clock=clock)
    world = World("memory", dump=dict)
    world.dump = memory_dump(engine, world)
    engine.subscribe(world.events.append)
    return Side("memory", engine, world)


class OnPostgres(EngineComparison):
    """A comparison whose PostgreSQL engines work in a fresh schema, dropped at the end."""

    def __init__(self, pg: Postgres) -> None:
        super().__init__()
        self.pg = pg
        self.schema = pg.fresh_schema()
        self.model = memory_side(self.clock)
        note(f"schema {self.schema}")

    def postgres_engine(self, pool: ConnectionPool, world: World) -> Engine:
        """A PostgreSQL engine in the run's schema on the shared clock, its events
        recorded in ``world``."""
        engine = compose.postgres(pool=pool, schema=self.schema, clock=self.clock)
        engine.subscribe(world.events.append)
        return engine

    def teardown(self) -> None:
        """Close the engines and drop the run's schema."""
        try:
            for side in self.sides:
                side.engine.close()
        finally:
            self.pg.drop(self.schema)


class MemoryVsPostgres(OnPostgres):
    """The in-memory engine and a PostgreSQL engine, each over its own plugin storage."""

    def __init__(self, pg: Postgres) -> None:
        super().__init__(pg)
        world = World("postgres", dump=postgres_dump(pg.db, self.schema))
        self.replicas = [Side("postgres", self.postgres_engine(pg.pools[0], world), world)]


class TwoPostgresEnginesVsModel(OnPostgres):
    """Two PostgreSQL engines (two pools, one schema, one plugin storage) written
    through alternately, against the in-memory engine as the model."""

    def __init__(self, pg: Postgres) -> None:
        super().__init__(pg)
        world = World("postgres", dump=postgres_dump(pg.db, self.schema))
        for name, pool in zip(("postgres A", "postgres B"), pg.pools, strict=True):
            self.replicas.append(Side(name, self.postgres_engine(pool, world), world))
        self.writer = 0
        self.writes_at_switch = 0

    def writers(self) -> list[Side]:
        """The model and the PostgreSQL engine whose turn it is."""
        return [self.model, self.replicas[self.writer]]

    @precondition(lambda self: self.writes > self.writes_at_switch)
    @rule()
    def switch_writer(self) -> None:
        """Write through the other PostgreSQL engine from now on."""
        self.writes_at_switch = self.writes
        self.writer = 1 - self.writer
        note(f"writes go through {self.replicas[self.writer].name}")


def machine_settings(*, share: float, steps: int) -> settings:
    """Settings scaled from the active profile: ``share`` of its ``max_examples``, so
    ``HYPOTHESIS_PROFILE=thorough`` (2000) runs 20× the examples of "default" (100)."""
    profile = settings.default
    base = profile.max_examples if profile is not None else 100
    return settings(
        max_examples=max(1, round(base * share)),
        stateful_step_count=steps,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


MemoryVsPostgres.TestCase.settings = machine_settings(share=0.8, steps=50)
TwoPostgresEnginesVsModel.TestCase.settings = machine_settings(share=0.5, steps=50)


def run_counted(factory: Callable[[], EngineComparison], machine: settings) -> None:
    """Run the machine and print how many examples (machine runs) it took, so a long
    ``thorough`` run can report its size (``pytest -rP`` shows the line)."""
    runs = 0

    def counted() -> EngineComparison:
        nonlocal runs
        runs += 1
        return factory()

    run_state_machine_as_test(counted, settings=machine)  # type: ignore[arg-type]
    print(f"{machine.max_examples} examples wanted, {runs} machines run")


def test_memory_and_postgres_engines_agree(pg_dsn: str) -> None:
    """Random writes leave the in-memory and PostgreSQL engines answering every query alike."""
    with postgres(pg_dsn) as pg:
        run_counted(lambda: MemoryVsPostgres(pg), MemoryVsPostgres.TestCase.settings)


def test_two_postgres_engines_agree_with_the_model(pg_dsn: str) -> None:
    """Two PostgreSQL engines sharing a schema, written alternately, match the model."""
    with postgres(pg_dsn) as pg:
        run_counted(
            lambda: TwoPostgresEnginesVsModel(pg), TwoPostgresEnginesVsModel.TestCase.settings
        )

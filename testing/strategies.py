"""Hypothesis strategies for the functional core's values.

They feed the laws of :mod:`reactive_entities.testing.laws`, in this repository's
property tests and in anyone's contract suite.

Identifiers (kinds, entity ids, field names, run ids, change ids) are drawn from
``IDENTIFIER_ALPHABET``, which shares no character with ``SECRET_ALPHABET``: identifiers
are not masked by design, so a law that looks for secrets in a planned change must not
let an identifier contain one by accident.

Secrets are drawn to be hard on masking: nested (one inside another), overlapping (the
end of one is the start of another), holding ``*`` (the token's character) or made of
nothing but ``*``, holding ``#`` and digits (the collision suffix), quotes, backslashes
and newlines (characters that ``repr`` and JSON escape), and shorter than the
4-character minimum. Texts are spliced from those secrets, their fragments and filler,
so occurrences — overlapping, touching, repeated — are the rule rather than the
exception.

>>> from hypothesis import find
>>> find(secret_lists(), lambda values: any("*" in v for v in values))
['*']
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import attrs
from hypothesis import strategies as st

from reactive_entities.domain.actor import ACTOR_TYPES, Actor
from reactive_entities.domain.events import TransitionRecord
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.testing.laws import PlanInputs

__all__ = [
    "IDENTIFIER_ALPHABET",
    "SECRET_ALPHABET",
    "identifiers",
    "json_scalars",
    "json_values",
    "documents",
    "equal_variants",
    "document_pairs",
    "secret_lists",
    "secret_sets",
    "texts_around",
    "secret_scenarios",
    "deep_secret_scenarios",
    "colliding_key_scenarios",
    "actors",
    "aware_datetimes",
    "plan_contexts",
    "plan_inputs",
    "Color",
    "Priority",
    "Size",
    "Shade",
    "FIELD_TYPES",
    "state_class",
    "state_classes",
    "states",
    "Login",
    "LOGIN_SENSITIVE",
    "login_mappings",
    "log_instant",
    "log_instants",
    "transition_logs",
]

#: Kinds, ids and field names use these characters only …
IDENTIFIER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-."
#: … and secrets none of them, so no identifier can ever contain a secret.
SECRET_ALPHABET = "abcxyz*#27 \\'\"\né"


def identifiers(max_size: int = 8) -> st.SearchStrategy[str]:
    """Non-empty names that can never contain a secret drawn from ``SECRET_ALPHABET``."""
    return st.text(IDENTIFIER_ALPHABET, min_size=1, max_size=max_size)


# -- JSON values ------------------------------------------------------------------------


def json_scalars(text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[JSONValue]:
    """null, booleans, ints, finite floats (integral ones often) and strings."""
    strings = st.text(max_size=8) if text is None else text
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**53), max_value=2**53).map(float),
        st.floats(allow_nan=False, allow_infinity=False),
        strings,
    )


def json_values(
    text: st.SearchStrategy[str] | None = None,
    keys: st.SearchStrategy[str] | None = None,
    max_leaves: int = 10,
) -> st.SearchStrategy[JSONValue]:
    """Any JSON value: scalars, lists and dicts nested a few levels deep."""
    dict_keys = (st.text(max_size=6) if text is None else text) if keys is None else keys
    return st.recursive(
        json_scalars(text),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(dict_keys, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def documents(
    values: st.SearchStrategy[JSONValue] | None = None, max_fields: int = 5
) -> st.SearchStrategy[Document]:
    """A document: identifier field names mapped to JSON values."""
    return st.dictionaries(
        identifiers(), json_values() if values is None else values, max_size=max_fields
    )


@st.composite
def equal_variants(draw: st.DrawFn, value: JSONValue) -> JSONValue:
    """A value structurally equal to ``value`` but built differently: integral numbers
    switched between int and float, dict keys reordered, containers copied."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) <= 2**53 and draw(st.booleans()):  # exactly representable
            return float(value)
        return value
    if isinstance(value, float):
        if value.is_integer() and draw(st.booleans()):
            return int(value)
        return value
    if isinstance(value, list):
        return [draw(equal_variants(item)) for item in value]
    keys = draw(st.permutations(list(value)))
    return {key: draw(equal_variants(value[key])) for key in keys}


@st.composite
def document_pairs(
    draw: st.DrawFn, values: st.SearchStrategy[JSONValue] | None = None
) -> tuple[Document, Document]:
    """Two documents over one set of fields (two states of one class); each field of the
    second keeps the first's value (perhaps as an equal variant) or takes a new one."""
    value_strategy = json_values() if values is None else values
    fields = draw(st.lists(identifiers(), unique=True, max_size=5))
    prev: Document = {}
    next_: Document = {}
    for field in fields:
        prev[field] = draw(value_strategy)
        how = draw(st.sampled_from(("same", "variant", "new")))
        if how == "same":
            next_[field] = prev[field]
        elif how == "variant":
            next_[field] = draw(equal_variants(prev[field]))
        else:
            next_[field] = draw(value_strategy)
    order = draw(st.permutations(fields))
    return prev, {field: next_[field] for field in order}


# -- secrets ----------------------------------------------------------------------------


@st.composite
def secret_lists(draw: st.DrawFn, alphabet: str = SECRET_ALPHABET, max_bases: int = 3) -> list[str]:
    """Secret values as a run might register them, built to be hard on masking."""
    bases = draw(st.lists(st.text(alphabet, min_size=1, max_size=9), max_size=max_bases))
    values = list(bases)
    for base in bases:
        how = draw(st.sampled_from(("plain", "nested", "overlapping", "starred")))
        if how == "nested" and len(base) > 1:
            start = draw(st.integers(0, len(base) - 1))
            end = draw(st.integers(start + 1, len(base)))
            values.append(base[start:end])
        elif how == "overlapping":
            # The tail may be a key-collision suffix: "zzzzab" and "ab#2".
            cut = draw(st.integers(0, len(base) - 1))
            tail = st.text(alphabet, min_size=1, max_size=4) | st.sampled_from(("#2", "#3"))
            values.append(base[cut:] + draw(tail))
        elif how == "starred":
            values.append(base + "*" * draw(st.integers(1, 3)))
    if draw(st.booleans()):
        values.append("*" * draw(st.integers(1, 6)))
    return values


def secret_sets(alphabet: str = SECRET_ALPHABET) -> st.SearchStrategy[SecretSet]:
    """:func:`secret_lists` as a :class:`SecretSet`."""
    return secret_lists(alphabet).map(SecretSet.of)


def texts_around(
    secrets: Sequence[str], alphabet: str = SECRET_ALPHABET, max_pieces: int = 6
) -> st.SearchStrategy[str]:
    """Text spliced from whole secrets, their prefixes and suffixes, and filler."""
    filler = st.text(alphabet, max_size=4)
    if not secrets:
        return filler
    fragments: list[str] = []
    for secret in secrets:
        fragments.extend((secret, secret[: len(secret) // 2 + 1], secret[len(secret) // 2 :]))
    piece = st.one_of(st.sampled_from(fragments), filler)
    return st.lists(piece, max_size=max_pieces).map("".join)


@st.composite
def secret_scenarios(draw: st.DrawFn, alphabet: str = SECRET_ALPHABET) -> tuple[SecretSet, str]:
    """A secret set and a text full of its secrets."""
    values = draw(secret_lists(alphabet))
    return SecretSet.of(values), draw(texts_around(values, alphabet))


@st.composite
def deep_secret_scenarios(
    draw: st.DrawFn, alphabet: str = SECRET_ALPHABET
) -> tuple[SecretSet, JSONValue]:
    """A secret set and a JSON value whose strings and keys are full of its secrets.

    Keys come from a small pool so that masked keys collide.
    """
    values = draw(secret_lists(alphabet))
    secrets = SecretSet.of(values)
    text = texts_around(values, alphabet, max_pieces=3)
    # A key and its masked form collide once masked; so do keys masking alike.
    pool = draw(st.lists(text, min_size=1, max_size=3))
    pool += [a + b for a in values for b in values][:6]
    pool += [mask_text(key, secrets) for key in pool] + ["****", "****#2", "a****"]
    keys = st.one_of(text, st.sampled_from(pool))
    return secrets, draw(json_values(text, keys))


@st.composite
def colliding_key_scenarios(
    draw: st.DrawFn, alphabet: str = SECRET_ALPHABET
) -> tuple[SecretSet, dict[str, JSONValue]]:
    """A secret set and a dict whose keys mask alike (a key beside its own masked form),
    where some secrets end in a collision suffix (``#2``, ``#3``) right after the clear
    tail of a masked key — the suffix itself must not complete a secret."""
    values = draw(secret_lists(alphabet))
    first = SecretSet.of(values)
    keys = draw(st.lists(texts_around(values, alphabet, max_pieces=3), min_size=1, max_size=3))
    masked = [mask_text(key, first) for key in keys]
    for key in masked:
        if key and draw(st.booleans()):
            start = draw(st.integers(0, len(key) - 1))
            values.append(key[start:] + draw(st.sampled_from(("#2", "#3", "#"))))
    pool = keys + masked
    chosen = draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=4))
    return SecretSet.of(values), {key: draw(json_scalars()) for key in chosen}


def actors(text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Actor]:
    """Actors of every type whose id and name may hold anything (they are masked)."""
    strings = st.text(max_size=8) if text is None else text
    return st.builds(
        Actor,
        type=st.sampled_from(ACTOR_TYPES),
        id=strings.filter(lambda s: bool(s.strip())),
        name=st.none() | strings,
    )


def aware_datetimes(
    min_value: datetime = datetime(2, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value: datetime = datetime(9998, 12, 31),  # noqa: DTZ001
) -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes in UTC or a fixed offset, microseconds included.

    The bounds keep a day's margin so that every value has a UTC form.
    """
    offsets = st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    )
    zones = st.one_of(st.just(UTC), offsets.map(timezone))
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=zones)


# -- inputs of plan_change --------------------------------------------------------------


@st.composite
def plan_contexts(draw: st.DrawFn) -> PlanInputs:
    """Arguments for ``plan_change`` without documents (``prev`` and ``next`` None), for
    laws that bring their own."""
    values = draw(secret_lists())
    return PlanInputs(
        kind=draw(identifiers()),
        entity_id=draw(identifiers()),
        prev=None,
        next=None,
        actor=draw(actors(texts_around(values, max_pieces=3))),
        run_id=draw(st.none() | identifiers()),
        secrets=SecretSet.of(values),
        sensitive=frozenset(),
        change_id=draw(identifiers(36)),
    )


@st.composite
def plan_inputs(draw: st.DrawFn) -> PlanInputs:
    """Arguments for ``plan_change``: documents of one shape full of the run's secrets,
    some fields sensitive, every identifier free of secrets."""
    values = draw(secret_lists())
    text = texts_around(values, max_pieces=4)
    prev, next_ = draw(document_pairs(json_values(text, max_leaves=6)))
    shape = draw(st.sampled_from(("create", "update", "remove", "none")))
    prev_doc = None if shape in ("create", "none") else prev
    next_doc = None if shape in ("remove", "none") else next_
    fields = sorted(prev)
    sensitive = frozenset(draw(st.lists(st.sampled_from(fields), unique=True)) if fields else ())
    return PlanInputs(
        kind=draw(identifiers()),
        entity_id=draw(identifiers()),
        prev=prev_doc,
        next=next_doc,
        actor=draw(actors(text)),
        run_id=draw(st.none() | identifiers()),
        secrets=SecretSet.of(values),
        sensitive=sensitive,
        change_id=draw(identifiers(36)),
    )


# -- attrs state classes ----------------------------------------------------------------


class Color(enum.Enum):
    """A plain enum with string values."""

    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    """An ``IntEnum``: its members are ints too."""

    LOW = 1
    HIGH = 2


class Size(enum.StrEnum):
    """A ``StrEnum``: its members are strings too."""

    SMALL = "s"
    LARGE = "l"


class Shade(str, enum.Enum):  # noqa: UP042 - the mix-in is what is under test
    """The classic ``(str, Enum)`` mix-in."""

    DARK = "dark"
    LIGHT = "light"


# No NUL and no lone surrogates: documents refuse both (neither has a UTF-8 form in
# PostgreSQL), and a state class's own values are meant to be valid here.
_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)

#: Field types a generated state class may use, each with a strategy for its values.
FIELD_TYPES: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "str": (str, _TEXT),
    "int": (int, st.integers()),
    "float": (float, _FLOATS),
    "bool": (bool, st.booleans()),
    "datetime": (datetime, aware_datetimes()),
    "date": (date, st.dates()),
    "decimal": (Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    "uuid": (UUID, st.uuids()),
    "color": (Color, st.sampled_from(Color)),
    "priority": (Priority, st.sampled_from(Priority)),
    "size": (Size, st.sampled_from(Size)),
    "shade": (Shade, st.sampled_from(Shade)),
    "literal": (Literal["open", "closed"], st.sampled_from(("open", "closed"))),
    "frozenset[str]": (frozenset[str], st.frozensets(_TEXT, max_size=4)),
    "set[int]": (set[int], st.sets(st.integers(), max_size=4)),
    "frozenset[shade]": (frozenset[Shade], st.frozensets(st.sampled_from(Shade))),
    "tuple[int, ...]": (tuple[int, ...], st.tuples() | st.lists(st.integers()).map(tuple)),
    "tuple[str, float]": (tuple[str, float], st.tuples(_TEXT, _FLOATS)),
    "list[str]": (list[str], st.lists(_TEXT, max_size=4)),
    "list[datetime]": (list[datetime], st.lists(aware_datetimes(), max_size=3)),
    "dict[str, int]": (dict[str, int], st.dictionaries(_TEXT, st.integers(), max_size=4)),
    "dict[str, list[size]]": (
        dict[str, list[Size]],
        st.dictionaries(_TEXT, st.lists(st.sampled_from(Size), max_size=3), max_size=3),
    ),
    "list[dict[str, float]]": (
        list[dict[str, float]],
        st.lists(st.dictionaries(_TEXT, _FLOATS, max_size=3), max_size=3),
    ),
}

#: A field spec: (type key in FIELD_TYPES, optional (``| None`` with a None default)).
FieldSpec = tuple[str, bool]


@functools.cache
def state_class(spec: tuple[FieldSpec, ...]) -> type[Any]:
    """The frozen attrs class with fields ``f0``, ``f1``, … of the given types (cached,
    so one spec always gives one class)."""
    fields: dict[str, Any] = {}
    for i, (key, optional) in enumerate(spec):
        kind = FIELD_TYPES[key][0]
        metadata = {"strategy_key": key}
        if optional:
            fields[f"f{i}"] = attrs.field(type=kind | None, default=None, metadata=metadata)
        else:
            fields[f"f{i}"] = attrs.field(type=kind, metadata=metadata)
    label = "_".join(f"{key}{'_opt' if opt else ''}" for key, opt in spec)
    name = "State_" + re.sub(r"\W+", "_", label)
    return attrs.make_class(name, fields, frozen=True, kw_only=True)


_FIELD_SPECS: st.SearchStrategy[FieldSpec] = st.tuples(
    st.sampled_from(sorted(FIELD_TYPES)), st.booleans()
)


def state_classes(max_fields: int = 5) -> st.SearchStrategy[type[Any]]:
    """Frozen attrs state classes with 1–``max_fields`` fields of mixed types."""
    return st.lists(_FIELD_SPECS, min_size=1, max_size=max_fields).map(
        lambda specs: state_class(tuple(specs))
    )


def _field_values(attribute: attrs.Attribute[Any]) -> st.SearchStrategy[Any]:
    values = FIELD_TYPES[attribute.metadata["strategy_key"]][1]
    return st.none() | values if attribute.default is None else values


@st.composite
def states(draw: st.DrawFn, max_fields: int = 5) -> Any:
    """An instance of a generated state class (see :func:`state_classes`)."""
    cls = draw(state_classes(max_fields))
    values = {a.name: draw(_field_values(a)) for a in attrs.fields(cls)}
    return cls(**values)


# -- states that fail validation --------------------------------------------------------


def _no_password_in_name(instance: Login, _: attrs.Attribute[Any], name: str) -> None:
    # A validator on one field quoting another field's (sensitive) value.
    password = getattr(instance, "password", None)
    if isinstance(password, str) and password and password in name:
        raise ValueError(f"name {name!r} must not contain the password {password!r}")


@attrs.frozen
class Login:
    """A state whose validators quote values, and whose ``password`` is sensitive."""

    password: str = attrs.field(validator=attrs.validators.matches_re(r"[^ ]{4,}"))
    name: str = attrs.field(
        validator=[attrs.validators.matches_re(r"[a-z]+"), _no_password_in_name]
    )
    role: str = attrs.field(default="user", validator=attrs.validators.in_(["user", "admin"]))
    labels: dict[str, int] = attrs.Factory(dict)
    tags: list[str] = attrs.Factory(list)
    ratio: float = 0.0


#: ``Login``'s sensitive fields.
LOGIN_SENSITIVE = ("password",)


@st.composite
def login_mappings(draw: st.DrawFn) -> tuple[dict[str, object], SecretSet]:
    """A mapping meant to structure as :class:`Login` — often invalid, its strings full
    of the run's secrets and of the password — and the run's secret set.

    The password always holds ``é``, which no message template, field name or kind
    contains, so finding it in a message means it leaked.
    """
    values = draw(secret_lists())
    text = texts_around(values, max_pieces=4)
    password = draw(text) + "é" + draw(text)
    anything = st.one_of(text, st.just(password), json_scalars(text), st.lists(text, max_size=2))
    raw: dict[str, object] = {"password": password}
    for field in ("name", "role", "labels", "tags", "ratio"):
        how = draw(st.sampled_from(("omit", "text", "password-inside", "anything")))
        if how == "text":
            raw[field] = draw(text)
        elif how == "password-inside":
            raw[field] = draw(text) + password + draw(text)
        elif how == "anything":
            raw[field] = draw(anything)
    if draw(st.booleans()):
        raw["labels"] = draw(st.dictionaries(st.one_of(text, st.just(password)), anything))
    if draw(st.booleans()):
        raw[draw(st.one_of(text, st.just(password)).filter(lambda k: k not in raw))] = 1
    if "name" not in raw:
        raw["name"] = "ada"
    return raw, SecretSet.of(values)


# -- transition logs --------------------------------------------------------------------

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_ZONES = (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30)))


def log_instant(offset: int, zone: timezone = UTC) -> datetime:
    """The instant ``offset`` seconds after the logs' epoch, in ``zone``."""
    return (_EPOCH + timedelta(seconds=offset)).astimezone(zone)


def log_instants() -> st.SearchStrategy[datetime]:
    """Instants around the rows of :func:`transition_logs`, in assorted zones."""
    return st.builds(log_instant, st.integers(-2, 22), st.sampled_from(_ZONES))


@st.composite
def transition_logs(draw: st.DrawFn, max_rows: int = 12) -> tuple[TransitionRecord, ...]:
    """One field's rows in recording order, stamped in non-decreasing order with many
    equal stamps, in assorted time zones."""
    offsets = sorted(draw(st.lists(st.integers(0, 20), max_size=max_rows)))
    return tuple(
        TransitionRecord(
            kind="K",
            entity_id="E",
            field="F",
            from_value=i - 1,
            to_value=i,
            masked=False,
            change_id=f"C{i}",
            transitioned_at=log_instant(offset, draw(st.sampled_from(_ZONES))),
        )
        for i, offset in enumerate(offsets)
    )

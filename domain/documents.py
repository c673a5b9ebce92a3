"""The library's cattrs converter (SPEC §2); the rules its documents follow are in
:mod:`reactive_entities.domain.validity`.

Unstructuring an attrs state gives its *document*: datetimes → ISO-8601 UTC strings with
six fraction digits and ``Z``, enums → their values, sets → sorted lists, tuples → lists,
UUIDs and Decimals → strings. Structuring is strict: a ``str`` field accepts only a
``str``, an ``int`` field an ``int`` (never a ``bool``), a ``float`` field a finite number,
and unknown keys are rejected.

The converter is private to each engine (never ``cattrs.global_converter``); users may
register their own hooks on it before defining kinds.

>>> from datetime import datetime, timezone, timedelta
>>> c = make_converter()
>>> c.unstructure(datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))))
'2024-01-02T03:04:05.000000Z'
"""

from __future__ import annotations

import enum
import math
import operator
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.fns import identity

from reactive_entities.domain.events import iso_utc
from reactive_entities.domain.json import canonical_json
from reactive_entities.domain.validity import MAX_DEPTH, MAX_INT_DIGITS, document_problems

# The document rules live in ``validity`` (compiled with the hot path); they are named
# here too, beside the converter whose output they check.
__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "make_converter",
    "document_problems",
    "structure_problems",
]


def _unstructure_datetime(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: attach a time zone (UTC is best)")
    return iso_utc(value)


def _structure_datetime(value: object, _: type) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO-8601 string or datetime, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: attach a time zone (UTC is best)")
    return moment.astimezone(UTC)


def _structure_date(value: object, _: type) -> date:
    if isinstance(value, datetime):
        raise TypeError("expected a date, got a datetime")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError(f"expected an ISO-8601 date string, got {type(value).__name__}")


# The hooks for str, int and float also serve their subclasses — ``StrEnum``,
# ``IntEnum``, ``class Shade(str, Enum)`` — which cattrs dispatches to them: those are
# built from the checked value (``Shade("dark")``), never returned as a bare str or int.


def _structure_str(value: object, cls: type[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return value if cls is str else cls(value)


def _structure_int(value: object, cls: type[int]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected int, got {type(value).__name__}")
    return value if cls is int else cls(value)


def _structure_float(value: object, cls: type[float]) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number if cls is float else cls(number)


def _attrs_origin(kind: Any) -> Any:
    """The class behind a (possibly generic: ``State[int]``) attrs type."""
    origin = typing.get_origin(kind)
    return kind if origin is None else origin


def _enum_classes(kind: object) -> Iterator[type[enum.Enum]]:
    """The enum classes a field type mentions (``Shade``, ``frozenset[Shade] | None``)."""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        yield kind
    for arg in typing.get_args(kind):
        yield from _enum_classes(arg)


def _structure_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected bool, got {type(value).__name__}")
    return value


def _is_uuid_class(cls: object) -> bool:
    # Recognized by name: the domain may not import ``uuid`` (it also makes random ids).
    return isinstance(cls, type) and cls.__module__ == "uuid" and cls.__qualname__ == "UUID"


def _structure_uuid(value: object, cls: type[Any]) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(value)
    raise TypeError(f"expected a UUID string, got {type(value).__name__}")


def _structure_decimal(value: object, _: type) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a decimal string, got {type(value).__name__}")


def make_converter() -> cattrs.Converter:
    """A fresh converter configured with the document rules above."""
    converter = cattrs.Converter(
        forbid_extra_keys=True,
        detailed_validation=True,
        # Every tuple becomes a list, heterogeneous ones (``tuple[str, int]``) included.
        unstruct_collection_overrides={tuple: list},
    )

    def unstructure_set(values: set[Any] | frozenset[Any]) -> list[Any]:
        items = [converter.unstructure(v) for v in values]
        # Sets have no order; canonical JSON gives a total, type-independent one.
        items.sort(key=canonical_json)
        return items

    enum_value = operator.attrgetter("value")

    def unstructure_attrs(cls: type[Any]) -> Callable[[Any], Any]:
        # cattrs dispatches a ``str``-based enum (``StrEnum``, ``(str, Enum)``) to its
        # identity hook for ``str``, so the member itself would land in the document.
        # Registering each enum class a state mentions makes it unstructure to its value,
        # and leaves the hot path of plain ``str`` fields untouched.
        origin = _attrs_origin(cls)
        if any(isinstance(a.type, str) for a in attrs.fields(origin)):
            attrs.resolve_types(origin)
        for attribute in attrs.fields(origin):
            for enum_class in _enum_classes(attribute.type):
                # Only where the member would pass through as is: a hook the user
                # registered for the enum stays in charge.
                if converter.get_unstructure_hook(enum_class) is identity:
                    converter.register_unstructure_hook(enum_class, enum_value)
        return converter.gen_unstructure_attrs_fromdict(cls)

    converter.register_unstructure_hook_factory(
        lambda t: attrs.has(_attrs_origin(t)), unstructure_attrs
    )
    converter.register_unstructure_hook(datetime, _unstructure_datetime)
    converter.register_unstructure_hook(date, date.isoformat)
    converter.register_unstructure_hook_func(_is_uuid_class, str)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_unstructure_hook(set, unstructure_set)
    converter.register_unstructure_hook(frozenset, unstructure_set)
    converter.register_unstructure_hook_func(
        lambda t: getattr(t, "__origin__", None) in (set, frozenset), unstructure_set
    )
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook(date, _structure_date)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook_func(_is_uuid_class, _structure_uuid)
    converter.register_structure_hook(Decimal, _structure_decimal)
    return converter


def structure_problems(error: BaseException, path: str = "$") -> Iterator[tuple[str, str]]:
    """Flatten a cattrs / attrs structuring error into ``(path, reason)`` pairs.

    Paths read ``status``, ``meta.region``, ``tags[1]``; ``$`` is the whole state.
    Reasons may still quote input values: callers redact them before showing anyone.
    """
    if isinstance(error, ClassValidationError):
        with_notes, without_notes = error.group_exceptions()
        for sub, note in with_notes:
            yield from structure_problems(sub, _join(path, f".{note.name}"))
        for sub in without_notes:
            yield from structure_problems(sub, path)
    elif isinstance(error, IterableValidationError):
        with_index, rest = error.group_exceptions()
        for item_error, item_note in with_index:
            index = getattr(item_note, "index", None)
            where = path if index is None else f"{path}[{index!r}]"
            yield from structure_problems(item_error, where)
        for item_error in rest:
            yield from structure_problems(item_error, path)
    elif isinstance(error, ForbiddenExtraKeysError):
        yield path, f"unknown fields: {', '.join(sorted(map(str, error.extra_fields)))}"
    elif isinstance(error, KeyError):
        yield path, "required field missing"
    elif len(error.args) >= 2 and isinstance(error.args[1], attrs.Attribute):
        # attrs validators raise (message, attribute, …): point at the attribute.
        yield _join(path, f".{error.args[1].name}"), f"{error.args[0]}"
    else:
        yield path, f"{type(error).__name__}: {error}"


def _join(path: str, suffix: str) -> str:
    return suffix[1:] if path == "$" else path + suffix

"""The library's converter and the rules documents follow (SPEC §2, §13.8)."""

from __future__ import annotations

import enum
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import attrs
import cattrs
import pytest

from reactive_entities.domain.documents import (
    document_problems,
    make_converter,
    structure_problems,
)
from reactive_entities.domain.json import Document


class Color(enum.Enum):
    """A plain enum."""

    RED = "red"


class Level(enum.IntEnum):
    """An ``IntEnum``."""

    LOW = 1
    HIGH = 2


class Size(enum.StrEnum):
    """A ``StrEnum``."""

    SMALL = "s"


class Shade(str, enum.Enum):  # noqa: UP042 - the classic mix-in is what is tested
    """The ``(str, Enum)`` mix-in."""

    DARK = "dark"


@attrs.frozen
class Meta:
    """A nested state."""

    region: str


@attrs.frozen
class Incident:
    """A state with one field of each basic kind."""

    status: str
    count: int = 0
    ratio: float = 0.0
    urgent: bool = False
    meta: Meta = Meta("eu")
    tags: list[int] = attrs.Factory(list)
    labels: dict[str, int] = attrs.Factory(dict)
    seen: datetime | None = None


def problems_of(raw: object, cls: type[Any] = Incident) -> list[tuple[str, str]]:
    """The (path, reason) pairs of structuring ``raw`` as ``cls``."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any structuring failure
        make_converter().structure(raw, cls)
    return list(structure_problems(caught.value))


def test_datetimes_become_iso_utc_with_microseconds_and_z() -> None:
    """A datetime is written in UTC with six fraction digits and ``Z``."""
    moment = datetime(2024, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert make_converter().unstructure(moment) == "2024-01-02T03:04:05.000006Z"


def test_the_same_instant_in_two_time_zones_gives_one_document() -> None:
    """Another time zone's same instant unstructures identically."""
    converter = make_converter()
    utc = datetime(2024, 1, 1, 9, tzinfo=UTC)
    assert converter.unstructure(utc.astimezone(timezone(timedelta(hours=-7)))) == (
        converter.unstructure(utc)
    )


def test_datetimes_before_year_1000_keep_four_digit_years() -> None:
    """Years before 1000 are zero-padded, so the text reads back (regression)."""
    converter = make_converter()
    moment = datetime(999, 1, 2, tzinfo=UTC)
    text = converter.unstructure(moment)
    assert text == "0999-01-02T00:00:00.000000Z"
    assert converter.structure(text, datetime) == moment


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime has no instant: unstructuring it raises ``ValueError``."""
    with pytest.raises(ValueError, match="naive"):
        make_converter().unstructure(datetime(2024, 1, 1))  # noqa: DTZ001 - on purpose


def test_datetimes_structure_to_utc() -> None:
    """ISO strings with ``Z`` or an offset structure to aware UTC datetimes."""
    converter = make_converter()
    assert converter.structure("2024-01-02T03:04:05.000006Z", datetime) == datetime(
        2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC
    )
    parsed = converter.structure("2024-01-02T05:04:05+02:00", datetime)
    assert parsed.tzinfo is UTC
    assert parsed == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2024-01-02T03:04:05", 1704164645, None])
def test_naive_or_non_text_datetimes_do_not_structure(bad: object) -> None:
    """A naive ISO string or a number is not a datetime."""
    with pytest.raises((ValueError, TypeError)):
        make_converter().structure(bad, datetime)


def test_dates_are_iso_and_refuse_datetimes() -> None:
    """Dates read and write ISO ``YYYY-MM-DD``; a datetime is not a date."""
    converter = make_converter()
    assert converter.unstructure(date(5, 1, 2)) == "0005-01-02"
    assert converter.structure("0005-01-02", date) == date(5, 1, 2)
    with pytest.raises(TypeError, match="datetime"):
        converter.structure(datetime(2024, 1, 1, tzinfo=UTC), date)


def test_sets_become_sorted_lists() -> None:
    """Sets and frozensets become lists in a canonical order."""
    converter = make_converter()
    assert converter.unstructure({"b", "c", "a"}) == ["a", "b", "c"]
    assert converter.unstructure(frozenset({3, 1, 2}), frozenset[int]) == [1, 2, 3]


def test_tuples_become_lists_even_heterogeneous_ones() -> None:
    """Every tuple becomes a list, heterogeneous and nested ones too (regression)."""

    @attrs.frozen
    class Shape:
        """Tuples of every kind."""

        a: tuple[int, ...]
        b: tuple[str, float]
        c: list[tuple[int, int]]

    converter = make_converter()
    doc = converter.unstructure(Shape((1, 2), ("x", 1.5), [(1, 2)]))
    assert doc == {"a": [1, 2], "b": ["x", 1.5], "c": [[1, 2]]}
    assert document_problems(doc) == []
    assert converter.structure(doc, Shape) == Shape((1, 2), ("x", 1.5), [(1, 2)])


def test_enums_become_their_values_and_come_back_as_members() -> None:
    """Enums of every flavour are written as values and read back as members (regression)."""

    @attrs.frozen
    class Flags:
        """Enums of every flavour, bare and nested."""

        color: Color
        level: Level
        size: Size
        shade: Shade | None
        shades: frozenset[Shade]
        sizes: dict[str, list[Size]]

    converter = make_converter()
    state = Flags(Color.RED, Level.HIGH, Size.SMALL, Shade.DARK, frozenset({Shade.DARK}), {})
    doc = converter.unstructure(state)
    assert doc == {
        "color": "red",
        "level": 2,
        "size": "s",
        "shade": "dark",
        "shades": ["dark"],
        "sizes": {},
    }
    assert [type(v) for v in doc.values()][:4] == [str, int, str, str]
    back = converter.structure(doc, Flags)
    assert back == state
    assert type(back.level) is Level
    assert type(back.size) is Size
    assert type(back.shade) is Shade
    assert {type(s) for s in back.shades} == {Shade}


def test_a_users_enum_hook_is_kept() -> None:
    """A hook the user registered for an enum wins over the value rule."""

    @attrs.frozen
    class Painted:
        """One str-based enum field."""

        shade: Shade

    converter = make_converter()
    converter.register_unstructure_hook(Shade, lambda shade: shade.name)
    assert converter.unstructure(Painted(Shade.DARK)) == {"shade": "DARK"}


def test_an_unknown_enum_value_does_not_structure() -> None:
    """A value that is no member of the enum is refused."""
    with pytest.raises(ValueError, match="not a valid"):
        make_converter().structure(3, Level)


def test_uuids_and_decimals_become_strings() -> None:
    """UUIDs and Decimals are written as strings and read back."""
    converter = make_converter()
    uid = UUID("12345678-1234-5678-1234-567812345678")
    assert converter.unstructure(uid) == str(uid)
    assert converter.structure(str(uid), UUID) == uid
    assert converter.unstructure(Decimal("1.10")) == "1.10"
    assert converter.structure("1.10", Decimal) == Decimal("1.10")


def test_structuring_fills_defaults() -> None:
    """Missing fields with defaults take their defaults."""
    assert make_converter().structure({"status": "open"}, Incident) == Incident("open")


def test_structuring_rejects_unknown_fields() -> None:
    """Keys that are not fields are refused, all named."""
    assert problems_of({"status": "open", "zeta": 1, "alpha": 2}) == [
        ("$", "unknown fields: alpha, zeta")
    ]


@pytest.mark.parametrize(
    ("raw", "path", "reason"),
    [
        ({"status": 1}, "status", "expected str, got int"),
        ({"status": "o", "count": True}, "count", "expected int, got bool"),
        ({"status": "o", "count": 1.0}, "count", "expected int, got float"),
        ({"status": "o", "ratio": True}, "ratio", "expected a number, got bool"),
        ({"status": "o", "ratio": math.nan}, "ratio", "finite"),
        ({"status": "o", "ratio": math.inf}, "ratio", "finite"),
        ({"status": "o", "urgent": 1}, "urgent", "expected bool, got int"),
        ({"status": "o", "meta": {"region": 1}}, "meta.region", "expected str"),
        ({"status": "o", "tags": [1, "x"]}, "tags[1]", "expected int"),
        ({"status": "o", "labels": {"k": "v"}}, "labels['k']", "expected int"),
        ({"count": 1}, "status", "required field missing"),
    ],
)
def test_structuring_is_strict_and_names_the_path(
    raw: dict[str, object], path: str, reason: str
) -> None:
    """Wrong types (a bool is no int), NaN and missing fields are refused with their path."""
    problems = problems_of(raw)
    assert [p for p, _ in problems] == [path]
    assert reason in problems[0][1]


def test_floats_accept_ints() -> None:
    """An int is a fine value for a float field."""
    state = make_converter().structure({"status": "o", "ratio": 2}, Incident)
    assert state.ratio == 2.0
    assert type(state.ratio) is float


def test_attrs_validator_errors_point_at_the_attribute() -> None:
    """A validator raising attrs-style ``(message, attribute, …)`` names the field."""

    @attrs.frozen
    class Checked:
        """A field with an attrs validator."""

        name: str = attrs.field(validator=attrs.validators.in_(["a", "b"]))

    problems = problems_of({"name": "zz"}, Checked)
    assert [path for path, _ in problems] == ["name"]
    assert "'zz'" in problems[0][1]


def test_each_converter_is_private() -> None:
    """Converters are independent of each other and of cattrs' global converter."""
    first = make_converter()
    second = make_converter()
    first.register_unstructure_hook(Meta, lambda meta: meta.region)
    assert first.unstructure(Meta("eu")) == "eu"
    assert second.unstructure(Meta("eu")) == {"region": "eu"}
    assert cattrs.global_converter.unstructure(Meta("eu")) == {"region": "eu"}


def test_a_valid_document_has_no_problems() -> None:
    """Null, bools, ints, finite floats, strings, lists and str-keyed dicts are valid."""
    doc: Document = {"a": None, "b": True, "c": 1, "d": 1.5, "e": "x", "f": [1, {"g": []}]}
    assert document_problems(doc) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"n": math.nan}, [("n", "number is not finite (NaN or infinity has no JSON form)")]),
        ({"l": [1, [math.inf]]}, [("l[1][0]", "number is not finite")]),
        ({"s": "a\x00b"}, [("s", "text contains a NUL character")]),
        ({"d": {"k\x00": 1}}, [("d", "object key contains a NUL character")]),
        ({"d": {1: 1}}, [("d", "object key of type int (keys must be str)")]),
        ({"d": {"k": {"x": (1,)}}}, [("d.k.x", "unsupported value of type tuple")]),
        ({"ok": 1, "bad": {1, 2}}, [("bad", "unsupported value of type set")]),
    ],
)
def test_document_problems_name_every_bad_value(
    doc: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    """NaN, infinity, NUL, non-str keys and foreign types are reported with their path."""
    problems = document_problems(doc)
    assert [path for path, _ in problems] == [path for path, _ in expected]
    for (_, reason), (_, wanted) in zip(problems, expected, strict=True):
        assert reason.startswith(wanted)

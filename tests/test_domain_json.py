"""Canonical JSON and structural equality (SPEC §2)."""

from __future__ import annotations

import math

import pytest

from reactive_entities.domain.json import JSONValue, canonical_json, structurally_equal


def test_canonical_json_has_no_whitespace_and_sorted_keys() -> None:
    """Canonical JSON drops whitespace and sorts object keys, nested ones too."""
    value: JSONValue = {"b": [1, {"d": None, "c": "x"}], "a": True}
    assert canonical_json(value) == '{"a":true,"b":[1,{"c":"x","d":null}]}'


def test_canonical_json_sorts_keys_by_code_point() -> None:
    """Keys sort by code point, not UTF-16: an astral character sorts after U+FFFF."""
    value: JSONValue = {"\U0001f600": 1, "\uffff": 2, "é": 3, "b": 4, "B": 5}
    assert canonical_json(value) == '{"B":5,"b":4,"é":3,"\uffff":2,"\U0001f600":1}'


def test_canonical_json_writes_integral_floats_as_ints() -> None:
    """``1.0`` is written ``1``; ``-0.0`` is ``0``; a fraction stays a fraction."""
    assert canonical_json([1.0, -0.0, 1.5, 1e20]) == "[1,0,1.5,100000000000000000000]"


def test_canonical_json_keeps_booleans_apart_from_numbers() -> None:
    """``true`` / ``false`` are written as such, never as ``1`` / ``0``."""
    assert canonical_json([True, False, 1, 0]) == "[true,false,1,0]"


def test_canonical_json_escapes_strings() -> None:
    """Quotes, backslashes and control characters are JSON-escaped."""
    assert canonical_json('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\u0001"'


def test_canonical_json_writes_tuples_as_lists() -> None:
    """A tuple (not a document value, but harmless) encodes as a list."""
    assert canonical_json((1, 2.0)) == canonical_json([1, 2]) == "[1,2]"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1, math.nan], {"k": math.inf}])
def test_canonical_json_rejects_non_finite_numbers(bad: JSONValue) -> None:
    """NaN and infinities have no JSON form: ``ValueError``, at any depth."""
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json(bad)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (0, -0.0),
        ([1, 2], [1.0, 2.0]),
        ({"a": 1, "b": 2}, {"b": 2.0, "a": 1}),
        ({"x": [{"y": 3}]}, {"x": [{"y": 3.0}]}),
        ("text", "text"),
        (None, None),
    ],
)
def test_structurally_equal_values(a: JSONValue, b: JSONValue) -> None:
    """``1.0`` ≡ ``1`` and key order is irrelevant, at any depth, both ways."""
    assert structurally_equal(a, b)
    assert structurally_equal(b, a)
    assert canonical_json(a) == canonical_json(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (False, None),
        (0, None),
        ("1", 1),
        ([True], [1]),
        ({"k": False}, {"k": 0.0}),
        ([1, 2], [2, 1]),
        ([1], [1, 1]),
        ({"a": 1}, {"b": 1}),
        ({"a": 1}, {"a": 1, "b": 1}),
        ([], {}),
        (1, 1.5),
        (2**53 + 1, float(2**53)),
    ],
)
def test_structurally_different_values(a: JSONValue, b: JSONValue) -> None:
    """``true`` ≠ ``1``, null ≠ false, order of list items matters, missing keys count."""
    assert not structurally_equal(a, b)
    assert not structurally_equal(b, a)
    assert canonical_json(a) != canonical_json(b)


def test_structurally_equal_treats_a_tuple_like_a_list() -> None:
    """A tuple compares like the list it encodes as."""
    assert structurally_equal((1, 2), [1.0, 2])

"""The helpers the laws rely on can fail: a law that cannot fail proves nothing."""

from __future__ import annotations

import pytest
from hypothesis import given

from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import (
    IDENTIFIER_ALPHABET,
    SECRET_ALPHABET,
    documents,
    json_values,
)


def _mutate(doc: Document) -> None:
    """Break the rules: add a key to the caller's document."""
    doc["__touched__"] = True


def _mutate_nested(value: JSONValue) -> None:
    """Break the rules: wrap the first item or value in a list."""
    if isinstance(value, list) and value:
        value[0] = [value[0]]
    elif isinstance(value, dict) and value:
        key = next(iter(value))
        value[key] = [value[key]]


@given(documents())
def test_call_unmutated_catches_a_mutated_argument(doc: Document) -> None:
    """A function adding a key to its argument fails ``call_unmutated``."""
    with pytest.raises(AssertionError, match="mutated argument 0"):
        laws.call_unmutated(_mutate, doc)


@given(json_values())
def test_call_unmutated_catches_nested_mutation(value: JSONValue) -> None:
    """A deep change to an argument fails ``call_unmutated``; leaving it alone passes."""
    laws.call_unmutated(laws.same_value, value, value)
    if (isinstance(value, list | dict)) and value:
        with pytest.raises(AssertionError, match="mutated"):
            laws.call_unmutated(_mutate_nested, value)


def test_same_value_tells_ints_floats_and_bools_apart() -> None:
    """``same_value`` is stricter than ``==``: 1, 1.0 and True differ, as does key order."""
    assert not laws.same_value(1, 1.0)
    assert not laws.same_value(1, True)
    assert not laws.same_value({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert laws.same_value({"a": [1, None]}, {"a": [1, None]})


def test_only_stars() -> None:
    """Only a secret made of nothing but ``*`` is exempt from the masking laws."""
    assert laws.only_stars("*****")
    assert not laws.only_stars("a***")


def test_identifier_and_secret_alphabets_are_disjoint() -> None:
    """No identifier drawn by the strategies can contain a drawn secret."""
    assert not set(IDENTIFIER_ALPHABET) & set(SECRET_ALPHABET)

"""The per-field diff (SPEC §3)."""

from __future__ import annotations

from reactive_entities.domain.diff import changed_fields, diff
from reactive_entities.domain.json import Document


def test_create_changes_every_field_including_nulls() -> None:
    """A create changes every field of next, null ones included; delta is next."""
    next_doc: Document = {"status": "open", "owner": None, "tags": []}
    fields, delta = diff(None, next_doc)
    assert fields == ("owner", "status", "tags")
    assert delta == next_doc


def test_create_delta_is_a_copy() -> None:
    """The create delta is a new dict, not the caller's document."""
    next_doc: Document = {"a": 1}
    _, delta = diff(None, next_doc)
    assert delta is not next_doc


def test_update_changes_only_fields_that_differ() -> None:
    """An update changes the fields whose values differ; delta holds their next values."""
    prev: Document = {"status": "open", "severity": "low", "count": 1}
    next_doc: Document = {"status": "resolved", "severity": "low", "count": 1}
    assert diff(prev, next_doc) == (("status",), {"status": "resolved"})


def test_update_compares_structurally() -> None:
    """``1`` → ``1.0`` and reordered keys are no change; ``1`` → ``true`` is one."""
    prev: Document = {"n": 1, "m": {"a": 1, "b": 2}, "flag": 1}
    next_doc: Document = {"n": 1.0, "m": {"b": 2, "a": 1}, "flag": True}
    assert diff(prev, next_doc) == (("flag",), {"flag": True})


def test_update_nested_values_change_as_a_whole() -> None:
    """A change deep inside a value makes the whole value the delta."""
    prev: Document = {"meta": {"region": "eu", "zone": "a"}}
    next_doc: Document = {"meta": {"region": "us", "zone": "a"}}
    assert diff(prev, next_doc) == (("meta",), {"meta": {"region": "us", "zone": "a"}})


def test_update_null_to_value_and_back() -> None:
    """A null field that gets a value changes, and so does the reverse."""
    assert diff({"a": None}, {"a": 0}) == (("a",), {"a": 0})
    assert diff({"a": 0}, {"a": None}) == (("a",), {"a": None})


def test_remove_changes_every_field_with_an_empty_delta() -> None:
    """A remove changes every field of prev; the delta is empty."""
    assert diff({"b": 1, "a": None}, None) == (("a", "b"), {})


def test_both_none_is_no_change() -> None:
    """Neither side existing is a no-op."""
    assert diff(None, None) == ((), {})


def test_identical_documents_are_no_change() -> None:
    """Structurally equal documents give no changed fields and an empty delta."""
    doc: Document = {"a": [1, {"b": None}], "c": "x"}
    assert diff(doc, {"c": "x", "a": [1.0, {"b": None}]}) == ((), {})


def test_changed_fields_are_sorted() -> None:
    """``changed_fields`` is a sorted tuple whatever the documents' key order."""
    prev: Document = {"z": 1, "a": 1, "m": 1}
    next_doc: Document = {"m": 2, "z": 2, "a": 2}
    fields, delta = diff(prev, next_doc)
    assert fields == ("a", "m", "z")
    assert list(delta) == ["a", "m", "z"]


def test_a_key_present_on_one_side_only_is_changed() -> None:
    """A field added or dropped between the documents counts as changed."""
    assert changed_fields({"a": 1, "gone": 2}, {"a": 1, "new": None}) == ("gone", "new")
    assert diff({"a": 1, "gone": 2}, {"a": 1}) == (("gone",), {"gone": None})


def test_changed_fields_with_equal_sizes_but_different_keys() -> None:
    """Equal-sized documents with different keys report both sides' keys."""
    assert changed_fields({"a": 1}, {"b": 1}) == ("a", "b")

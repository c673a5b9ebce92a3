"""Building the transition rows of a change (SPEC §7, §13.3)."""

from __future__ import annotations

from reactive_entities.domain.events import ABSENT, Transition
from reactive_entities.domain.json import Document
from reactive_entities.domain.masking import TOKEN, mask_document
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.transitions import build_transitions


def test_a_create_has_absent_from_values() -> None:
    """Each row of a create comes from ``ABSENT``."""
    next_doc: Document = {"a": 1, "b": None}
    rows = build_transitions(("a", "b"), None, next_doc, None, next_doc)
    assert rows == (Transition("a", ABSENT, 1, False), Transition("b", ABSENT, None, False))


def test_an_update_carries_prev_values() -> None:
    """Each row of an update goes from the prev value to the next; null stays None."""
    prev: Document = {"a": None, "b": 1}
    next_doc: Document = {"a": "x", "b": 2}
    rows = build_transitions(("a", "b"), prev, next_doc, prev, next_doc)
    assert rows == (Transition("a", None, "x", False), Transition("b", 1, 2, False))


def test_a_remove_has_no_rows() -> None:
    """A remove records no transition rows."""
    prev: Document = {"a": 1}
    assert build_transitions(("a",), prev, None, prev, None) == ()


def test_rows_follow_the_given_field_order() -> None:
    """Rows come in the order of ``fields``."""
    next_doc: Document = {"a": 1, "b": 2, "c": 3}
    rows = build_transitions(("c", "a"), None, next_doc, None, next_doc)
    assert [row.field for row in rows] == ["c", "a"]


def test_rows_are_masked_when_masking_changed_a_value() -> None:
    """``masked`` is true when masking changed the from or the to value, and only then."""
    secrets = SecretSet.of(["hunter22"])
    prev: Document = {"old": "hunter22", "new": "clear", "same": 1}
    next_doc: Document = {"old": "clear", "new": "hunter22", "same": 2}
    rows = build_transitions(
        ("new", "old", "same"),
        prev,
        next_doc,
        mask_document(prev, secrets),
        mask_document(next_doc, secrets),
    )
    assert rows == (
        Transition("new", "clear", TOKEN, True),
        Transition("old", TOKEN, "clear", True),
        Transition("same", 1, 2, False),
    )


def test_sensitive_rows_are_always_masked() -> None:
    """A sensitive field's row counts as masked, even when its value was already ``****``."""
    sensitive = frozenset({"pin"})
    prev: Document = {"pin": TOKEN}
    next_doc: Document = {"pin": "1234"}
    rows = build_transitions(
        ("pin",),
        prev,
        next_doc,
        mask_document(prev, EMPTY_SECRETS, sensitive),
        mask_document(next_doc, EMPTY_SECRETS, sensitive),
        sensitive,
    )
    assert rows == (Transition("pin", TOKEN, TOKEN, True),)

"""Declarations of deliberately non-reactive state (SPEC §10)."""

from __future__ import annotations

import attrs
import pytest

from reactive_entities.domain.declarations import NonReactiveDeclaration, declaration_problem


def test_a_declaration_is_a_frozen_value() -> None:
    """A declaration holds table, reason and note, and cannot be changed."""
    declaration = NonReactiveDeclaration("samples", "raw-sample", "one row per reading")
    assert (declaration.table, declaration.reason, declaration.note) == (
        "samples",
        "raw-sample",
        "one row per reading",
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        declaration.table = "other"  # type: ignore[misc]


@pytest.mark.parametrize("reason", ["raw-sample", "sensitive", "externally-owned", "bookkeeping"])
def test_every_documented_reason_is_accepted(reason: str) -> None:
    """Each of the four reasons makes a valid declaration, with or without a note."""
    assert declaration_problem("t", reason, None) is None
    assert declaration_problem("t", reason, "why") is None


@pytest.mark.parametrize(
    ("table", "reason", "note", "message"),
    [
        ("", "sensitive", None, "table must be a non-empty str"),
        ("  ", "sensitive", None, "table must be a non-empty str"),
        (3, "sensitive", None, "table must be a non-empty str (got 3)"),
        ("t", "because", None, "reason must be one of raw-sample, sensitive"),
        ("t", None, None, "(got None)"),
        ("t", "sensitive", 5, "note must be a str or None (got int)"),
    ],
)
def test_bad_declarations_say_why(
    table: object, reason: object, note: object, message: str
) -> None:
    """A blank table, an unknown reason or a non-str note is refused with a reason."""
    problem = declaration_problem(table, reason, note)
    assert problem is not None
    assert message in problem

"""Laws of canonical JSON and structural equality (SPEC §2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reactive_entities.domain.json import JSONValue
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import equal_variants, json_values


@given(json_values())
def test_canonical_json_is_deterministic(value: JSONValue) -> None:
    """Canonical JSON of a value is stable and is its own canonical form."""
    laws.canonical_json_is_deterministic(value)


@given(st.data(), json_values())
def test_equal_variants_agree(data: st.DataObject, value: JSONValue) -> None:
    """Reordered keys and int/float spellings change neither the text nor equality."""
    laws.equal_variants_agree(value, data.draw(equal_variants(value)))


@given(json_values(), json_values())
def test_structural_equality_matches_canonical_json_on_unrelated_values(
    a: JSONValue, b: JSONValue
) -> None:
    """Structural equality agrees with canonical-JSON identity for arbitrary pairs."""
    laws.structural_equality_matches_canonical_json(a, b)


@given(st.data(), json_values())
def test_structural_equality_matches_canonical_json_on_near_values(
    data: st.DataObject, value: JSONValue
) -> None:
    """Structural equality agrees with canonical JSON for a value and its near neighbours."""
    variant = data.draw(equal_variants(value))
    other = data.draw(st.sampled_from([variant, [variant], True, 1, 1.0, 0, False, None]))
    laws.structural_equality_matches_canonical_json(value, variant)
    laws.structural_equality_matches_canonical_json(value, other)


@given(st.data(), json_values(), json_values())
def test_structural_equality_is_an_equivalence(
    data: st.DataObject, a: JSONValue, unrelated: JSONValue
) -> None:
    """Structural equality is reflexive, symmetric and transitive."""
    b = data.draw(equal_variants(a))
    c = data.draw(st.sampled_from([data.draw(equal_variants(b)), unrelated]))
    laws.structural_equality_is_an_equivalence(a, b, c)


@given(st.integers())
def test_integral_float_equals_int(n: int) -> None:
    """``1.0`` ≡ ``1`` at any depth."""
    laws.integral_float_equals_int(n)


@given(st.booleans(), st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_bool_never_equals_number(flag: bool, number: int | float) -> None:
    """``true`` ≠ ``1`` and ``false`` ≠ ``0`` at any depth."""
    laws.bool_never_equals_number(flag, number)

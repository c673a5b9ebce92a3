"""Laws of masking (SPEC §4).

Secrets made only of ``*`` are exempt from the "no secret survives" laws: the token
itself can spell them (see ``domain/masking.py``). Every other secret — nested,
overlapping, holding ``*``, ``#`` or digits — must never survive.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from reactive_entities.domain.json import JSONValue
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import (
    colliding_key_scenarios,
    deep_secret_scenarios,
    json_values,
    secret_scenarios,
    secret_sets,
    texts_around,
)


@given(secret_scenarios())
def test_mask_text_leaves_no_secret(scenario: tuple[SecretSet, str]) -> None:
    """No maskable secret survives in text spliced from secrets and their fragments."""
    laws.mask_text_leaves_no_secret(scenario[1], scenario[0])


@given(st.text(max_size=30), secret_sets(alphabet="ab*") | secret_sets())
def test_mask_text_leaves_no_secret_in_any_text(text: str, secrets: SecretSet) -> None:
    """No maskable secret survives in arbitrary text."""
    laws.mask_text_leaves_no_secret(text, secrets)


@given(st.data(), st.lists(st.text("ab*", min_size=1, max_size=7), max_size=4))
def test_mask_text_leaves_no_secret_with_starry_secrets(
    data: st.DataObject, values: list[str]
) -> None:
    """Secrets over ``ab*`` overlap the token and each other constantly; none survives."""
    text = data.draw(texts_around(values, alphabet="ab*", max_pieces=8))
    laws.mask_text_leaves_no_secret(text, SecretSet.of(values))


@given(secret_scenarios())
def test_mask_text_is_idempotent(scenario: tuple[SecretSet, str]) -> None:
    """Masking twice equals masking once when no secret is made of ``*`` alone."""
    secrets, text = scenario
    assume(not any(laws.only_stars(s) for s in secrets.maskable))
    laws.mask_text_is_idempotent(text, secrets)


@given(deep_secret_scenarios())
def test_mask_deep_leaves_no_secret(scenario: tuple[SecretSet, JSONValue]) -> None:
    """No maskable secret survives in any string or key, and no entry is lost."""
    laws.mask_deep_leaves_no_secret(scenario[1], scenario[0])


@given(colliding_key_scenarios())
def test_mask_deep_collision_suffixes_leave_no_secret(
    scenario: tuple[SecretSet, dict[str, JSONValue]],
) -> None:
    """Keys that mask alike keep every entry, and no ``#2`` suffix completes a secret."""
    laws.mask_deep_leaves_no_secret(scenario[1], scenario[0])


@given(deep_secret_scenarios())
def test_mask_deep_is_identity_without_secrets_or_else_changes(
    scenario: tuple[SecretSet, JSONValue],
) -> None:
    """The very input comes back when nothing is maskable; otherwise it changes."""
    laws.mask_deep_returns_input_when_nothing_is_maskable(scenario[1], scenario[0])


@given(json_values(), secret_sets())
def test_mask_deep_returns_unrelated_values_untouched(value: JSONValue, secrets: SecretSet) -> None:
    """Arbitrary values mostly hold no secret: they come back as the same object."""
    laws.mask_deep_returns_input_when_nothing_is_maskable(value, secrets)

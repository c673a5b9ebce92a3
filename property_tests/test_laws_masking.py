"""Laws of masking (SPEC §4).

Secrets made only of ``*`` are exempt from the "no secret survives" laws: the token
itself can spell them (see ``domain/masking.py``). Every other secret — nested,
overlapping, holding ``*``, ``#`` or digits — must never survive.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from reactive_entities.domain.json import JSONValue
from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import SMALL_SET, SecretSet
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import (
    colliding_key_scenarios,
    deep_secret_scenarios,
    json_values,
    secret_lists,
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


@given(st.data(), secret_sets())
def test_escaped_forms_never_survive_message_masking(
    data: st.DataObject, secrets: SecretSet
) -> None:
    """No secret survives in ``repr``, JSON or backslash-doubled form (messages, logs)."""
    forms = [form for s in secrets.maskable for form in laws.secret_forms(s)]
    text = data.draw(texts_around([*forms, repr([str(s) for s in secrets.maskable])]))
    laws.escaped_masking_leaves_no_form(text, secrets)


@given(st.data(), st.lists(st.text("ab\\'\"", min_size=1, max_size=5), min_size=1, max_size=4))
def test_escaped_forms_of_quote_and_backslash_secrets_never_survive(
    data: st.DataObject, values: list[str]
) -> None:
    """Secrets made of quotes and backslashes, escaped by repr or JSON, are masked."""
    forms = [form for s in values for form in laws.secret_forms(s)]
    text = data.draw(texts_around(forms, alphabet="ab\\'\"", max_pieces=6))
    laws.escaped_masking_leaves_no_form(text, SecretSet.of(values))


@given(st.data(), st.lists(st.text("ab*", min_size=1, max_size=6), min_size=1, max_size=6))
def test_automaton_finds_every_occurrence(data: st.DataObject, values: list[str]) -> None:
    """Aho–Corasick ranges equal brute force: overlaps and touches merged, nothing missed."""
    text = data.draw(texts_around(values, alphabet="ab*", max_pieces=8))
    laws.automaton_finds_what_brute_force_finds(text, values)


@given(st.data(), st.lists(st.text("ab*", min_size=4, max_size=7), min_size=1, max_size=6))
def test_small_sets_find_every_occurrence(data: st.DataObject, values: list[str]) -> None:
    """A small set's regex ranges equal brute force: overlaps, touches, one value
    inside another, all merged; nothing missed."""
    text = data.draw(texts_around(values, alphabet="ab*", max_pieces=8))
    laws.small_set_finds_what_brute_force_finds(text, values)


@given(st.data(), st.lists(st.text("abcd", min_size=4, max_size=7), min_size=1, max_size=6))
def test_small_sets_of_mixed_values_find_every_occurrence(
    data: st.DataObject, values: list[str]
) -> None:
    """The same with a wider alphabet, where some values cannot be overlapped past
    their end and the search resumes there."""
    text = data.draw(texts_around(values, alphabet="abcd", max_pieces=8))
    laws.small_set_finds_what_brute_force_finds(text, values)


@given(st.data(), secret_lists())
def test_large_sets_mask_like_small_ones(data: st.DataObject, values: list[str]) -> None:
    """A set big enough for the automaton masks a text exactly as a small set's regex does."""
    text = data.draw(texts_around(values))
    padding = [f"zz-unused-{i}" for i in range(SMALL_SET + 1)]
    small, large = SecretSet.of(values), SecretSet.of([*values, *padding])
    assert large.automaton is not None
    assert mask_text(text, large) == mask_text(text, small)


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

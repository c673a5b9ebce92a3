"""Masking secrets out of text and documents (SPEC §4, §13.4)."""

from __future__ import annotations

import copy

import pytest

from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.masking import TOKEN, mask_deep, mask_document, mask_text
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet

SECRETS = SecretSet.of(["secret", "supersecret"])


def test_the_token_is_four_stars() -> None:
    """The token is ``****``."""
    assert TOKEN == "****"


def test_nested_secrets_leave_no_fragment() -> None:
    """``value=supersecret`` with {secret, supersecret} → ``value=****``."""
    assert mask_text("value=supersecret", SECRETS) == "value=****"


def test_overlapping_secrets_merge_into_one_token() -> None:
    """Two overlapping occurrences become a single token, no fragment of either left."""
    secrets = SecretSet.of(["abcdef", "defghi"])
    assert mask_text("xx abcdefghi xx", secrets) == "xx **** xx"


def test_touching_secrets_merge_into_one_token() -> None:
    """Occurrences that touch become one token."""
    secrets = SecretSet.of(["user", "pass"])
    assert mask_text("userpass!", secrets) == "****!"


def test_separate_occurrences_each_get_a_token() -> None:
    """Occurrences apart from one another are masked one by one."""
    assert mask_text("secret and secret", SECRETS) == "**** and ****"


def test_repeated_overlapping_occurrences_of_one_secret() -> None:
    """A secret overlapping itself (``aaaa`` in ``aaaaaa``) is masked as one run."""
    assert mask_text("xaaaaaax", SecretSet.of(["aaaa"])) == "x****x"


def test_short_secrets_are_not_masked() -> None:
    """Secrets under four characters stay in clear (they would shred ordinary text)."""
    assert mask_text("abc is here", SecretSet.of(["abc"])) == "abc is here"


def test_text_without_secrets_is_returned_as_is() -> None:
    """Clean text comes back as the very same object."""
    text = "nothing to see here"
    assert mask_text(text, SECRETS) is text
    assert mask_text(text, EMPTY_SECRETS) is text


def test_a_secret_spelled_by_token_and_clear_text_is_masked_too() -> None:
    """A ``*`` secret that token and clear text spell again is masked in another round."""
    secrets = SecretSet.of(["b***", "cdef"])
    masked = mask_text("bcdef", secrets)
    assert "b***" not in masked
    assert "cdef" not in masked
    assert set(masked) == {"*"}


def test_the_secret_that_is_the_token_leaves_text_alone() -> None:
    """A secret equal to ``****`` masks to itself; the text comes back as the same object."""
    text = "a **** b"
    assert mask_text(text, SecretSet.of(["****"])) is text


def test_mask_deep_masks_strings_in_lists_and_dicts() -> None:
    """Strings are masked at any depth; numbers, booleans and null are kept."""
    value: JSONValue = {"k": ["a secret", 1, 2.5, True, None, {"n": "supersecret!"}]}
    assert mask_deep(value, SECRETS) == {"k": ["a ****", 1, 2.5, True, None, {"n": "****!"}]}


def test_mask_deep_masks_dict_keys() -> None:
    """Dict keys are masked too."""
    assert mask_deep({"my secret": 1}, SECRETS) == {"my ****": 1}


def test_mask_deep_keeps_both_entries_of_colliding_keys() -> None:
    """Keys that mask alike keep every entry: later keys get ``#2``, ``#3``, …"""
    value: JSONValue = {"a secret": 1, "a supersecret": 2, "a ****": 3}
    assert mask_deep(value, SECRETS) == {"a ****": 1, "a ****#2": 2, "a ****#3": 3}


def test_a_masked_value_before_a_masked_key_keeps_order_and_both_changes() -> None:
    """A value masked before the first renamed key survives the in-order rebuild."""
    value: JSONValue = {"x": "the secret", "my secret": "plain", "z": ["secret"]}
    masked = mask_deep(value, SECRETS)
    assert masked == {"x": "the ****", "my ****": "plain", "z": ["****"]}
    assert isinstance(masked, dict)
    assert list(masked) == ["x", "my ****", "z"]


def test_occurrences_after_a_value_nothing_can_overlap_are_all_found() -> None:
    """When no value can reach past another's end, the search resumes at a match's end:
    touching, repeated and later occurrences are still masked, each run once."""
    secrets = SecretSet.of(["abcd", "wxyz", "0123456"])
    assert secrets.overlapping == frozenset()
    text = "abcdwxyz abcd-0123456abcd end abcd"
    assert mask_text(text, secrets) == "**** ****-**** end ****"


def test_an_occurrence_reaching_past_a_match_is_merged_with_it() -> None:
    """A value whose suffix starts another (``...pA`` / ``AKIA...``) is searched again
    from one past its start, so the overlapping one merges into the same token."""
    secrets = SecretSet.of(["ghp_Q8pA", "AKIAIOSF"])
    assert 8 in secrets.overlapping
    assert mask_text("x ghp_Q8pAKIAIOSF y", secrets) == "x **** y"


def test_mask_deep_skips_taken_suffixes() -> None:
    """A suffix already used by an existing key is skipped."""
    value: JSONValue = {"****": 1, "****#2": 2, "secret": 3}
    assert mask_deep(value, SECRETS) == {"****": 1, "****#2": 2, "****#3": 3}


def test_a_collision_suffix_never_completes_a_secret() -> None:
    """``****ab`` + ``#2`` would spell the secret ``ab#2``; the suffixed key is masked."""
    secrets = SecretSet.of(["zzzz", "ab#2"])
    masked = mask_deep({"****ab": 1, "zzzzab": 2}, secrets)
    assert isinstance(masked, dict)
    assert len(masked) == 2
    assert not any("ab#2" in key for key in masked)


@pytest.mark.parametrize(
    "value", [{"a": ["clean", {"b": "text"}]}, ["x", ["y"]], "plain", 12, None, True]
)
def test_mask_deep_returns_the_input_when_nothing_is_maskable(value: JSONValue) -> None:
    """With nothing maskable the input object itself comes back."""
    assert mask_deep(value, SECRETS) is value
    assert mask_deep(value, EMPTY_SECRETS) is value


def test_mask_deep_shares_untouched_branches() -> None:
    """Only the branch holding a secret is rebuilt; siblings are shared."""
    clean: list[JSONValue] = ["a", "b"]
    value: JSONValue = {"clean": clean, "dirty": ["secret"]}
    masked = mask_deep(value, SECRETS)
    assert isinstance(masked, dict)
    assert masked["clean"] is clean
    assert masked["dirty"] == ["****"]


def test_mask_deep_with_a_key_equal_to_the_token_secret_changes_nothing() -> None:
    """A key holding only the secret ``****`` masks to itself: the input comes back."""
    value: JSONValue = {"****": ["****"]}
    assert mask_deep(value, SecretSet.of(["****"])) is value


def test_mask_deep_does_not_mutate_its_input() -> None:
    """The input document is left as it was."""
    value: JSONValue = {"a secret": ["secret", {"secret": "x"}]}
    before = copy.deepcopy(value)
    mask_deep(value, SECRETS)
    assert value == before


def test_mask_document_never_masks_field_names() -> None:
    """Top-level keys are field names (schema, not data) and stay in clear."""
    doc: Document = {"secret": "my secret", "nested": {"secret": 1}}
    assert mask_document(doc, SECRETS) == {"secret": "my ****", "nested": {"****": 1}}


@pytest.mark.parametrize("value", ["ab", "a much longer password", 7, "", [1, 2], {"k": "v"}])
def test_mask_document_replaces_sensitive_fields_whole(value: JSONValue) -> None:
    """A sensitive field reads ``****`` whatever its value or length."""
    doc: Document = {"password": value, "name": "alice"}
    masked = mask_document(doc, EMPTY_SECRETS, frozenset({"password"}))
    assert masked == {"password": TOKEN, "name": "alice"}


def test_mask_document_keeps_a_null_sensitive_field_null() -> None:
    """SPEC §16.2: a sensitive field holding null stays null (set and cleared differ)."""
    doc: Document = {"password": None, "name": "alice"}
    assert mask_document(doc, EMPTY_SECRETS, frozenset({"password"})) is doc


def test_mask_document_combines_sensitive_fields_and_run_secrets() -> None:
    """Sensitive fields are replaced whole while run secrets are masked elsewhere."""
    doc: Document = {"password": "supersecret", "note": "uses supersecret", "n": 1}
    masked = mask_document(doc, SECRETS, frozenset({"password"}))
    assert masked == {"password": TOKEN, "note": "uses ****", "n": 1}


def test_mask_document_ignores_sensitive_names_that_are_not_fields() -> None:
    """A sensitive name missing from the document adds nothing."""
    doc: Document = {"name": "alice"}
    assert mask_document(doc, EMPTY_SECRETS, frozenset({"password"})) == {"name": "alice"}


def test_mask_document_returns_the_document_when_nothing_changes() -> None:
    """With nothing to mask and no sensitive field the very document comes back."""
    doc: Document = {"name": "alice", "tags": ["x"], "meta": {"k": 1}}
    assert mask_document(doc, SECRETS) is doc
    assert mask_document(doc, EMPTY_SECRETS) is doc


def test_mask_document_does_not_mutate_its_input() -> None:
    """The input document keeps its secret and its sensitive value."""
    doc: Document = {"password": "pw", "note": "secret"}
    before = copy.deepcopy(doc)
    mask_document(doc, SECRETS, frozenset({"password"}))
    assert doc == before

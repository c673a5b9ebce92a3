"""The secret set of one run (SPEC §4)."""

from __future__ import annotations

import pytest

from reactive_entities.domain.secret_set import EMPTY_SECRETS, MIN_SECRET_LENGTH, SecretSet


def test_values_are_deduplicated_and_empty_strings_ignored() -> None:
    """Each non-empty value is kept once; empty strings are dropped."""
    secrets = SecretSet.of(["token", "token", "", "other"])
    assert secrets.values == frozenset({"token", "other"})
    assert len(secrets) == 2


def test_short_values_are_kept_but_never_masked() -> None:
    """Values under four characters are members but not maskable."""
    secrets = SecretSet.of(["abc", "abcd"])
    assert MIN_SECRET_LENGTH == 4
    assert "abc" in secrets
    assert secrets.maskable == ("abcd",)


def test_only_short_values_make_a_falsy_set() -> None:
    """A set is truthy exactly when something is maskable."""
    assert not SecretSet.of(["ab", "xyz"])
    assert SecretSet.of(["abcd"])
    assert not EMPTY_SECRETS
    assert len(EMPTY_SECRETS) == 0


def test_maskable_values_are_longest_first() -> None:
    """Maskable values come longest first, ties in string order."""
    secrets = SecretSet.of(["secret", "supersecret", "bbbb", "aaaa"])
    assert secrets.maskable == ("supersecret", "secret", "aaaa", "bbbb")


def test_non_str_values_are_rejected() -> None:
    """A value that is not a ``str`` raises ``TypeError`` naming its type."""
    with pytest.raises(TypeError, match=r"got int"):
        SecretSet.of(["fine", 1234])  # type: ignore[list-item]


def test_the_finder_treats_values_literally() -> None:
    """Regex metacharacters in a secret are matched literally."""
    secrets = SecretSet.of(["a.b*c"])
    assert secrets.finder is not None
    assert secrets.finder.search("aXbbc") is None
    assert secrets.finder.search("xx a.b*c") is not None


def test_has_star_tells_whether_a_maskable_value_holds_the_token_character() -> None:
    """``has_star`` is set by maskable values holding ``*`` only."""
    assert SecretSet.of(["pa*ss"]).has_star
    assert not SecretSet.of(["pass", "a*"]).has_star


def test_union_adds_values() -> None:
    """``union`` returns a new set holding both sets' values."""
    base = SecretSet.of(["first"])
    both = base.union(["second"])
    assert both.values == frozenset({"first", "second"})
    assert base.values == frozenset({"first"})


def test_equality_and_hash_follow_the_values() -> None:
    """Two sets with the same values are equal and hash alike, whatever the order."""
    a = SecretSet.of(["one1", "two2"])
    b = SecretSet.of(["two2", "one1", "one1"])
    assert a == b
    assert hash(a) == hash(b)
    assert a != SecretSet.of(["one1"])
    assert a != {"one1", "two2"}


def test_membership_covers_every_registered_value() -> None:
    """``in`` answers for any registered value, maskable or not."""
    secrets = SecretSet.of(["abc", "abcdef"])
    assert "abc" in secrets
    assert "abcdef" in secrets
    assert "abcd" not in secrets

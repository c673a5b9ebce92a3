"""Masking secrets out of text and documents (SPEC §4).

``mask_text`` finds every occurrence of every maskable secret in the *original* text,
merges overlapping or touching ranges, and replaces each merged range by one ``TOKEN``.
Overlapping secrets therefore never leave a fragment of either in clear.

A secret may contain ``*``; the token next to clear text could then spell a secret again
(``"ab*"`` + ``"****"``). ``mask_text`` therefore repeats until no secret occurs or a
round changes nothing. A round that changes the text shortens it or turns a non-``*``
character into ``*``, so the loop ends; only a secret made of nothing but ``*`` can
survive, and it reveals nothing the token does not.

``mask_deep`` rebuilds lists and dicts only where something changed: with nothing to
mask it returns the very object it was given, which keeps the hot path allocation-free.

>>> s = SecretSet.of(["secret", "supersecret"])
>>> mask_text("value=supersecret", s)
'value=****'
>>> mask_deep({"k": ["a secret", 1]}, s)
{'k': ['a ****', 1]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reactive_entities.domain.automaton import Automaton
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.secret_set import SecretSet

__all__ = ["TOKEN", "mask_text", "mask_deep", "mask_document"]

TOKEN = "****"


def mask_text(text: str, secrets: SecretSet) -> str:
    """``text`` with every maskable secret of ``secrets`` replaced (merged ranges)."""
    finder = secrets.finder
    if finder is None:
        return text
    automaton = secrets.automaton
    if automaton is not None:
        return _mask_with_automaton(text, secrets, automaton)
    if finder.search(text) is None:
        return text
    while True:
        masked = _replace(text, _ranges(text, secrets.maskable))
        if masked == text:
            # Only the secret "****" occurred, and the token replaced it by itself. Return
            # the very object: callers tell by identity whether masking changed a value.
            return text
        # Without "*" in any secret, a token cannot help spell a secret: one pass is
        # enough (see the module docstring).
        if not secrets.has_star or finder.search(masked) is None:
            return masked
        text = masked


def _mask_with_automaton(text: str, secrets: SecretSet, automaton: Automaton) -> str:
    # Many secrets: one pass of the automaton finds every occurrence, already merged.
    while True:
        ranges = automaton.ranges(text)
        if not ranges:
            return text
        masked = _replace(text, ranges)
        if masked == text or not secrets.has_star:
            return text if masked == text else masked
        text = masked


def _ranges(text: str, maskable: tuple[str, ...]) -> list[tuple[int, int]]:
    # Every occurrence of every secret, overlapping ones included (str.find is C-fast
    # and a small set has few secrets), sorted and merged when overlapping or touching.
    found = []
    find = text.find
    for value in maskable:
        start = find(value)
        while start != -1:
            found.append((start, start + len(value)))
            start = find(value, start + 1)
    found.sort()
    merged = []
    run_start, run_end = found[0]
    for start, end in found[1:]:
        if start <= run_end:  # overlapping or touching: extend the current range
            if end > run_end:
                run_end = end
            continue
        merged.append((run_start, run_end))
        run_start, run_end = start, end
    merged.append((run_start, run_end))
    return merged


def _replace(text: str, ranges: list[tuple[int, int]]) -> str:
    """``text`` with each of the sorted, disjoint ``ranges`` replaced by one token."""
    pieces: list[str] = []
    cursor = 0
    for start, end in ranges:
        pieces.append(text[cursor:start])
        pieces.append(TOKEN)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def mask_deep(value: JSONValue, secrets: SecretSet) -> JSONValue:
    """``value`` with secrets masked in every string, dict keys included.

    Numbers, booleans and null are unchanged. When two keys mask to the same text the
    later one is suffixed ``#2``, ``#3``, … so no entry is lost (and masked again, in case
    the suffix completes a secret). With nothing maskable the input object itself is
    returned.
    """
    return _masked(value, secrets) if secrets else value


def _masked(value: JSONValue, secrets: SecretSet) -> JSONValue:
    # The one walker: a list or dict is copied only once something inside it changed,
    # so callers tell by identity whether masking changed a value.
    if type(value) is str:
        return mask_text(value, secrets)
    search = _search(secrets)
    if type(value) is list:
        items: list[JSONValue] | None = None
        for i, item in enumerate(value):
            if type(item) is str and search(item) is None:
                continue  # clean text, the common case, without a call
            masked = _masked(item, secrets)
            if masked is not item:
                if items is None:
                    items = value.copy()
                items[i] = masked
        return value if items is None else items
    if type(value) is dict:
        entries: dict[str, JSONValue] | None = None
        for key, item in value.items():
            masked_key = key if search(key) is None else mask_text(key, secrets)
            masked = item if type(item) is str and search(item) is None else _masked(item, secrets)
            if entries is None:
                if masked_key is key and masked is item:
                    continue
                entries = _entries_before(value, key)
            if masked_key in entries:  # two keys masked alike: keep both
                masked_key = _free_key(masked_key, entries, secrets)
            entries[masked_key] = masked
        return value if entries is None else entries
    return value


def _search(secrets: SecretSet) -> Callable[[str], object | None]:
    """The finder's test "does any secret occur in this text?" (a set with a finder)."""
    finder = secrets.finder
    if finder is None:
        raise ValueError("no maskable secret: nothing to search for")
    return finder.search


def _entries_before(value: dict[str, JSONValue], stop: str) -> dict[str, JSONValue]:
    """The entries of ``value`` before key ``stop``, in order."""
    entries: dict[str, JSONValue] = {}
    for key, item in value.items():
        if key is stop:
            break
        entries[key] = item
    return entries


def _free_key(key: str, taken: Mapping[str, object], secrets: SecretSet) -> str:
    # The suffix can complete a secret ("****ab" + "#2" spells "ab#2"), so each candidate
    # is masked too. Larger numbers eventually leave digits no secret covers: this ends.
    n = 2
    while True:
        candidate = mask_text(f"{key}#{n}", secrets)
        if candidate not in taken:
            return candidate
        n += 1


def mask_document(
    doc: Document, secrets: SecretSet, sensitive: frozenset[str] = frozenset()
) -> Document:
    """A document with run secrets masked in its values and sensitive fields replaced.

    Top-level keys are field names (schema, not data) and are never masked. A field in
    ``sensitive`` is replaced whole by ``TOKEN`` whatever its value, except null, which
    stays null (set and cleared must stay distinguishable, SPEC §16.2). Returns ``doc``
    itself when nothing changed.
    """
    out: Document | None = None
    for field in sensitive:
        if doc.get(field) is not None:
            if out is None:
                out = dict(doc)
            out[field] = TOKEN
    if not secrets:
        return doc if out is None else out
    search = _search(secrets)
    for field, value in doc.items():
        if field in sensitive or (type(value) is str and search(value) is None):
            continue
        masked = _masked(value, secrets)
        if masked is not value:
            if out is None:
                out = dict(doc)
            out[field] = masked
    return doc if out is None else out

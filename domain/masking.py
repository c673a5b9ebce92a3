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

import re
from collections.abc import Callable, Mapping

from reactive_entities.domain.automaton import Automaton
from reactive_entities.domain.json import Document, JSONValue
from reactive_entities.domain.secret_set import SecretSet

__all__ = ["TOKEN", "mask_text", "mask_deep", "mask_document"]

TOKEN = "****"


def mask_text(text: str, secrets: SecretSet) -> str:
    """``text`` with every maskable secret of ``secrets`` replaced (merged ranges)."""
    regex = secrets.regex
    if regex is not None:
        if len(text) < secrets.shortest:
            return text
        first = regex.search(text)
        return text if first is None else _mask_found(text, first, secrets)
    automaton = secrets.automaton
    return text if automaton is None else _mask_with_automaton(text, secrets, automaton)


def _mask_found(text: str, first: re.Match[str], secrets: SecretSet) -> str:
    # A small set's regex found ``first``; mask from there (the callers searched already).
    while True:
        masked = _replace(text, regex_ranges(text, first, secrets))
        if masked == text:
            # Only the secret "****" occurred, and the token replaced it by itself. Return
            # the very object: callers tell by identity whether masking changed a value.
            return text
        # Without "*" in any secret, a token cannot help spell a secret: one pass is
        # enough (see the module docstring).
        if not secrets.has_star:
            return masked
        regex = secrets.regex
        found = None if regex is None else regex.search(masked)
        if found is None:
            return masked
        text, first = masked, found


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


def regex_ranges(text: str, first: re.Match[str], secrets: SecretSet) -> list[tuple[int, int]]:
    """Every occurrence of a small set's values in ``text``, merged when overlapping or
    touching, from ``first``, the leftmost, on.

    The set's ``regex`` is the alternation of its values, longest first, so a match is
    the longest value starting at the leftmost position that starts one; the shorter
    ones starting there lie inside it. Searching again from one past each match's start
    therefore visits every start position that begins an occurrence, in order: their
    union is the union of all occurrences, which one merged range after another covers.
    An occurrence that starts inside a match and reaches past its end needs a proper
    suffix of the matched value to be a proper prefix of some value; when the matched
    value's length rules that out (``overlapping``), the search resumes at its end.
    """
    regex = secrets.regex
    assert regex is not None  # a small set always has one
    search = regex.search
    overlapping = secrets.overlapping
    last = len(text) - secrets.shortest  # no occurrence starts after this
    ranges = []
    run_start = start = first.start()
    run_end = end = first.end()
    while True:
        resume = start + 1 if end - start in overlapping else end
        if resume > last:
            break
        found = search(text, resume)
        if found is None:
            break
        start = found.start()
        end = found.end()
        if start <= run_end:  # overlapping or touching: extend the current range
            if end > run_end:
                run_end = end
        else:
            ranges.append((run_start, run_end))
            run_start, run_end = start, end
    ranges.append((run_start, run_end))
    return ranges


def _replace(text: str, ranges: list[tuple[int, int]]) -> str:
    """``text`` with each of the sorted, disjoint ``ranges`` replaced by one token."""
    if len(ranges) == 1:  # the common case, without the list
        start, end = ranges[0]
        return text[:start] + TOKEN + text[end:]
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
    shortest = secrets.shortest  # a shorter text holds no secret: not even searched
    if type(value) is list:
        items: list[JSONValue] | None = None
        for i, item in enumerate(value):
            if type(item) is str:
                if len(item) < shortest:
                    continue
                hit = search(item)
                if hit is None:
                    continue  # clean text, the common case, without a call
                masked: JSONValue = _mask_hit(item, hit, secrets)
            elif type(item) is list or type(item) is dict:
                masked = _masked(item, secrets)
            else:
                continue  # a number, a flag or null: nothing to mask
            if masked is not item:
                if items is None:
                    items = value.copy()
                items[i] = masked
        return value if items is None else items
    if type(value) is dict:
        # A copy once a value changes; rebuilt in order from the first key that masking
        # renames (only then can two keys collide), entry by entry after it.
        entries: dict[str, JSONValue] | None = None
        renamed = False
        for key, item in value.items():
            hit = None if len(key) < shortest else search(key)
            masked_key = key if hit is None else _mask_hit(key, hit, secrets)
            if type(item) is str:
                hit = None if len(item) < shortest else search(item)
                masked = item if hit is None else _mask_hit(item, hit, secrets)
            elif type(item) is list or type(item) is dict:
                masked = _masked(item, secrets)
            else:
                masked = item  # a number, a flag or null: nothing to mask
            if not renamed:
                if masked_key is key:
                    if masked is not item:
                        if entries is None:
                            entries = value.copy()
                        entries[key] = masked
                    continue
                entries = _entries_before(value if entries is None else entries, key)
                renamed = True
            assert entries is not None  # set above, once renamed
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


def _mask_hit(text: str, hit: object, secrets: SecretSet) -> str:
    """``text`` masked, given the finder's (truthy) answer for it: a small set's match
    lets masking start there instead of searching again."""
    if isinstance(hit, re.Match):
        return _mask_found(text, hit, secrets)
    return mask_text(text, secrets)


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
    doc: Document,
    secrets: SecretSet,
    sensitive: frozenset[str] = frozenset(),
    *,
    masked_before: tuple[Document, Document] | None = None,
) -> Document:
    """A document with run secrets masked in its values and sensitive fields replaced.

    Top-level keys are field names (schema, not data) and are never masked. A field in
    ``sensitive`` is replaced whole by ``TOKEN`` whatever its value, except null, which
    stays null (set and cleared must stay distinguishable, SPEC §16.2). Returns ``doc``
    itself when nothing changed.

    ``masked_before`` is ``(raw, masked)`` of a document this call's ``secrets`` and
    ``sensitive`` already masked (a write's previous state): a field whose value is the
    very object found there takes its masked form as is. Most fields of a write are
    untouched, so the next state's document mostly costs lookups.
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
    shortest = secrets.shortest
    before, masked_fields = masked_before if masked_before is not None else (_NOTHING, _NOTHING)
    for field, value in doc.items():
        if field in sensitive:
            continue
        if type(value) is str:
            if len(value) < shortest:
                continue
            if before.get(field) is value:
                masked: JSONValue = masked_fields[field]
            else:
                hit = search(value)
                if hit is None:
                    continue
                masked = _mask_hit(value, hit, secrets)
        elif type(value) is list or type(value) is dict:
            masked = masked_fields[field] if before.get(field) is value else _masked(value, secrets)
        else:
            continue  # a number, a flag or null: nothing to mask
        if masked is not value:
            if out is None:
                out = dict(doc)
            out[field] = masked
    return doc if out is None else out


_NOTHING: Document = {}  # no document masked before: no value is found in it

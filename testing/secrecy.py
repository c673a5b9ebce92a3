"""What the secrecy tests of both engines (sync and asyncio) share: the incidents and
secrets they draw, the library's own words a drawn secret must not spell, the invalid
states whose errors they read, and how they look for a leak.

A secret found where the library wrote its own words or generated values (a field name,
``ABSENT``, a random change id) has not leaked: drawn secrets avoid the vocabulary, and
:func:`without_generated` blanks change ids and stamps before the search.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from reactive_entities.domain.events import ChangeEvent, iso_utc
from reactive_entities.domain.secret_set import MIN_SECRET_LENGTH
from reactive_entities.testing.examples import Incident
from reactive_entities.testing.laws import secret_forms

__all__ = [
    "ALPHABET",
    "LOCALS_ALPHABET",
    "PLACEHOLDER",
    "VOCABULARY",
    "incidents_and_secrets",
    "invalid_incident_states",
    "leaks",
    "texts",
    "without_generated",
]

#: Data and secrets: printable, beyond ASCII, never ``*`` (the mask's own character).
ALPHABET = st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="*")
texts = st.text(ALPHABET, max_size=30)

#: Identifiers and keys the library writes itself (not data, so never masked): a secret
#: spelled by them ("delt" of "delta") would be found without any leak.
VOCABULARY = (
    "kind entity_id op prev next delta changed_fields actor run_id occurred_at change_id "
    "position type id name incident inc-1 run-1 create update remove status severity title "
    "token system_ids open investigating resolved low high system System null true false "
    "ABSENT"  # the repr of a created field's missing previous value in a history row
)

#: Stands where data would be; outside ``ALPHABET``, so no drawn secret contains it.
PLACEHOLDER = "\u0400" * 5

#: Drawn so no secret can spell the library's own words in a repr ("Secr", "self").
LOCALS_ALPHABET = "ÄÖÜßæøåñ\\'\"0123456789-_"


@st.composite
def incidents_and_secrets(draw: st.DrawFn) -> tuple[list[Incident], list[str]]:
    """A sequence of incident states and a set of secrets, some cut out of those states."""
    states = draw(
        st.lists(
            st.builds(
                Incident,
                status=st.sampled_from(["open", "investigating", "resolved"]),
                severity=st.sampled_from(["low", "high"]),
                title=texts,
                token=texts,
                system_ids=st.lists(texts, max_size=3).map(tuple),
            ),
            min_size=1,
            max_size=4,
        )
    )
    pieces = [s.title for s in states] + [i for s in states for i in s.system_ids]
    cut = [
        draw(st.sampled_from(pieces))[draw(st.integers(0, 3)) :]
        for _ in range(draw(st.integers(0, 3)))
    ]
    extra = draw(st.lists(st.text(ALPHABET, min_size=MIN_SECRET_LENGTH, max_size=8), max_size=2))
    secrets = [s for s in cut + extra if len(s) >= MIN_SECRET_LENGTH and s not in VOCABULARY]
    return states, secrets


def invalid_incident_states(value: str, pin: str) -> list[dict[str, Any]]:
    """Four states of the incident kind that fail validation, whatever ``value`` and
    ``pin`` (a sensitive ``token``) are, where their errors could quote them."""
    # No text is both a status and a severity: the first and last are invalid even when
    # value or pin is "open"; the second names an unknown field or gives one a number.
    return [
        {"status": value, "severity": value},
        {"status": "open", "severity": "low", value: 1},
        {"status": "open", "severity": "low", "token": 12345, "title": value + "x"},
        {"status": pin, "severity": pin, "token": pin},
    ]


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Secrets found in ``text`` as written or escaped (repr, JSON, backslash-doubled)."""
    return [
        s
        for s in secrets
        if any(form in text for form in secret_forms(s) if len(form) >= MIN_SECRET_LENGTH)
    ]


def without_generated(text: str, events: Iterable[ChangeEvent]) -> str:
    """``text`` with the values the library generated for ``events`` blanked: their
    change ids and stamps, in the forms a message shows them (``to_dict``'s ISO with a
    ``Z``, ``isoformat``, ``str``, ``repr``).

    They are not data and are never masked, so a secret that happens to spell part of
    one — ``0000`` in the random change id ``15d0000a-…`` — would be found without any
    leak. Look for secrets after blanking them.

    >>> from datetime import UTC, datetime
    >>> from reactive_entities.domain.actor import SYSTEM_ACTOR
    >>> at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    >>> event = ChangeEvent("k", "e", "create", None, {}, {}, (), SYSTEM_ACTOR, None, at, "c-0000")
    >>> without_generated("change c-0000 at 2026-01-02T03:04:05.000000Z", [event])
    'change … at …'
    """
    generated: set[str] = set()
    for event in events:
        at = event.occurred_at
        generated |= {event.change_id, iso_utc(at), at.isoformat(), str(at), repr(at)}
    for value in sorted(generated, key=len, reverse=True):  # a longer form first
        text = text.replace(value, "…")
    return text

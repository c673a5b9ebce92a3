r"""The escaped forms in which a secret shows up inside messages (SPEC §16.3).

An exception message or a formatted traceback rarely holds a secret as is: ``repr``
doubles a backslash and writes a newline as ``\n``; a ``repr`` of a text holding both
quote characters escapes ``'`` as ``\'``; JSON escapes ``"`` and, by default, every
non-ASCII character; a ``repr`` of a ``repr`` (a ``KeyError`` whose argument was itself
quoted) doubles everything again. ``escaped_forms`` lists those bodies (without the
surrounding quotes) so masking can catch each of them.

>>> sorted(escaped_forms("C:\\vault"))
['C:\\\\\\\\vault', 'C:\\\\vault']
>>> sorted(escaped_forms("ab'cd"))
["ab\\'cd", "ab\\\\'cd", "ab\\\\\\'cd"]
>>> escaped_forms("plain-secret")
set()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

__all__ = ["escaped_forms"]


def escaped_forms(secret: str, depth: int = 2) -> set[str]:
    """Every escaped body of ``secret`` (``repr`` with either quote style, JSON with and
    without ``ensure_ascii``, backslashes doubled), applied up to ``depth`` times;
    ``secret`` itself is not included."""
    found: set[str] = set()
    secret = str(secret)  # a plain str: a Secret's repr hides it
    level = {secret}
    for _ in range(depth):
        level = {form for text in level for form in _one_level(text)} - found - {secret}
        if not level:
            break
        found |= level
    return found


def escaped_forms_of(secrets: Iterable[str]) -> set[str]:
    """The union of :func:`escaped_forms` over ``secrets``."""
    out: set[str] = set()
    for secret in secrets:
        out |= escaped_forms(str(secret))  # str(): a Secret's repr hides it
    return out


def _one_level(text: str) -> Iterator[str]:
    quoted = repr(text)
    body = quoted[1:-1]
    yield body
    if quoted[0] == '"':
        # The text holds ' but no ": inside a longer text holding both, repr writes \'.
        yield body.replace("'", "\\'")
    yield json.dumps(text)[1:-1]
    yield json.dumps(text, ensure_ascii=False)[1:-1]
    yield text.replace("\\", "\\\\")

"""Keeping a DSN's password out of error messages (SPEC §16.4).

libpq quotes the part of a connection string it cannot parse — ``invalid
percent-encoded token: "Pw-Zq81x%zz"`` — and that part may be the password. The password
is found here by a lenient reading of the DSN (URL userinfo or ``password=`` parameter,
key/value ``password=…``) that works even when libpq's parser fails, and every form of
it (as written, percent-decoded, and escaped as ``repr``/JSON would) is masked out of a
message before the message is shown anyone.

>>> scrub('invalid percent-encoded token: "Pw-Zq81x%zz"', "postgresql://app:Pw-Zq81x%zz@h/db")
'invalid percent-encoded token: "****"'
>>> scrub("bad option near 'se cret'", "host=h password='se cret' dbname=db")
"bad option near '****'"
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import psycopg

from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import SecretSet

__all__ = ["dsn_passwords", "scrub", "scrubbed_error"]

_URL = re.compile(r"^\s*postgres(?:ql)?://(?P<userinfo>[^@/?#]*)@", re.IGNORECASE)
_URL_QUERY_PASSWORD = re.compile(r"[?&]password=(?P<value>[^&#]*)", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(
    r"(?:^|\s)password\s*=\s*(?:'(?P<quoted>(?:\\.|[^'\\])*)'|(?P<bare>\S+))", re.IGNORECASE
)


def dsn_passwords(dsn: str) -> set[str]:
    """Every form in which ``dsn``'s password could appear (empty without one)."""
    found: set[str] = set()
    url = _URL.match(dsn)
    if url is not None:
        userinfo = url.group("userinfo")
        if ":" in userinfo:  # a user name alone is no secret (and is often a common word)
            found.add(userinfo.split(":", 1)[1])
            found.add(userinfo)  # "user:password" together, as written
    for match in _URL_QUERY_PASSWORD.finditer(dsn):
        found.add(match.group("value"))
    if url is None:
        for match in _KEYWORD_PASSWORD.finditer(dsn):
            quoted = match.group("quoted")
            found.add(match.group("bare") if quoted is None else quoted)
            if quoted is not None:
                found.add(re.sub(r"\\(.)", r"\1", quoted))
    found |= {unquote(value) for value in found}
    return {value for value in found if value}


def scrub(text: str, dsn: str | None) -> str:
    """``text`` with every form of ``dsn``'s password masked (short ones included)."""
    if not dsn:
        return text
    passwords = dsn_passwords(dsn)
    if not passwords:
        return text
    secrets = SecretSet.of(passwords).escaped()
    text = mask_text(text, secrets)
    # Passwords shorter than the masking minimum are masked too, as whole tokens.
    for short in sorted((p for p in passwords if len(p) < 4), key=len, reverse=True):
        text = re.sub(rf"(?<![\w%]){re.escape(short)}(?![\w%])", "****", text)
    return text


def scrubbed_error(error: psycopg.Error, dsn: str | None) -> BaseException:
    """``error`` itself when its text holds no form of the password, else a new error of
    the same type whose message is scrubbed (to chain as ``__cause__`` instead)."""
    text = str(error)
    clean = scrub(text, dsn)
    if clean == text:
        return error
    try:
        return type(error)(clean)
    except Exception:  # an error class that takes other arguments
        return psycopg.Error(clean)

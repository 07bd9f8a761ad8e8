"""Broker URLs and the passwords in them: splitting, redaction, scrubbing. Pure, no I/O.

Shared by declare_amqp and priority_worker (which imports it), so that one rule decides what
a password looks like in text that leaves the process:

- :func:`split_urls`: one or several URLs, as a list and/or comma-separated, in order.
- :func:`redact_url`: the URL with its password replaced by ``***`` (for display).
- :func:`secret_forms` / :func:`url_secrets`: every form a password can take in text: as
  written in the URL (percent-encoded), decoded, and encoded again (with and without ``/``
  kept), so a message that quotes the URL or the decoded password is scrubbed either way.
- :func:`scrub` / :func:`redact`: the text with each of those forms replaced by ``***`` where
  it stands as a secret (not inside a name, not as a quoted name), longest first (a short form
  inside a longer one never leaves the rest behind).

Redaction is a security property: this module is its only implementation, and
``tests/declare/test_connection.py`` its test suite.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence

__all__ = [
    "AMQP_SCHEMES",
    "redact",
    "redact_url",
    "scrub",
    "secret_forms",
    "split_urls",
    "url_secrets",
]

AMQP_SCHEMES = ("amqp", "amqps")
MASK = "***"


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """``urls`` (one string, or several) split at commas, stripped, empty items dropped."""
    items = [urls] if isinstance(urls, str) else list(urls)
    return [u.strip() for item in items for u in item.split(",") if u.strip()]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name stays)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def secret_forms(password: str) -> set[str]:
    """The forms ``password`` can take in text: as given, percent-decoded and percent-encoded."""
    if not password:
        return set()
    decoded = urllib.parse.unquote(password)
    forms = {password, decoded}
    for plain in (password, decoded):
        forms.add(urllib.parse.quote(plain, safe=""))
        forms.add(urllib.parse.quote(plain))
    return {f for f in forms if f}


def url_secrets(urls: Iterable[str]) -> set[str]:
    """Every form of every password in ``urls`` (unparseable URLs are skipped)."""
    found: set[str] = set()
    for url in urls:
        try:
            password = urllib.parse.urlsplit(url).password
        except ValueError:
            continue
        if password:
            found |= secret_forms(password)
    return found


# A character that continues a name: a secret next to one is part of a name ("limited_guest"
# for the password "guest"), not the secret standing on its own.
_NAME_CHAR = re.compile(r"[\w.\-]")


def _stands_alone(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if (before and _NAME_CHAR.match(before)) or (after and _NAME_CHAR.match(after)):
        return False
    # 'guest' in quotes is how every message names an object: a user named like its password
    return not (before == after and before in ("'", '"') and not _is_credential(text, start))


# A credential field's name, its quote, separator and the value's opening quote: what
# ``_is_credential`` looks for right before a quoted value.
_CREDENTIAL_FIELD = re.compile(r"(pass(word)?|secret|token)[\"']?\s{0,8}[:=]\s{0,8}[\"']?$", re.I)
_FIELD_SPAN = 32  # the longest such prefix: "password" + quote + 8 spaces + ":" + 8 + quote


def _is_credential(text: str, start: int) -> bool:
    """Whether the quoted value at ``start`` is a credential field's (``"password": "..."``).

    Only the few characters before it are searched: a message that quotes the secret
    thousands of times (one line per refused object naming user 'guest') is scrubbed in
    linear time; searching all of ``text[:start]`` each time made it quadratic (20,000
    failures took minutes)."""
    return _CREDENTIAL_FIELD.search(text, max(0, start - _FIELD_SPAN), start) is not None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` where it stands as a secret,
    longest first: in a URL's user info, a credential field, or on its own — never inside a
    name (``limited_guest`` stays whole with the password ``guest``) and never as a quoted
    name (``user 'guest'``)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if secret not in text:
            continue
        pieces: list[str] = []
        last = 0
        for found in re.finditer(re.escape(secret), text):
            if _stands_alone(text, found.start(), found.end()):
                pieces += [text[last : found.start()], MASK]
                last = found.end()
        text = "".join(pieces) + text[last:]
    return text


def redact(text: str, password: str) -> str:
    """``text`` with every form of ``password`` (see :func:`secret_forms`) replaced by ``***``."""
    return scrub(text, secret_forms(password))

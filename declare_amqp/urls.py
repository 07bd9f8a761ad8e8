"""Broker URLs and the passwords in them: splitting, redaction, scrubbing. Pure, no I/O.

Shared by declare_amqp and priority_worker (which imports it), so that one rule decides what
a password looks like in text that leaves the process:

- :func:`split_urls`: one or several URLs, as a list and/or comma-separated, in order.
- :func:`redact_url`: the URL with its password replaced by ``***`` (for display).
- :func:`secret_forms` / :func:`url_secrets`: every form a password can take in text: as
  written in the URL (percent-encoded), decoded, and encoded again (with and without ``/``
  kept), so a message that quotes the URL or the decoded password is scrubbed either way.
- :func:`scrub` / :func:`redact`: the text with each of those forms replaced by ``***``,
  longest first (a short form inside a longer one never leaves the rest behind).

Redaction is a security property: this module is its only implementation, and
``tests/declare/test_connection.py`` its test suite.
"""

from __future__ import annotations

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


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``, longest first."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact(text: str, password: str) -> str:
    """``text`` with every form of ``password`` (see :func:`secret_forms`) replaced by ``***``."""
    return scrub(text, secret_forms(password))

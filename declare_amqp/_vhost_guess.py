"""The vhosts a plan's YAML files name, guessed from their text before they are parsed.

``plan`` starts reading the broker before it parses the files (``_cli.early_read``), so it
must name the vhosts to read before it knows them. The URL's vhost is the guess when the files
say nothing; a file that names its vhost (``vhost: billing`` at the top, or on its objects)
would make that guess miss, and the plan would read the broker a second time, after the
parse, with nothing to overlap. This reads the lines that name a vhost instead.

It is only a guess: the session uses the early read only when its vhosts are exactly those the
parsed files name (``Session.read``), so a wrong guess costs time, never a wrong plan. Where
the text is not plain enough to read without a parser (a definitions file, a quoted name with
an escape, a value on the next line, a flow mapping), it gives up and the caller keeps its
own guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._files import read_bytes

_KEY = b"vhost:"


def file_vhosts(paths: Sequence[str], override: str | None, default: str) -> list[str] | None:
    """The vhosts ``paths`` most likely name, in first-seen order; None when a file cannot be
    guessed from its text. ``override`` is ``--vhost`` (it replaces a file's own ``vhost``);
    ``default`` is the vhost of a file that names none (the URL's)."""
    found: dict[str, None] = {}
    for path in paths:
        if path.endswith(".json"):
            return None
        data = read_bytes(path)  # bounded, regular files only (the loader reads it again)
        if not isinstance(data, bytes):
            return None  # the loader reports it
        top, inner = _scan(data)
        if top is _UNREADABLE or inner is None:
            return None
        found.setdefault(override or (top if isinstance(top, str) else None) or default)
        for name in inner:
            found.setdefault(name)
    return list(found)


_UNREADABLE = object()


def _scan(data: bytes) -> tuple[object, list[str] | None]:
    """(the file's top-level vhost, None if absent, ``_UNREADABLE`` if unreadable; the
    vhosts its objects name, None if one is unreadable)."""
    top: object = None
    inner: list[str] = []
    at = data.find(_KEY)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        prefix = data[start:at]
        end = data.find(b"\n", at)
        value = _value(data[at + len(_KEY) : len(data) if end < 0 else end])
        if not prefix:
            if value is None:
                return _UNREADABLE, inner
            top = value
        elif not prefix.strip(b" -"):  # "  vhost: x" or "- vhost: x": an object's
            if value is None:
                return top, None
            inner.append(value)
        # anything else ("x_vhost:", "# vhost:", a value containing it) is not a vhost key
        at = data.find(_KEY, at + len(_KEY))
    return top, inner


def _value(raw: bytes) -> str | None:
    """A plain or simply quoted one-line scalar; None for anything a parser must read."""
    text = raw.strip()
    if text[:1] in (b'"', b"'"):
        quote = text[:1]
        close = text.find(quote, 1)
        rest = text[close + 1 :].strip() if close > 0 else b"x"
        inner = text[1:close] if close > 0 else b""
        if close <= 0 or b"\\" in inner or quote in inner or (rest and not rest.startswith(b"#")):
            return None
        return _decoded(inner)
    hash_at = text.find(b" #")
    if hash_at >= 0:
        text = text[:hash_at].rstrip()
    if not text or text[:1] in b"&*!|>{[%@`#" or b": " in text:
        return None
    return _decoded(text)


def _decoded(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None

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

from ._files import is_definitions, read_bytes

_KEY = b"vhost:"


class _NeedsParser(Exception):
    """A line names a vhost in a way only the YAML parser can read."""


def file_vhosts(paths: Sequence[str], override: str | None, default: str) -> list[str] | None:
    """The vhosts ``paths`` most likely name, in first-seen order; None when a file cannot be
    guessed from its text. ``override`` is ``--vhost`` (it replaces a file's own ``vhost``);
    ``default`` is the vhost of a file that names none (the URL's)."""
    found: dict[str, None] = {}
    for path in paths:
        if is_definitions(path):
            return None
        data = read_bytes(path)  # bounded, regular files only (the loader reads it again)
        if not isinstance(data, bytes):
            return None  # the loader reports it
        try:
            top, inner = _scan(data)
        except _NeedsParser:
            return None
        found.setdefault(override or top or default)
        for name in inner:
            found.setdefault(name)
    return list(found)


def _scan(data: bytes) -> tuple[str | None, list[str]]:
    """The file's top-level vhost (None if it names none) and the vhosts its objects name;
    raises _NeedsParser when one of them is not a plain one-line value."""
    top: str | None = None
    inner: list[str] = []
    at = data.find(_KEY)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        prefix = data[start:at]
        end = data.find(b"\n", at)
        # "vhost: x" at the top, "  vhost: x" or "- vhost: x" on an object; anything else
        # ("x_vhost:", "# vhost:", a value containing it) is not a vhost key
        if not prefix or not prefix.strip(b" -"):
            value = _value(data[at + len(_KEY) : len(data) if end < 0 else end])
            if not prefix:
                top = value
            else:
                inner.append(value)
        at = data.find(_KEY, at + len(_KEY))
    return top, inner


def _value(raw: bytes) -> str:
    """A plain or simply quoted one-line scalar; _NeedsParser for anything else."""
    text = raw.strip()
    if text[:1] in (b'"', b"'"):
        quote = text[:1]
        close = text.find(quote, 1)
        if close <= 0:
            raise _NeedsParser
        inner = text[1:close]
        rest = text[close + 1 :].strip()
        if b"\\" in inner or (rest and not rest.startswith(b"#")):
            raise _NeedsParser
        return _decoded(inner)
    hash_at = text.find(b" #")
    if hash_at >= 0:
        text = text[:hash_at].rstrip()
    if not text or text[:1] in b"&*!|>{[%@`#" or b": " in text:
        raise _NeedsParser
    return _decoded(text)


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _NeedsParser from None

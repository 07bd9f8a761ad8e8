"""The errors declare_amqp raises, each with the exit code the CLI uses.

::

    DeclareAmqpError                 exit 1   base class; str() is a one-paragraph message
    ├── TopologyError                exit 1   bad input: every problem, with file:line
    ├── PlanConflictError            exit 1   an immutable property differs; nothing was written
    ├── BrokerError                  exit 1   the broker could not be reached or refused us
    │   ├── BrokerUnreachable                 no node answered (AMQP or HTTP)
    │   ├── AuthenticationFailed              wrong user or password (never printed)
    │   └── ManagementUnavailable             the management plugin does not answer
    └── ApplyError                   exit 1   a write failed part-way (broker changed under us)

Exceptions of pika and of the network under HTTP never leave the package. Each has one map,
beside the one module that uses it, and raises with ``raise ... from exc``:

- HTTP (the standard library's exceptions that ``_http`` lets through, and HTTP error
  statuses): ``_management`` (``_http_error``, ``request``, ``checked``);
- pika: ``_amqp.pika_error``, for connecting and for writing alike.
"""

from __future__ import annotations

import operator
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def unsafe_char(char: str) -> bool:
    """A character a terminal acts on instead of showing: C0/C1 controls, DEL, line and
    paragraph separators, bidirectional overrides."""
    return char in _BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp")


def escaped_char(char: str) -> str:
    """``\\n``, ``\\x1b``, ``\\u202e``: the backslash escape of one character."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character that could move the cursor, start an escape sequence or
    reorder the line replaced by its backslash escape (the one escape for text that shows
    names: every ``Problem`` and every plan line); other characters, non-ASCII letters
    included, stay as they are."""
    if text.isprintable():  # the common case, and cheap
        return text
    return "".join(escaped_char(c) if unsafe_char(c) else c for c in text)


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object was written: ``file:line``."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, tied to the place it was written."""

    message: str
    location: Location | None = None
    object: str | None = None  # e.g. "queue 'email.high' (vhost /)"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        what = f"{self.object}: " if self.object else ""
        return printable(f"{where}{what}{self.message}")  # names in it may hold a "\n"


class _Declared(Protocol):
    @property
    def location(self) -> Location | None: ...

    @property
    def label(self) -> str: ...


_D = TypeVar("_D", bound=_Declared)


def dedupe(
    items: Iterable[_D],
    key: Callable[[_D], Hashable],
    problems: list[Problem],
    same: Callable[[Any, Any], bool] = operator.eq,
) -> tuple[_D, ...]:
    """The first of each object the files declare more than once (by ``key``); a later one
    that is not ``same`` as the first is a problem naming both places.

    The objects are found by the hash of their key, and the keys compared only where two
    hashes meet: a dict of the keys themselves held a tuple per object (a 50 MB file's
    1.2 million objects: 80 MB at the end of loading, its peak)."""
    seen: dict[int, _D | list[_D]] = {}  # the first of each hash, or of each key with it
    kept: list[_D] = []
    for item in items:
        k = key(item)
        h = hash(k)
        found = seen.get(h)
        if found is None:
            seen[h] = item
            kept.append(item)
            continue
        firsts = found if isinstance(found, list) else [found]
        first = next((f for f in firsts if key(f) == k), None)
        if first is None:  # another key with the same hash
            seen[h] = [*firsts, item]
            kept.append(item)
        elif not same(first, item):
            problems.append(
                Problem(
                    f"declared twice with different settings (also at {first.location})",
                    item.location,
                    item.label,
                )
            )
    return tuple(kept)


class DeclareAmqpError(Exception):
    """Base of every error declare_amqp raises on purpose."""

    exit_code = 1


class TopologyError(DeclareAmqpError):
    """The topology files are invalid; ``problems`` lists every one found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the topology; nothing was changed"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class PlanConflictError(DeclareAmqpError):
    """The plan holds conflicts, so nothing was written."""

    def __init__(self, conflicts: Sequence[object]) -> None:
        self.conflicts = tuple(conflicts)
        count = len(self.conflicts)
        super().__init__(
            f"{count} conflict{'s' if count != 1 else ''} with the live broker; nothing was changed"
        )


class BrokerError(DeclareAmqpError):
    """The broker could not be reached, or refused a request."""


class BrokerUnreachable(BrokerError):
    """No broker node answered."""


class AuthenticationFailed(BrokerError):
    """The broker refused the credentials (the password is never part of the message)."""


class ManagementUnavailable(BrokerError):
    """The management HTTP API does not answer; AMQP-only apply is the fallback."""


class ApplyError(DeclareAmqpError):
    """A write failed after the apply had started (the broker changed under us)."""

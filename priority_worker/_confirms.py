"""Publisher confirms: which published message each basic.ack / basic.nack / basic.return
settles.

Pure: no I/O, no pika, no tornado. The publisher feeds it the delivery tags it sent and the
broker's answers; it answers which messages are settled and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Unconfirmed(Generic[T]):
    """One published message waiting for its confirm."""

    item: T
    returned: tuple[int, str] | None = None  # (reply_code, reply_text) of a basic.return


class ConfirmTracker(Generic[T]):
    """Delivery tags of a confirm-mode channel and what each resolves.

    Tags count from 1 per channel. ``basic.ack``/``basic.nack`` with ``multiple`` settle every
    tag up to and including the given one. A ``basic.return`` arrives before the ack of the same
    message, so it only marks the entry; the ack then settles it as returned.
    """

    def __init__(self) -> None:
        # Insertion order is tag order while tags are added in increasing order (one channel's
        # tags always are): a multiple ack then settles a prefix without sorting.
        self._entries: dict[int, Unconfirmed[T]] = {}
        self._last = 0
        self._ordered = True

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tag: int, item: T) -> None:
        """A message was published with delivery tag ``tag``."""
        if tag <= self._last:
            self._ordered = False
        self._last = tag
        self._entries[tag] = Unconfirmed(item)

    def returned(self, tag: int, reply_code: int, reply_text: str) -> None:
        """A ``basic.return`` for the message published with ``tag``."""
        entry = self._entries.get(tag)
        if entry is not None:
            entry.returned = (reply_code, reply_text)

    def settle(self, tag: int, multiple: bool) -> list[Unconfirmed[T]]:
        """Remove and return the entries an ack/nack of ``tag`` covers, oldest first."""
        if not multiple:
            entry = self._entries.pop(tag, None)
            return [entry] if entry else []
        if self._ordered:
            tags = []
            for t in self._entries:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = sorted(t for t in self._entries if t <= tag)
        entries = self._entries
        return [entries.pop(t) for t in tags]

    def oldest(self) -> tuple[int, Unconfirmed[T]] | None:
        """The entry with the lowest tag (the one sent first), or None."""
        if not self._entries:
            return None
        tag = next(iter(self._entries)) if self._ordered else min(self._entries)
        return tag, self._entries[tag]

    def remove(self, tag: int) -> Unconfirmed[T] | None:
        """Forget one tag (it timed out)."""
        return self._entries.pop(tag, None)

    def drain(self) -> list[Unconfirmed[T]]:
        """Remove everything, oldest first (the channel closed)."""
        entries = [self._entries[t] for t in sorted(self._entries)]
        self._entries.clear()
        self._last, self._ordered = 0, True
        return entries

"""The pure core: scheduling, in-flight accounting, outcome mapping, confirm tracking.

Nothing here does I/O or imports pika or tornado; the worker and the publisher feed it events
(a delivery arrived, a handler finished, an ack came) and act on what it answers.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ConfigurationError, Reject, Retry
from ._model import Mode, RetryPolicy
from ._scheduling import FairQueueing

T = TypeVar("T")

# Headers priority_worker writes on messages it republishes.
ATTEMPTS_HEADER = "x-attempts"
ERROR_HEADER = "x-error"
ORIGINAL_QUEUE_HEADER = "x-original-queue"
PUBLISH_TAG_HEADER = "x-publish-tag"


# --- URLs and secrets --------------------------------------------------------------------------


def split_urls(url: str | Sequence[str]) -> list[str]:
    """One or several broker URLs, as a list or a comma-separated string, in failover order."""
    items = [url] if isinstance(url, str) else list(url)
    urls = [u.strip() for item in items for u in item.split(",") if u.strip()]
    if not urls:
        raise ConfigurationError("no broker URL given")
    for u in urls:
        if urllib.parse.urlsplit(u).scheme not in ("amqp", "amqps"):
            raise ConfigurationError(f"not an amqp:// or amqps:// URL: {redact_url(u)}")
    return urls


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to log)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[2]}"))


def url_secrets(urls: Iterable[str]) -> set[str]:
    """The passwords in ``urls``, raw and URL-quoted, for scrubbing log lines and errors."""
    found: set[str] = set()
    for u in urls:
        try:
            raw = urllib.parse.urlsplit(u).password
        except ValueError:
            continue
        if raw:
            found.update({raw, urllib.parse.unquote(raw)})
    return {s for s in found if s}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


# --- Backoff -----------------------------------------------------------------------------------


def reconnect_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Capped exponential backoff with jitter for the ``attempt``-th reconnect (0-based).

    "Equal jitter": half the capped exponential plus a random half, so workers that lost the
    same broker spread out but never hammer it with zero delays.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    return ceiling / 2 + rand() * ceiling / 2


def retry_delay(failures: int, policy: RetryPolicy) -> float:
    """Seconds to wait before handling a message again after its ``failures``-th failure."""
    return policy.delay_for(failures)


# --- Decoding ----------------------------------------------------------------------------------


class UndecodableError(Exception):
    """The body does not match its content type or encoding."""


_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.-]+)", re.I)


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None) -> Any:
    """The body decoded by its content encoding and type; raises UndecodableError."""
    encoding = (content_encoding or "").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding not in ("", "identity", "utf-8", "utf8", "binary", "7bit", "8bit"):
            raise UndecodableError(f"unsupported content-encoding {content_encoding!r}")
        mime = (content_type or "").split(";")[0].strip().lower()
        match = _CHARSET.search(content_type or "")
        charset = match.group(1) if match else "utf-8"
        if mime == "application/json" or mime.endswith("+json"):
            return json.loads(body.decode(charset))
        if mime.startswith("text/"):
            return body.decode(charset)
        return body
    except UndecodableError:
        raise
    except (ValueError, LookupError, OSError, EOFError) as exc:
        raise UndecodableError(f"{type(exc).__name__}: {exc}") from exc


def attempts_of(headers: Mapping[str, Any] | None) -> int:
    """How many times priority_worker already failed or retried this message."""
    value = (headers or {}).get(ATTEMPTS_HEADER, 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


# --- Outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """Settle the delivery with basic.ack."""


@dataclass(frozen=True)
class RetryLater:
    """Republish to a delay queue of ``delay`` seconds with ``attempts`` in a header, then ack."""

    delay: float
    attempts: int
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """Publish to the dead-letter destination with ``error`` in a header, then ack."""

    reason: str
    error: str
    attempts: int


Action = Ack | RetryLater | DeadLetter


def decide(error: BaseException | None, attempts: int, policy: RetryPolicy) -> Action:
    """Map a handler's result to what happens to its message.

    ``attempts`` is the number of earlier failures/retries recorded on the message.
    Return -> ack; ``Retry`` -> retry after its delay rounded up to the policy's nearest step
    (capped at the largest: one delay queue per step);
    ``Reject`` -> dead-letter now; any other exception -> retry with backoff while fewer than
    ``policy.max_retries`` retries happened, then dead-letter with the error.
    """
    if error is None:
        return Ack()
    if isinstance(error, Retry):
        return RetryLater(
            policy.round_up(error.delay), attempts + 1, error.reason or "retry requested"
        )
    if isinstance(error, Reject):
        return DeadLetter("rejected", error.reason, attempts)
    if isinstance(error, UndecodableError):
        return DeadLetter("undecodable", str(error), attempts)
    text = f"{type(error).__name__}: {error}"
    if attempts < policy.max_retries:
        return RetryLater(retry_delay(attempts + 1, policy), attempts + 1, text)
    return DeadLetter("exhausted", text, attempts + 1)


# --- Scheduling --------------------------------------------------------------------------------


def effective_prefetch(
    mode: Mode, prefetches: Sequence[int], idle: Sequence[bool]
) -> list[int | None]:
    """The prefetch each queue should be consumed at now; ``None`` means not consumed.

    Queues are in priority order. ``idle[i]``: queue i has nothing ready and nothing in flight
    (the last queue is never treated as idle: nothing ranks below it to lend to).
    """
    n = len(prefetches)
    idle = [bool(idle[i]) and i < n - 1 for i in range(n)]
    if mode is Mode.WEIGHTED:
        return list(prefetches)
    if mode is Mode.STRICT:
        out: list[int | None] = []
        for i, p in enumerate(prefetches):
            out.append(p if all(idle[:i]) else None)
        return out
    result: list[int | None] = []
    lent = 0
    for i, p in enumerate(prefetches):
        if idle[i]:
            result.append(p)
            lent += p
        else:
            result.append(p + lent)
            lent = 0
    return result


class Dispatcher(Generic[T]):
    """In-flight accounting and the order in which received deliveries are started.

    A delivery is *pending* from arrival until a handler starts it, then *running* until
    ``finish``. At most ``limit`` run at once. Which pending delivery starts next:

    - ``weights`` given (weighted and conserving modes): start-time fair queueing with those
      weights (see :mod:`priority_worker._scheduling`): under backlog the starts follow the
      weights, and a delivery of a queue that was idle starts next;
    - ``by_priority=True`` (strict mode): the highest-priority queue's deliveries first;
    - neither: arrival order across queues.

    ``on_start(queue, held)``: called as each delivery starts, with the seconds it was held
    (by ``clock``) since it arrived.
    """

    def __init__(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        by_priority: bool = False,
        weights: Mapping[str, float] | None = None,
        on_start: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if limit < 1:
            raise ConfigurationError("concurrency must be >= 1")
        if by_priority and weights:
            raise ConfigurationError("strict priority order takes no weights")
        self.limit = limit
        self.by_priority = by_priority
        self._order = list(queues)
        # (key, item, arrived): key orders the starts (sequence number or start tag).
        self._pending: dict[str, deque[tuple[float, T, float]]] = {q: deque() for q in queues}
        self._running: dict[str, int] = dict.fromkeys(queues, 0)
        self._total_running = 0
        self._seq = 0
        self._fair = FairQueueing(weights) if weights else None
        self._on_start = on_start
        self._clock = clock or time.monotonic

    def add(self, queue: str, item: T) -> None:
        """A delivery arrived from ``queue``."""
        if self._fair is not None:
            key = self._fair.arrive(queue)
        else:
            self._seq += 1
            key = self._seq
        self._pending[queue].append((key, item, self._clock()))

    def take(self) -> list[tuple[str, T]]:
        """Deliveries to start now (marked running), while capacity lasts."""
        started: list[tuple[str, T]] = []
        while True:
            taken = self.take_one()
            if taken is None:
                return started
            started.append(taken)

    def take_one(self) -> tuple[str, T] | None:
        """The next delivery to start now (marked running), or None (nothing, or no capacity)."""
        if self._total_running >= self.limit:
            return None
        queue = self._next_queue()
        if queue is None:
            return None
        key, item, arrived = self._pending[queue].popleft()
        if self._fair is not None:
            self._fair.started(key)
        self._running[queue] += 1
        self._total_running += 1
        if self._on_start is not None:
            self._on_start(queue, self._clock() - arrived)
        return queue, item

    def startable(self) -> bool:
        """Something is pending and there is capacity to start it."""
        return self._total_running < self.limit and self._next_queue() is not None

    def _next_queue(self) -> str | None:
        if len(self._order) == 1:
            q = self._order[0]
            return q if self._pending[q] else None
        best: str | None = None
        for q in self._order:
            pending = self._pending[q]
            if not pending:
                continue
            if self.by_priority:
                return q
            # Strictly smaller: on a tie the earlier (higher-priority) queue wins.
            if best is None or pending[0][0] < self._pending[best][0][0]:
                best = q
        return best

    def finish(self, queue: str) -> None:
        """A running delivery of ``queue`` was settled (or dropped)."""
        if self._running[queue] <= 0:
            raise RuntimeError(f"finish() without a running delivery on {queue}")
        self._running[queue] -= 1
        self._total_running -= 1

    def take_pending(self, queue: str | None = None, keep: int = 0) -> list[T]:
        """Remove not-yet-started deliveries (newest first beyond ``keep``) to requeue them."""
        removed: list[T] = []
        for q in [queue] if queue else self._order:
            pending = self._pending[q]
            tags = []
            while len(pending) > keep:
                key, item, _ = pending.pop()
                removed.append(item)
                tags.append(key)
            self._withdrawn(q, tags)
        return removed

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove pending deliveries matching ``predicate`` (e.g. of a closed channel)."""
        removed: list[T] = []
        for q in self._order:
            gone = [e for e in self._pending[q] if predicate(e[1])]
            if gone:
                self._pending[q] = deque(e for e in self._pending[q] if not predicate(e[1]))
                removed.extend(e[1] for e in gone)
                self._withdrawn(q, [e[0] for e in gone])
        return removed

    def _withdrawn(self, queue: str, tags: list[float]) -> None:
        if self._fair is not None and tags:
            pending = self._pending[queue]
            self._fair.withdrawn(queue, tags, pending[-1][0] if pending else None)

    def running(self, queue: str | None = None) -> int:
        """Deliveries being handled (of ``queue``, or in total)."""
        return self._running[queue] if queue else self._total_running

    def pending(self, queue: str | None = None) -> int:
        """Deliveries received but not started (of ``queue``, or in total)."""
        if queue:
            return len(self._pending[queue])
        return sum(len(p) for p in self._pending.values())

    def in_flight(self, queue: str | None = None) -> int:
        """Received and not yet settled: pending plus running."""
        return self.pending(queue) + self.running(queue)


# --- Publisher confirms ------------------------------------------------------------------------


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

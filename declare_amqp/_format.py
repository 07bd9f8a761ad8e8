"""The YAML format, as data: which keys each object takes, their types and defaults.

The loader, the JSON Schema (``declare-amqp schema``) and the exporter all read these
tables, so the format is written down once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._errors import Location


@dataclass(frozen=True)
class Key:
    """One key an object may carry."""

    name: str
    types: tuple[type, ...]
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    argument: str | None = None  # for queue aliases: the x-argument it stands for
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None  # a regular expression string values must match in full
    # for a key that takes a list: the types of its items, and how many it needs at least
    items: tuple[type, ...] = ()
    min_items: int | None = None


class Reader(Protocol):
    """What the entries of a file are read through, key table by key table: the YAML
    loader, or the definitions reader over the translated objects of a definitions file."""

    vhost: str

    def at(self, line: int) -> Location:
        """The location of ``line`` of the file being read."""

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        """An error: the file is refused."""

    def warn(self, line: int, message: str, obj: str | None = None) -> None:
        """Accepted, with a caveat shown (``--strict`` refuses it)."""

    def entries(self, doc: Any, key: str) -> Iterable[tuple[Any, int]]:
        """The entries of the top-level list ``key``, each with its line."""

    def fields(self, raw: Any, keys: Sequence[Key], what: str, line: int) -> dict[str, Any] | None:
        """The values of ``raw`` checked against ``keys``; None when one is wrong."""


_STR = (str,)
_BOOL = (bool,)
_INT = (int,)
_MAP = (dict,)
_LIST = (list,)

# The broker's largest TTL and x-expires (ten years in ms): larger values are refused.
_MAX_EXPIRY = 315_360_000_000

# Readable names for the common queue arguments. Types, choices and ranges are what the
# broker accepts (RabbitMQ 3.10.8): ``_fit`` decides with them for loader, validator and
# exporter alike, so whatever the broker holds loads again.
QUEUE_ALIASES = (
    Key(
        "max_priority",
        _INT,
        "Priority queue levels (1-255, 1-10 recommended; 0 means none).",
        argument="x-max-priority",
        minimum=0,
        maximum=255,
    ),
    Key(
        "dead_letter_exchange",
        _STR,
        "Exchange for rejected / expired messages.",
        argument="x-dead-letter-exchange",
    ),
    Key(
        "dead_letter_routing_key",
        _STR,
        "Routing key used when dead-lettering.",
        argument="x-dead-letter-routing-key",
    ),
    Key(
        "dead_letter_strategy",
        _STR,
        "Quorum queues: at-most-once or at-least-once.",
        argument="x-dead-letter-strategy",
        choices=("at-most-once", "at-least-once"),
    ),
    Key(
        "message_ttl",
        _INT,
        "Message time to live in ms.",
        argument="x-message-ttl",
        minimum=0,
        maximum=_MAX_EXPIRY,
    ),
    Key(
        "expires",
        _INT,
        "Delete the queue after this many ms unused.",
        argument="x-expires",
        minimum=1,
        maximum=_MAX_EXPIRY,
    ),
    Key(
        "max_length", _INT, "Maximum number of ready messages.", argument="x-max-length", minimum=0
    ),
    Key(
        "max_length_bytes",
        _INT,
        "Maximum total body size of ready messages.",
        argument="x-max-length-bytes",
        minimum=0,
    ),
    Key(
        "overflow",
        _STR,
        "What happens at max length.",
        argument="x-overflow",
        choices=("drop-head", "reject-publish", "reject-publish-dlx"),
    ),
    Key(
        "queue_mode",
        _STR,
        "Classic queues: default or lazy.",
        argument="x-queue-mode",
        choices=("default", "lazy"),
    ),
    Key(
        "queue_version",
        _INT,
        "Classic queue storage version (1 or 2).",
        argument="x-queue-version",
        minimum=1,
        maximum=2,
    ),
    Key(
        "single_active_consumer",
        _BOOL,
        "Only one consumer receives at a time.",
        argument="x-single-active-consumer",
    ),
    Key(
        "delivery_limit",
        _INT,
        "Quorum queues: deliveries before dead-lettering (negative: no limit on RabbitMQ 4).",
        argument="x-delivery-limit",
    ),
    Key(
        "quorum_initial_group_size",
        _INT,
        "Quorum queues: number of replicas.",
        argument="x-quorum-initial-group-size",
        minimum=1,
    ),
    Key(
        "initial_cluster_size",
        _INT,
        "Streams: number of replicas.",
        argument="x-initial-cluster-size",
        minimum=1,
    ),
    Key(
        "queue_leader_locator",
        _STR,
        "Quorum queues and streams: client-local or balanced.",
        argument="x-queue-leader-locator",
        choices=("client-local", "balanced"),
    ),
    Key(
        "max_age",
        _STR,
        "Streams: retention by age: a number and Y, M, D, h, m or s (7D, 12h).",
        argument="x-max-age",
        pattern=r"[0-9]+[YMDhms]",
    ),
    Key(
        "stream_max_segment_size_bytes",
        _INT,
        "Streams: segment file size.",
        argument="x-stream-max-segment-size-bytes",
        minimum=0,
    ),
)

# The top-level keys of a file that are no kind's list: the file's default vhost, and the
# sections read by ``_consumers`` and the loader. ``kinds.TOP_KEYS`` puts each kind's list
# (``vhosts``, ``exchanges``, ..., ``users``, ...) after ``vhost``.
VHOST_TOP_KEY = Key("vhost", _STR, "Default vhost of the objects in this file.", default="/")
SECTION_TOP_KEYS = (
    Key("consumers", _LIST, "Applications that consume queues with priority_worker."),
    Key(
        "expect",
        _LIST,
        "Routing expectations, checked by validate and plan: {exchange, routing_key, headers, "
        "reaches}.",
    ),
)

EXPECT_KEYS = (
    Key("exchange", _STR, "Exchange the message is published to ('' the default).", required=True),
    Key("routing_key", _STR, "Its routing key.", default=""),
    Key("headers", _MAP, "Its headers (headers exchanges); values keep their YAML types."),
    Key(
        "reaches",
        _LIST,
        "Exactly the queues it must reach; [] means unroutable.",
        required=True,
        items=(str,),
    ),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
)

CONSUMER_MODES = ("weighted", "strict", "conserving")
_NUMBER = (int, float)

CONSUMER_KEYS = (
    Key(
        "name",
        _STR,
        "The application's name (`priority-worker run --consumer NAME`).",
        required=True,
    ),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key(
        "queues",
        _LIST,
        "Queues it consumes, highest priority first: {queue, prefetch}.",
        required=True,
    ),
    Key(
        "mode",
        _STR,
        "weighted (share by prefetch), strict, or conserving.",
        default="weighted",
        choices=CONSUMER_MODES,
    ),
    Key(
        "concurrency",
        _INT,
        "Handlers running at once (default: the sum of prefetches).",
        minimum=1,
        maximum=100_000,
    ),
    Key("retry", _MAP, "Retries after handler errors: {max_retries, delays}."),
    Key(
        "dead_letter_exchange",
        _STR,
        "Where rejected and exhausted messages go (default: a Q.dead queue per queue).",
    ),
)

CONSUMED_QUEUE_KEYS = (
    Key("queue", _STR, "Queue name.", required=True),
    Key(
        "prefetch",
        _INT,
        "Unacknowledged deliveries of this queue at once (its weight).",
        required=True,
        minimum=1,
        maximum=65_535,
    ),
)

RETRY_KEYS = (
    Key(
        "max_retries",
        _INT,
        "Retries before a message is dead-lettered.",
        default=5,
        minimum=0,
        maximum=1000,
    ),
    Key(
        "delays",
        _LIST,
        "Seconds to wait before each retry, one delay queue per step; "
        "the last repeats. Default: 1, 2, 4, ... capped at 300.",
    ),
)

# Queue arguments each queue type refuses (the broker answers 406 or ignores them).
FORBIDDEN_ARGUMENTS = {
    "classic": frozenset(
        {
            "x-delivery-limit",
            "x-quorum-initial-group-size",
            "x-dead-letter-strategy",
            "x-max-age",
            "x-stream-max-segment-size-bytes",
            "x-initial-cluster-size",
        }
    ),
    "quorum": frozenset(
        {
            "x-max-priority",
            "x-queue-mode",
            "x-queue-version",
            "x-max-age",
            "x-stream-max-segment-size-bytes",
            "x-initial-cluster-size",
            "x-queue-master-locator",
        }
    ),
    "stream": frozenset(
        {
            "x-max-priority",
            "x-queue-mode",
            "x-queue-version",
            "x-message-ttl",
            "x-expires",
            "x-max-length",
            "x-overflow",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-dead-letter-strategy",
            "x-delivery-limit",
            "x-single-active-consumer",
            "x-quorum-initial-group-size",
            "x-queue-master-locator",
        }
    ),
}

# Known queue arguments with their expected type, checked inside `arguments:` too.
ARGUMENT_TYPES: dict[str, Key] = {k.argument: k for k in QUEUE_ALIASES if k.argument}


def describe_types(types: tuple[type, ...]) -> str:
    """'a whole number', 'true or false', ... for error messages."""
    names = {
        str: "a string",
        bool: "true or false",
        int: "a whole number",
        dict: "a mapping",
        list: "a list",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)

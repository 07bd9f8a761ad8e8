"""Version edges: what each RabbitMQ release removed, refused, denied, ignored or changed.

One table, read by every part of declare-amqp that answers "does this work on that broker?":
the version checks of ``validate`` and ``plan`` (``_validate.check_broker_version``), the
operator-policy checks (``_access``), the plan's note on the quorum delivery-limit default,
``explain``, and ``convert --to quorum`` (:data:`QUORUM_REWRITES`). A row says what it
concerns (a queue argument, a policy key, a queue property, a consumer setting, a permission),
from which release it holds (and, for a regression fixed in a later patch, until which), what
the broker then does, what to do instead, and where that is written (release notes, pull
requests).

Pure: no I/O and no import of the model, so every layer can read it. Versions are tuples of
ints, ``(4, 3, 0)``; :func:`parse_version` reads the strings the management API reports.

Matching is deliberately plain data: a row names the keys it concerns, optionally one value
(``x-queue-version: 1``), the queue types it concerns and whether it is about transient
(``durable: false``) queues only. Anything a row cannot say in those terms belongs in code next
to the check that needs it, not in the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

Version = tuple[int, ...]


def parse_version(text: str) -> Version:
    """``(4, 0, 5)`` for ``"4.0.5"`` (also ``"4.1.0-rc.1"``); ``()`` when unknown."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)


def show_version(version: Version) -> str:
    """``"4.3.0"`` for ``(4, 3, 0)``: how a row names its release in messages."""
    return ".".join(str(n) for n in version)


class Effect(str, Enum):
    """What a broker of the row's versions does with what the row names."""

    REMOVED = "removed"  # the feature is gone; the broker refuses its settings
    REFUSED = "refused"  # the declaration or setting is refused
    # a deprecated feature, denied unless the broker's config permits it
    DENIED = "denied by default"
    DEPRECATED = "deprecated"  # works, and will be denied or removed in a later release
    IGNORED = "ignored"  # accepted without effect
    DEFAULT = "new default"  # what happens without the setting changed
    ADDED = "added"  # brokers before ``since`` refuse it

    @property
    def blocks(self) -> bool:
        """True when a write that uses it fails (an error before apply, not a warning)."""
        return self in (Effect.REMOVED, Effect.REFUSED, Effect.DENIED, Effect.ADDED)


class Subject(str, Enum):
    """Where in a topology the thing a row names is written."""

    QUEUE_ARGUMENT = "queue argument"
    POLICY_KEY = "policy key"
    OPERATOR_POLICY_KEY = "operator policy key"
    POLICY_APPLY_TO = "policy apply-to"
    QUEUE = "queue"  # a property of the declaration itself (durable, exclusive)
    CONSUMER = "consumer"  # a setting of a consuming client (QoS, passive declares)
    PERMISSION = "permission"


# A row's ``value`` when it concerns every value of its keys.
ANY_VALUE: Final = object()


@dataclass(frozen=True)
class Edge:
    """One change of behaviour between RabbitMQ releases, with its source."""

    key: str  # a stable name for the row, e.g. "classic-mirroring"
    subject: Subject
    names: frozenset[str]  # the argument or policy keys (or setting names) it concerns
    effect: Effect
    since: Version  # the first release where it holds (ADDED: the first that has it)
    what: str  # what changed, as a clause: "classic queue mirroring was removed"
    advice: str  # what to do instead
    source: str  # where it is written
    until: Version | None = None  # the first release where it no longer holds (a fixed regression)
    queue_types: frozenset[str] = frozenset()  # the queue types it concerns; empty: every type
    value: object = ANY_VALUE  # only this value of the keys
    transient_only: bool = False  # only queues declared durable: false

    def holds_at(self, version: Version) -> bool:
        """True when a broker of ``version`` behaves as this row says (unknown: never)."""
        if not version:
            return False
        if self.effect is Effect.ADDED:
            return version < self.since
        return version >= self.since and (self.until is None or version < self.until)

    def _value_matches(self, value: object) -> bool:
        return self.value is ANY_VALUE or (type(value) is type(self.value) and value == self.value)

    def queue_hits(
        self, queue_type: str, durable: bool, arguments: Mapping[str, object]
    ) -> tuple[str, ...]:
        """The names of this row a queue declaration uses (sorted), or ``()``."""
        if self.queue_types and queue_type not in self.queue_types:
            return ()
        if self.subject is Subject.QUEUE:
            return ("durable: false",) if self.transient_only and not durable else ()
        if self.subject is not Subject.QUEUE_ARGUMENT:
            return ()
        if self.transient_only and durable:
            return ()
        return tuple(
            sorted(n for n in self.names if n in arguments and self._value_matches(arguments[n]))
        )

    def policy_hits(self, definition: Mapping[str, object]) -> tuple[str, ...]:
        """The names of this row a policy definition uses (sorted), or ``()``."""
        if self.subject is not Subject.POLICY_KEY:
            return ()
        return tuple(
            sorted(n for n in self.names if n in definition and self._value_matches(definition[n]))
        )

    def describe(self, version: Version | None = None) -> str:
        """The row as one sentence: what changed, in which release, and what to do instead."""
        broker = f" (this broker is {show_version(version)})" if version else ""
        return f"{self.what}{broker}; {self.advice}"


# Classic mirroring's policy keys: refused by 4.x, ignored by quorum queues on 3.x.
MIRRORING_KEYS: Final = frozenset(
    {
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-sync-batch-size",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
    }
)

_NOTES_4_0 = "RabbitMQ 4.0.0 release notes, 'Breaking Changes and Compatibility Notes'"
_NOTES_4_3 = "RabbitMQ 4.3.0 release notes, 'Deprecated features'"

EDGES: Final[tuple[Edge, ...]] = (
    Edge(
        key="classic-mirroring",
        subject=Subject.POLICY_KEY,
        names=MIRRORING_KEYS,
        effect=Effect.REMOVED,
        since=(4, 0),
        what=(
            "classic queue mirroring was removed in RabbitMQ 4.0 and the broker refuses these keys"
        ),
        advice=(
            "use quorum queues (type: quorum) for replicated queues ('declare-amqp convert "
            "--to quorum' rewrites a file, 'apply --migrate' moves the queues)"
        ),
        source=_NOTES_4_0 + " (classic queue mirroring removed)",
    ),
    Edge(
        key="transient-nonexclusive-queues",
        subject=Subject.QUEUE,
        names=frozenset({"durable"}),
        effect=Effect.DEPRECATED,
        since=(4, 0),
        until=(4, 3),
        queue_types=frozenset({"classic"}),
        transient_only=True,
        what=(
            "transient (durable: false) non-exclusive queues are deprecated since RabbitMQ 4.0 "
            "and denied by default from 4.3 on"
        ),
        advice="make the queue durable",
        source=_NOTES_4_0 + " (deprecated feature transient_nonexcl_queues)",
    ),
    Edge(
        key="transient-nonexclusive-queues",
        subject=Subject.QUEUE,
        names=frozenset({"durable"}),
        effect=Effect.DENIED,
        since=(4, 3),
        queue_types=frozenset({"classic"}),
        transient_only=True,
        what=(
            "transient (durable: false) non-exclusive queues are deprecated since RabbitMQ 4.0 "
            "and denied by default from 4.3 on"
        ),
        advice="make the queue durable, or let the application declare it exclusive",
        source=_NOTES_4_3 + " (transient_nonexcl_queues denied by default)",
    ),
    Edge(
        key="queue-mode",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-queue-mode"}),
        effect=Effect.REFUSED,
        since=(4, 3),
        what="queue_mode (x-queue-mode) is refused from RabbitMQ 4.3 on",
        advice="classic queues keep messages on disk anyway: remove it",
        source=_NOTES_4_3 + " (x-queue-mode refused)",
    ),
    Edge(
        key="queue-mode",
        subject=Subject.POLICY_KEY,
        names=frozenset({"queue-mode"}),
        effect=Effect.REFUSED,
        since=(4, 3),
        what="queue-mode is refused from RabbitMQ 4.3 on",
        advice="remove it from the policy",
        source=_NOTES_4_3 + " (queue-mode refused)",
    ),
    Edge(
        key="queue-version-1",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-queue-version"}),
        value=1,
        effect=Effect.REFUSED,
        since=(4, 3),
        what="queue_version 1 is refused from RabbitMQ 4.3 on",
        advice="remove it (version 2 is the only one)",
        source=_NOTES_4_3 + " (classic queue storage version 1 removed)",
    ),
    Edge(
        key="queue-version-1",
        subject=Subject.POLICY_KEY,
        names=frozenset({"queue-version"}),
        value=1,
        effect=Effect.REFUSED,
        since=(4, 3),
        what="queue-version 1 is refused from RabbitMQ 4.3 on",
        advice="remove it from the policy",
        source=_NOTES_4_3 + " (classic queue storage version 1 removed)",
    ),
    Edge(
        key="queue-master-locator",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-queue-master-locator"}),
        effect=Effect.DENIED,
        since=(4, 3),
        what="x-queue-master-locator is denied by default from RabbitMQ 4.3 on",
        advice="use queue_leader_locator (x-queue-leader-locator: client-local or balanced)",
        source=_NOTES_4_3 + " (queue_master_locator denied by default)",
    ),
    Edge(
        key="queue-master-locator",
        subject=Subject.POLICY_KEY,
        names=frozenset({"queue-master-locator"}),
        effect=Effect.DENIED,
        since=(4, 3),
        what="queue-master-locator is denied by default from RabbitMQ 4.3 on",
        advice="use queue-leader-locator (client-local or balanced)",
        source=_NOTES_4_3 + " (queue_master_locator denied by default)",
    ),
    Edge(
        key="global-qos",
        subject=Subject.CONSUMER,
        names=frozenset({"global_qos"}),
        effect=Effect.DENIED,
        since=(4, 3),
        what="global QoS (basic.qos with global=true) is denied by default from RabbitMQ 4.3 on",
        advice="set a prefetch per consumer (priority_worker always does)",
        source=_NOTES_4_3 + " (global_qos denied by default)",
    ),
    Edge(
        key="classic-consumer-timeout",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-consumer-timeout"}),
        effect=Effect.IGNORED,
        since=(4, 3, 0),
        until=(4, 3, 2),
        queue_types=frozenset({"classic"}),
        what="x-consumer-timeout on a classic queue is ignored by RabbitMQ 4.3.0 and 4.3.1",
        advice=(
            "set consumer_timeout in the broker's configuration, or move the queue to quorum "
            "(refused on classic queues from 4.3.2)"
        ),
        source="RabbitMQ 4.3.0 release notes (per-queue consumer timeout on classic queues)",
    ),
    Edge(
        key="classic-consumer-timeout",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-consumer-timeout"}),
        effect=Effect.REFUSED,
        since=(4, 3, 2),
        queue_types=frozenset({"classic"}),
        what="x-consumer-timeout on a classic queue is refused from RabbitMQ 4.3.2 on",
        advice="set consumer_timeout in the broker's configuration, or move the queue to quorum",
        source="RabbitMQ 4.3.2 release notes (x-consumer-timeout refused for classic queues)",
    ),
    Edge(
        key="passive-declare-configure",
        subject=Subject.PERMISSION,
        names=frozenset({"passive declare"}),
        effect=Effect.REFUSED,
        since=(4, 2, 6),
        until=(4, 2, 7),
        what=(
            "a passive queue or exchange declare needs the configure permission on RabbitMQ "
            "4.2.6 (any permission suffices again in later patches)"
        ),
        advice="grant configure on the queues the consumer checks, or upgrade to a later patch",
        source="rabbitmq-server #16085 (configure checked on passive declares) and #16272",
    ),
    Edge(
        key="passive-declare-configure",
        subject=Subject.PERMISSION,
        names=frozenset({"passive declare"}),
        effect=Effect.REFUSED,
        since=(4, 3, 0),
        until=(4, 3, 1),
        what=(
            "a passive queue or exchange declare needs the configure permission on RabbitMQ "
            "4.3.0 (any permission suffices again in later patches)"
        ),
        advice="grant configure on the queues the consumer checks, or upgrade to a later patch",
        source="rabbitmq-server #16085 (configure checked on passive declares) and #16272",
    ),
    Edge(
        key="quorum-delivery-limit",
        subject=Subject.QUEUE_ARGUMENT,
        names=frozenset({"x-delivery-limit"}),
        effect=Effect.DEFAULT,
        since=(4, 0),
        queue_types=frozenset({"quorum"}),
        what=(
            "quorum queues that set no delivery limit get 20 since RabbitMQ 4.0 (messages "
            "redelivered more often are dead-lettered, or dropped without a dead-letter exchange)"
        ),
        advice="set delivery_limit (-1 for none)",
        source=_NOTES_4_0 + " (quorum queues: default delivery limit 20)",
    ),
)

# What needs a release of its own. Operator policies: measured, 3.10.8 refuses each of these
# ("are not recognised policy settings") and 4.0.5 takes each; overflow came to operator
# policies in a 3.12 patch release, target-group-size with quorum queue membership
# reconciliation in 3.13.
ADDED_EDGES: Final[tuple[Edge, ...]] = (
    Edge(
        key="operator-policy-overflow",
        subject=Subject.OPERATOR_POLICY_KEY,
        names=frozenset({"overflow"}),
        effect=Effect.ADDED,
        since=(3, 12),
        what="operator policies can set overflow from RabbitMQ 3.12 on",
        advice="set overflow in a policy or a queue argument",
        source="RabbitMQ 3.12 release notes (operator policies: overflow)",
    ),
    Edge(
        key="operator-policy-target-group-size",
        subject=Subject.OPERATOR_POLICY_KEY,
        names=frozenset({"target-group-size"}),
        effect=Effect.ADDED,
        since=(3, 13),
        what="operator policies can set target-group-size from RabbitMQ 3.13 on",
        advice="leave it out",
        source="RabbitMQ 3.13.0 release notes (quorum queue membership reconciliation)",
    ),
    Edge(
        key="queue-type-apply-to",
        subject=Subject.POLICY_APPLY_TO,
        names=frozenset({"classic_queues", "quorum_queues", "streams"}),
        effect=Effect.ADDED,
        since=(3, 12),
        what="policies can apply to one queue type from RabbitMQ 3.12 on",
        advice="use apply_to queues",
        source="RabbitMQ 3.12.0 release notes (policies applying to one queue type)",
    ),
    Edge(
        key="no-delivery-limit",
        subject=Subject.OPERATOR_POLICY_KEY,
        names=frozenset({"delivery-limit"}),
        value=-1,
        effect=Effect.ADDED,
        since=(4, 0),
        what="delivery-limit -1 (no limit) is taken from RabbitMQ 4.0 on",
        advice="leave delivery-limit out for no limit",
        source=_NOTES_4_0 + " (quorum queue delivery limits)",
    ),
)


def added_in(key: str) -> Version:
    """The release from which the ADDED row ``key`` is taken."""
    for e in ADDED_EDGES:
        if e.key == key:
            return e.since
    raise KeyError(key)


# The delivery limit a 4.0+ broker gives a quorum queue that sets none (row
# "quorum-delivery-limit").
QUORUM_DEFAULT_DELIVERY_LIMIT: Final = 20


def edges_at(version: Version, edges: Iterable[Edge] | None = None) -> tuple[Edge, ...]:
    """The rows that hold for a broker of ``version`` (none when it is unknown).

    By default the removals and changes (:data:`EDGES`); the ADDED rows are read through
    :func:`added_in` by the checks that own their messages.
    """
    return tuple(e for e in (EDGES if edges is None else edges) if e.holds_at(version))


def edge(key: str, subject: Subject, version: Version) -> Edge | None:
    """The row ``key`` about ``subject`` that holds at ``version``, if any."""
    for e in edges_at(version):
        if e.key == key and e.subject is subject:
            return e
    return None


# ---------------------------------------------------------------------------------------------
# Converting a classic queue to a quorum queue (``declare-amqp convert --to quorum``).


class Rewrite(str, Enum):
    """What ``convert`` does with a setting quorum queues do not take as it is."""

    DROP = "drop"  # remove the argument or policy key
    RENAME = "rename"  # the same intent under the quorum queue's key (values mapped)
    VALUE = "value"  # keep the key, change the value


@dataclass(frozen=True)
class QuorumRewrite:
    """One setting a classic queue or its policy may carry, and how it becomes a quorum one."""

    subject: Subject  # QUEUE_ARGUMENT, POLICY_KEY or QUEUE
    name: str  # the argument or policy key, or the queue property ("durable", "auto_delete")
    rewrite: Rewrite
    reason: str
    to: str | None = None  # the new key, for RENAME
    values: Mapping[object, object] = field(default_factory=dict)  # old value -> new value
    only_value: object = ANY_VALUE  # the rule applies to this value only
    edge: str | None = None  # the EDGES row that makes it necessary, where one does
    # Said instead of ``reason`` for brokers before this version (priorities before 4.0).
    before: tuple[Version, str] | None = None

    def applies(self, value: object) -> bool:
        """True when the rule concerns ``value`` of its setting."""
        return self.only_value is ANY_VALUE or value == self.only_value

    def reason_at(self, version: Version) -> str:
        """The reason, as it holds for the target broker ``version`` (unknown: the newest)."""
        if self.before is not None and version and version < self.before[0]:
            return self.before[1]
        return self.reason


# Server side, the quorum queue type lists the queue arguments it takes and the policy keys it
# does not (rabbit_quorum_queue:capabilities/0); what is outside the first list is refused at
# declare time (PRECONDITION_FAILED "invalid arg") or, for policy keys, ignored.
QUORUM_REWRITES: Final[tuple[QuorumRewrite, ...]] = (
    QuorumRewrite(
        Subject.QUEUE,
        "durable",
        Rewrite.VALUE,
        "quorum queues are always durable",
        values={False: True},
        only_value=False,
    ),
    QuorumRewrite(
        Subject.QUEUE,
        "auto_delete",
        Rewrite.VALUE,
        "quorum queues cannot be auto-delete (set expires for an idle queue to go away)",
        values={True: False},
        only_value=True,
    ),
    QuorumRewrite(
        Subject.QUEUE_ARGUMENT,
        "x-max-priority",
        Rewrite.DROP,
        (
            "quorum queues refuse x-max-priority; from RabbitMQ 4.0 they have two priority "
            "levels of their own (a message priority above 4 is high), no argument needed"
        ),
        before=(
            (4, 0),
            (
                "quorum queues refuse x-max-priority and, before RabbitMQ 4.0, have no message "
                "priorities: messages will be delivered in publish order"
            ),
        ),
    ),
    QuorumRewrite(
        Subject.QUEUE_ARGUMENT,
        "x-queue-mode",
        Rewrite.DROP,
        "a classic queue's storage mode; quorum queues keep every message on disk",
        edge="queue-mode",
    ),
    QuorumRewrite(
        Subject.QUEUE_ARGUMENT,
        "x-queue-version",
        Rewrite.DROP,
        "a classic queue's storage version; quorum queues refuse it",
        edge="queue-version-1",
    ),
    QuorumRewrite(
        Subject.QUEUE_ARGUMENT,
        "x-queue-master-locator",
        Rewrite.RENAME,
        "quorum queues place their leader by x-queue-leader-locator",
        to="x-queue-leader-locator",
        values={"client-local": "client-local", "min-masters": "balanced", "random": "balanced"},
        edge="queue-master-locator",
    ),
    QuorumRewrite(
        Subject.QUEUE_ARGUMENT,
        "x-overflow",
        Rewrite.VALUE,
        (
            "quorum queues implement only drop-head and reject-publish: a publish refused over "
            "the limit is not dead-lettered"
        ),
        values={"reject-publish-dlx": "reject-publish"},
        only_value="reject-publish-dlx",
    ),
    *(
        QuorumRewrite(
            Subject.POLICY_KEY,
            key,
            Rewrite.DROP,
            "classic queue mirroring: quorum queues replicate by themselves and ignore it "
            "(RabbitMQ 4.0 refuses the key)",
            edge="classic-mirroring",
        )
        for key in sorted(MIRRORING_KEYS)
    ),
    QuorumRewrite(
        Subject.POLICY_KEY,
        "queue-mode",
        Rewrite.DROP,
        "a classic queue's storage mode; quorum queues ignore it",
        edge="queue-mode",
    ),
    QuorumRewrite(
        Subject.POLICY_KEY,
        "queue-version",
        Rewrite.DROP,
        "a classic queue's storage version; quorum queues ignore it",
        edge="queue-version-1",
    ),
    QuorumRewrite(
        Subject.POLICY_KEY,
        "max-priority",
        Rewrite.DROP,
        "quorum queues ignore max-priority",
    ),
    QuorumRewrite(
        Subject.POLICY_KEY,
        "queue-master-locator",
        Rewrite.RENAME,
        "quorum queues place their leader by queue-leader-locator",
        to="queue-leader-locator",
        values={"client-local": "client-local", "min-masters": "balanced", "random": "balanced"},
        edge="queue-master-locator",
    ),
    QuorumRewrite(
        Subject.POLICY_KEY,
        "overflow",
        Rewrite.VALUE,
        "quorum queues implement only drop-head and reject-publish",
        values={"reject-publish-dlx": "reject-publish"},
        only_value="reject-publish-dlx",
    ),
)


def quorum_rewrite(subject: Subject, name: str, value: object) -> QuorumRewrite | None:
    """How ``convert --to quorum`` treats setting ``name`` = ``value``; None: kept as it is."""
    for r in QUORUM_REWRITES:
        if r.subject is subject and r.name == name and r.applies(value):
            return r
    return None

"""What the broker would do, answered from a topology alone: where a message goes and which
policy settings an object really has. Pure: no I/O, no broker.

One module serves ``route``, the ``expect`` section, ``explain`` and the version checks, so
each broker rule below is written once. Every rule names the server code it follows
(rabbitmq-server, ``deps/rabbit/src/``); where 3.10 and 4.x differ, both were measured
(RabbitMQ 3.10.8 and 4.0.5, see ``tests/declare/test_simulate_broker.py`` and
``bench/simulate_bench.py``, which compare this module with a real broker on random
topologies).

Routing (``Simulator.route``):

- ``rabbit_exchange:route/2``: the exchange routes, then each exchange it reached routes in
  turn, every exchange at most once (a set of exchanges seen: cycles end), and the queues
  found are one set. An exchange that is missing is skipped (``cons_if_present``).
- ``process_alternate/2``: an exchange whose own bindings give *no destination at all* (no
  queue and no exchange) hands the message to its alternate exchange: the
  ``alternate-exchange`` argument, else the policy key of that name
  (``rabbit_policy:get_arg/3``: the argument wins). An exchange-to-exchange binding that
  matches counts as a destination even when that exchange then routes nowhere.
- The default exchange (``""``) routes to the queue named by each routing key when it exists;
  it has no bindings and no alternate exchange.
- Routing keys: the message's key plus the ``CC`` and ``BCC`` headers when they are arrays of
  strings (``rabbit_basic:header_routes/1``; another type closes the channel). Direct and
  topic exchanges route on every key; fanout and headers ignore keys.
- direct (``rabbit_exchange_type_direct``): the binding key equals the routing key.
- topic (``rabbit_exchange_type_topic``, ``split_topic_key``): keys are split on ``.``; the
  empty key has no words, ``a..b`` has an empty middle word. ``*`` is exactly one word (an
  empty one too), ``#`` zero or more.
- headers (``rabbit_exchange_type_headers:headers_match``): ``x-match`` is ``all`` (the
  default), ``any``, ``all-with-x`` or ``any-with-x``. ``x-match`` itself never takes part;
  other binding arguments starting with ``x-`` take part only in the ``-with-x`` kinds. A
  binding argument without a value (void, ``null``) matches the header's presence; otherwise
  the values must be equal: ``"1"`` is not ``1``, ``true`` is not ``1``, and ``1`` equals
  ``1.0`` up to 3.x (Erlang's ``==``) but not from 4.0 (measured; see ``values_equal``).
  ``all`` with no argument left matches every message, ``any`` with none matches none.
- Internal exchanges (``rabbit_channel``: ``check_internal_exchange``) refuse a publish
  (403) and only receive from other exchanges; a missing exchange refuses it (404).

Dead-lettering (``rabbit_dead_letter:make_msg``, ``rabbit_amqqueue_process`` /
``rabbit_quorum_queue`` ``args_policy_lookup``): a queue's dead-letter exchange and key are
the queue argument, else the effective policy's (argument wins: ``res_arg``). The message is
republished to that exchange with the dead-letter routing key when one is set, else with its
own routing keys.

Policies (``rabbit_policy``): see ``select_policy`` and ``merge_definitions``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ._errors import Problem
from ._format import FORBIDDEN_ARGUMENTS
from ._model import BindingSpec, ExchangeSpec, Expectation, PolicySpec, QueueSpec, Topology
from ._versions import (
    HEADERS_EXACT_NUMBERS_SINCE,
    MIRRORING_KEYS,
    QUORUM_DEFAULT_DELIVERY_LIMIT,
    Effect,
    Subject,
    edges_at,
    policy_keys_skipped,
)
from ._versions import edge as edge_row

# The exchanges every vhost has (rabbit_vhost:declare_default_exchanges/0 and the trace
# exchange of rabbit_trace), with their types.
BUILTIN_EXCHANGE_TYPES: Mapping[str, tuple[str, bool]] = {
    "": ("direct", False),
    "amq.direct": ("direct", False),
    "amq.fanout": ("fanout", False),
    "amq.topic": ("topic", False),
    "amq.headers": ("headers", False),
    "amq.match": ("headers", False),
    "amq.rabbitmq.trace": ("topic", True),
}

X_MATCH_KINDS = ("all", "any", "all-with-x", "any-with-x")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Message:
    """A message as routing sees it."""

    exchange: str
    routing_key: str = ""
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hop:
    """One step of a route: ``exchange`` passed the message to ``destination``."""

    exchange: str
    binding_key: str
    destination: str
    destination_type: str  # "queue" or "exchange"
    via: str = "binding"  # or "alternate-exchange", "default exchange"
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"exchange", "binding_key", "destination", ...}``."""
        out: dict[str, Any] = {
            "exchange": self.exchange,
            "binding_key": self.binding_key,
            "destination": self.destination,
            "destination_type": self.destination_type,
            "via": self.via,
        }
        if self.arguments:
            out["arguments"] = dict(self.arguments)
        return out


@dataclass(frozen=True)
class DeadLetter:
    """Where a queue's dead letters go: exchange, routing key and the queues they reach."""

    exchange: str
    routing_key: str
    queues: tuple[str, ...]
    routing_key_source: str = "message"  # or "argument", "policy"
    exchange_source: str = "argument"  # or "policy"
    exchange_missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"exchange", "routing_key", "queues"}``."""
        return {
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "queues": list(self.queues),
        }


@dataclass(frozen=True)
class Route:
    """Where one message goes."""

    message: Message
    queues: tuple[str, ...]  # sorted
    path: tuple[Hop, ...] = ()
    dead_letter: Mapping[str, DeadLetter] = field(default_factory=dict)
    # Why the broker would refuse the publish (the channel closes); None when it takes it.
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``declare-amqp route``."""
        out: dict[str, Any] = {
            "exchange": self.message.exchange,
            "routing_key": self.message.routing_key,
            "queues": list(self.queues),
            "path": [h.to_dict() for h in self.path],
            "dead_letter": {q: d.to_dict() for q, d in sorted(self.dead_letter.items())},
        }
        if self.message.headers:
            out["headers"] = dict(self.message.headers)
        if self.refused is not None:
            out["refused"] = self.refused
        return out


# ----------------------------------------------------------------------------- matching


def topic_words(key: str) -> tuple[str, ...]:
    """``split_topic_key``: the empty key has no words; ``a.`` is ``a`` and an empty word."""
    return tuple(key.split(".")) if key else ()


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """Whether a topic binding key matches a routing key (``*`` one word, ``#`` any)."""
    return _topic_match(topic_words(binding_key), topic_words(routing_key))


@lru_cache(maxsize=65536)
def _topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    # reach[j]: the pattern so far can consume exactly the first j words ('#' any number).
    m = len(words)
    reach = [False] * (m + 1)
    reach[0] = True
    for p in pattern:
        nxt = [False] * (m + 1)
        if p == "#":
            seen = False
            for j in range(m + 1):
                seen = seen or reach[j]
                nxt[j] = seen
        else:
            for j in range(m):
                if reach[j] and (p == "*" or p == words[j]):
                    nxt[j + 1] = True
        reach = nxt
        if not any(reach):
            return False
    return reach[m]


def values_equal(pattern: Any, data: Any, exact_numbers: bool = True) -> bool:
    """A binding value against a header value: booleans only equal booleans, strings strings;
    numbers by value (Erlang's ``==``: 1 equals 1.0) or, with ``exact_numbers`` (RabbitMQ 4.0
    on, ``_versions.HEADERS_EXACT_NUMBERS_SINCE``), only numbers of the same kind."""
    if isinstance(pattern, bool) or isinstance(data, bool):
        return isinstance(pattern, bool) and isinstance(data, bool) and pattern == data
    if isinstance(pattern, (int, float)) and isinstance(data, (int, float)):
        if isinstance(pattern, float) and math.isnan(pattern):
            return False
        if exact_numbers and isinstance(pattern, float) != isinstance(data, float):
            return False
        return pattern == data
    if isinstance(pattern, bytes):
        pattern = pattern.decode("utf-8", "replace")
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if isinstance(pattern, str) or isinstance(data, str):
        return isinstance(pattern, str) and isinstance(data, str) and pattern == data
    if isinstance(pattern, Mapping) and isinstance(data, Mapping):
        return set(pattern) == set(data) and all(
            values_equal(pattern[k], data[k], exact_numbers) for k in pattern
        )
    if isinstance(pattern, (list, tuple)) and isinstance(data, (list, tuple)):
        return len(pattern) == len(data) and all(
            values_equal(a, b, exact_numbers) for a, b in zip(pattern, data, strict=True)
        )
    return bool(pattern == data)


def x_match_kind(arguments: Mapping[str, Any]) -> str:
    """The binding's ``x-match``; anything unrecognised counts as ``all`` (``parse_x_match``)."""
    kind = arguments.get("x-match")
    return kind if isinstance(kind, str) and kind in X_MATCH_KINDS else "all"


def headers_match(
    arguments: Mapping[str, Any], headers: Mapping[str, Any], exact_numbers: bool = True
) -> bool:
    """``rabbit_exchange_type_headers:headers_match/2`` for one binding."""
    kind = x_match_kind(arguments)
    with_x = kind.endswith("-with-x")
    all_match, any_match = True, False
    for key, expected in arguments.items():
        if key == "x-match" or (key.startswith("x-") and not with_x):
            continue
        if key not in headers:
            all_match = False
        elif expected is None or values_equal(expected, headers[key], exact_numbers):
            any_match = True
        else:
            all_match = False
    return all_match if kind.startswith("all") else any_match


def routing_keys(message: Message) -> tuple[tuple[str, ...], str | None]:
    """The message's routing keys (its key, then CC and BCC), or why the broker refuses it."""
    keys = [message.routing_key]
    for header in ("CC", "BCC"):
        if header not in message.headers:
            continue
        value = message.headers[header]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return (), (
                f"header {header} must be an array of strings (the broker closes the channel: "
                "unacceptable_type_in_header)"
            )
        keys.extend(value)
    return tuple(keys), None


def binding_matches(
    exchange_type: str,
    binding: BindingSpec,
    keys: Sequence[str],
    headers: Mapping[str, Any],
    exact_numbers: bool = True,
) -> bool:
    """Whether one binding of an exchange of ``exchange_type`` takes the message."""
    if exchange_type == "fanout":
        return True
    if exchange_type == "direct":
        return binding.routing_key in keys
    if exchange_type == "topic":
        return any(topic_matches(binding.routing_key, k) for k in keys)
    if exchange_type == "headers":
        return headers_match(binding.arguments, headers, exact_numbers)
    return False  # a plugin's type: not modelled (see Simulator.unknown_types)


# ----------------------------------------------------------------------------- policies

# Policy keys a queue type does not support in any release: a policy (or operator policy)
# with any of these keys does not apply to a queue of that type at all (rabbit_policy:matches/3
# -> rabbit_amqqueue:is_policy_applicable/2 -> the queue type's capabilities/0
# ``unsupported_policies`` in rabbit_classic_queue / rabbit_quorum_queue /
# rabbit_stream_queue). Measured on RabbitMQ 3.10.8 and 4.0.5 with one policy per key and
# queue type; the keys that moved between releases are rows of
# ``_versions.POLICY_APPLICABILITY_EDGES``.
_STREAM_ONLY = frozenset(
    {"max-age", "stream-max-segment-size-bytes", "initial-cluster-size", "stream-filter-size-bytes"}
)
_QUORUM_ONLY = frozenset({"delivery-limit", "dead-letter-strategy"})
UNSUPPORTED_POLICY_KEYS: Mapping[str, frozenset[str]] = {
    "classic": frozenset({*_QUORUM_ONLY, *_STREAM_ONLY}),
    "quorum": frozenset(
        {"queue-mode", "queue-master-locator", "max-priority", *MIRRORING_KEYS, *_STREAM_ONLY}
    ),
    "stream": frozenset(
        {
            "message-ttl",
            "expires",
            "max-length",
            "overflow",
            "dead-letter-exchange",
            "dead-letter-routing-key",
            "queue-mode",
            "queue-master-locator",
            "max-in-memory-length",
            "max-in-memory-bytes",
            "max-priority",
            "single-active-consumer",
            *_QUORUM_ONLY,
            *MIRRORING_KEYS,
        }
    ),
}


def unsupported_policy_keys(queue_type: str, version: tuple[int, ...] = ()) -> frozenset[str]:
    """Policy keys that make a whole policy skip queues of ``queue_type`` on ``version``
    (``()``: the newest rules known here)."""
    return UNSUPPORTED_POLICY_KEYS.get(queue_type, frozenset()) | policy_keys_skipped(
        queue_type, version
    )


# Keys both a policy and an operator policy may set, and how the broker combines them
# (rabbit_policies:merge_policy_value/3): the smaller number wins; for booleans (4.x) the
# operator policy's.
MIN_MERGED_KEYS = frozenset(
    {
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "expires",
        "delivery-limit",
    }
)

# How a queue combines its own argument x-KEY with the effective policy value of KEY
# (rabbit_amqqueue_process:process_args_policy/1 for classic queues,
# rabbit_quorum_queue:gather_policy_config/2 for quorum queues): "min" the smaller wins,
# "argument" the queue argument wins, "policy" the policy wins.
_CLASSIC_RESOLVE = {
    "expires": "min",
    "message-ttl": "min",
    "max-length": "min",
    "max-length-bytes": "min",
    "dead-letter-exchange": "argument",
    "dead-letter-routing-key": "argument",
    "overflow": "argument",
    "queue-mode": "argument",
    "queue-version": "argument",
}
_QUORUM_RESOLVE = {
    "expires": "min",
    "message-ttl": "min",
    "max-length": "min",
    "max-length-bytes": "min",
    "max-in-memory-length": "min",
    "max-in-memory-bytes": "min",
    "delivery-limit": "min",
    "overflow": "policy",
    "dead-letter-exchange": "argument",
    "dead-letter-routing-key": "argument",
    "dead-letter-strategy": "argument",
}
RESOLVE_RULES: Mapping[str, Mapping[str, str]] = {
    "classic": _CLASSIC_RESOLVE,
    "quorum": _QUORUM_RESOLVE,
    "stream": {},
}
_RULE_TEXT = {
    "min": "the smaller of argument and policy",
    "argument": "the argument wins over the policy",
    "policy": "the policy wins over the argument",
}


@dataclass(frozen=True)
class Candidate:
    """A policy considered for an object, and whether (and why not) it applies."""

    policy: PolicySpec
    applies: bool
    reason: str = ""  # why it does not apply

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.policy.name,
            "pattern": self.policy.pattern,
            "apply_to": self.policy.apply_to,
            "priority": self.policy.priority,
            "applies": self.applies,
            **({"reason": self.reason} if self.reason else {}),
        }


@dataclass(frozen=True)
class Selection:
    """The policy the broker picks for one object, with every candidate it considered."""

    chosen: PolicySpec | None
    candidates: tuple[Candidate, ...]
    tie: tuple[str, ...] = ()  # names of the matching policies sharing the top priority


def applies_to_kind(apply_to: str, kind: str, queue_type: str) -> bool:
    """``rabbit_policy:matches_type/2`` and ``matches_queue_type/3``."""
    if kind == "exchange":
        return apply_to in ("exchanges", "all")
    per_type = {"classic": "classic_queues", "quorum": "quorum_queues", "stream": "streams"}
    return apply_to in ("queues", "all") or apply_to == per_type.get(queue_type)


def pattern_matches(pattern: str, name: str) -> bool | None:
    """``re:run(Name, Pattern)``: a search anywhere in the name; None when Python cannot read
    the pattern (PCRE syntax Python lacks)."""
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return None


def select_policy(
    kind: str,
    name: str,
    queue_type: str,
    policies: Iterable[PolicySpec],
    version: tuple[int, ...] = (),
) -> Selection:
    """``rabbit_policy:match/3``: of the policies whose apply-to, pattern and keys fit the
    object, the highest priority wins. Equal priorities are a tie: the broker sorts with
    ``lists:sort`` on ``priority >=`` over the store's listing order, which is not defined, so
    which one it applies is not ours to say (the tie is reported; ``chosen`` is the first
    listed)."""
    candidates: list[Candidate] = []
    for p in policies:
        matched = pattern_matches(p.pattern, name)
        if matched is None:
            candidates.append(Candidate(p, False, "pattern not readable here"))
            continue
        if not matched:
            continue  # not a candidate at all: its pattern does not match
        if not applies_to_kind(p.apply_to, kind, queue_type):
            candidates.append(Candidate(p, False, f"apply-to {p.apply_to}"))
            continue
        if kind == "queue":
            unsupported = sorted(set(p.definition) & unsupported_policy_keys(queue_type, version))
            if unsupported:
                candidates.append(
                    Candidate(
                        p,
                        False,
                        f"{', '.join(unsupported)} not supported by {queue_type} queues: the "
                        "broker ignores the whole policy for this queue",
                    )
                )
                continue
        candidates.append(Candidate(p, True))
    applicable = sorted((c for c in candidates if c.applies), key=lambda c: -c.policy.priority)
    if not applicable:
        return Selection(None, tuple(candidates))
    top = applicable[0].policy.priority
    tied = tuple(c.policy.name for c in applicable if c.policy.priority == top)
    return Selection(applicable[0].policy, tuple(candidates), tied if len(tied) > 1 else ())


def merge_definitions(
    policy: Mapping[str, Any] | None, operator: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``rabbit_policy:merge_operator_definitions/2``: the effective policy definition, as the
    broker reports it in ``effective_policy_definition``."""
    policy, operator = dict(policy or {}), dict(operator or {})
    merged: dict[str, Any] = {}
    for key in sorted(set(policy) | set(operator)):
        if key not in operator:
            merged[key] = policy[key]
        elif key not in policy:
            merged[key] = operator[key]
        else:
            merged[key] = merge_value(key, policy[key], operator[key])[0]
    return merged


def merge_value(key: str, value: Any, op_value: Any) -> tuple[Any, str]:
    """``rabbit_policies:merge_policy_value/3``: the value and which side it came from."""
    if key in MIN_MERGED_KEYS and _number(value) and _number(op_value):
        return (value, "policy") if value < op_value else (op_value, "operator_policy")
    return op_value, "operator_policy"  # booleans and anything else: the operator's


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Setting:
    """One effective setting of an object, and where its value comes from."""

    value: Any
    source: str  # "argument", "policy", "operator_policy", or "default" (the broker's own)
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.rule:
            out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class Ignored:
    """A setting that has no effect on this object, and why."""

    key: str
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"key": self.key, "source": self.source, "reason": self.reason}


@dataclass(frozen=True)
class Explanation:
    """``declare-amqp explain``: the policies of one object and its effective settings."""

    kind: str  # "queue" or "exchange"
    vhost: str
    name: str
    queue_type: str
    policy: Selection
    operator_policy: Selection
    effective_policy_definition: Mapping[str, Any]
    effective: Mapping[str, Setting]
    ignored: tuple[Ignored, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the issue's shape plus candidates, ties and ignored settings)."""
        return {
            "kind": self.kind,
            "vhost": self.vhost,
            "name": self.name,
            **({"type": self.queue_type} if self.kind == "queue" else {}),
            "policy": self.policy.chosen.name if self.policy.chosen else None,
            "operator_policy": (
                self.operator_policy.chosen.name if self.operator_policy.chosen else None
            ),
            "effective_policy_definition": dict(self.effective_policy_definition),
            "effective": {k: s.to_dict() for k, s in sorted(self.effective.items())},
            "policy_tie": list(self.policy.tie),
            "operator_policy_tie": list(self.operator_policy.tie),
            "candidates": {
                "policies": [c.to_dict() for c in self.policy.candidates],
                "operator_policies": [c.to_dict() for c in self.operator_policy.candidates],
            },
            "ignored": [i.to_dict() for i in self.ignored],
        }


# ----------------------------------------------------------------------------- the simulator


@dataclass(frozen=True)
class _Exchange:
    name: str
    type: str
    internal: bool
    arguments: Mapping[str, Any]


class UnknownObject(LookupError):
    """``explain`` was asked about an object the topology does not have."""


class Simulator:
    """Routing and policy rules over one topology (files, or what a broker holds).

    ``operator_policies`` are the operator policies in force (from the files' ``access``, or
    read from the broker); ``version`` is the broker's (``()``: the newest rules known here).
    """

    def __init__(
        self,
        topology: Topology,
        operator_policies: Iterable[PolicySpec] = (),
        version: tuple[int, ...] = (),
    ) -> None:
        self.topology = topology
        self.version = version
        self.exact_numbers = not version or version >= HEADERS_EXACT_NUMBERS_SINCE
        self._exchanges: dict[tuple[str, str], _Exchange] = {}
        self._queues: dict[tuple[str, str], QueueSpec] = {}
        self._bindings: dict[tuple[str, str], list[BindingSpec]] = {}
        self._policies: dict[str, list[PolicySpec]] = {}
        self._operator: dict[str, list[PolicySpec]] = {}
        self._selected: dict[tuple[str, str, str], tuple[Selection, Selection]] = {}
        vhosts = set(topology.vhost_names())
        for vhost in vhosts:
            for name, (kind, internal) in BUILTIN_EXCHANGE_TYPES.items():
                self._exchanges[(vhost, name)] = _Exchange(name, kind, internal, {})
        for x in topology.exchanges:
            self._exchanges[(x.vhost, x.name)] = _Exchange(x.name, x.type, x.internal, x.arguments)
        for q in topology.queues:
            self._queues[(q.vhost, q.name)] = q
        for b in topology.bindings:
            self._bindings.setdefault((b.vhost, b.source), []).append(b)
        for p in topology.policies:
            self._policies.setdefault(p.vhost, []).append(p)
        for p in operator_policies:
            self._operator.setdefault(p.vhost, []).append(p)

    # -- lookups

    def exchange(self, vhost: str, name: str) -> ExchangeSpec | None:
        """The exchange (built-in ones included), or None."""
        x = self._exchanges.get((vhost, name))
        if x is None:
            return None
        return ExchangeSpec(vhost, x.name, x.type, internal=x.internal, arguments=x.arguments)

    def queue(self, vhost: str, name: str) -> QueueSpec | None:
        """The queue, or None."""
        return self._queues.get((vhost, name))

    def unknown_types(self, vhost: str) -> list[str]:
        """Exchanges of plugin types (x-...) whose routing is not modelled."""
        return sorted(
            x.name
            for (v, _), x in self._exchanges.items()
            if v == vhost and x.type not in ("direct", "fanout", "topic", "headers")
        )

    def selections(self, vhost: str, kind: str, name: str) -> tuple[Selection, Selection]:
        """The policy and operator policy selection of one object (cached)."""
        key = (vhost, kind, name)
        cached = self._selected.get(key)
        if cached is not None:
            return cached
        qtype = ""
        if kind == "queue":
            q = self._queues.get((vhost, name))
            qtype = q.type if q is not None else "classic"
        result = (
            select_policy(kind, name, qtype, self._policies.get(vhost, ()), self.version),
            select_policy(kind, name, qtype, self._operator.get(vhost, ()), self.version),
        )
        self._selected[key] = result
        return result

    def policy_value(self, vhost: str, kind: str, name: str, key: str) -> tuple[Any, str] | None:
        """``rabbit_policy:get/2``: a key of the effective policy definition and its source."""
        policy, operator = self.selections(vhost, kind, name)
        p = policy.chosen.definition if policy.chosen else {}
        o = operator.chosen.definition if operator.chosen else {}
        if key in p and key in o:
            return merge_value(key, p[key], o[key])
        if key in p:
            return p[key], "policy"
        if key in o:
            return o[key], "operator_policy"
        return None

    # -- routing

    def route(self, vhost: str, message: Message, *, dead_letters: bool = True) -> Route:
        """Where the broker puts ``message`` published to ``message.exchange`` in ``vhost``."""
        keys, refused = routing_keys(message)
        start = self._exchanges.get((vhost, message.exchange))
        if refused is None and start is None:
            refused = (
                f"exchange '{message.exchange}' does not exist in vhost '{vhost}' (the broker "
                "closes the channel: 404 NOT_FOUND)"
            )
        if refused is None and start is not None and start.internal:
            refused = (
                f"exchange '{message.exchange}' is internal: only other exchanges may publish "
                "to it (the broker closes the channel: 403 ACCESS_REFUSED)"
            )
        if refused is not None or start is None:
            return Route(message, (), refused=refused)
        queues, path = self._route(vhost, start, keys, message.headers)
        dead: dict[str, DeadLetter] = {}
        if dead_letters:
            for q in queues:
                d = self.dead_letter(vhost, q, keys, message.headers)
                if d is not None:
                    dead[q] = d
        return Route(message, tuple(sorted(queues)), tuple(path), dead)

    def _route(
        self, vhost: str, start: _Exchange, keys: Sequence[str], headers: Mapping[str, Any]
    ) -> tuple[set[str], list[Hop]]:
        queues: set[str] = set()
        path: list[Hop] = []
        seen = {start.name}
        work = [start]
        while work:
            x = work.pop()
            found: list[Hop] = []
            if x.name == "":
                for k in keys:
                    if (vhost, k) in self._queues:
                        found.append(Hop("", k, k, "queue", "default exchange"))
            else:
                for b in self._bindings.get((vhost, x.name), ()):
                    if binding_matches(x.type, b, keys, headers, self.exact_numbers):
                        found.append(
                            Hop(
                                x.name,
                                b.routing_key,
                                b.destination,
                                b.destination_type,
                                arguments=b.arguments if x.type == "headers" else {},
                            )
                        )
            if not found and x.name != "":
                ae = self._alternate(vhost, x)
                if ae is not None:
                    found.append(Hop(x.name, "", ae, "exchange", "alternate-exchange"))
            for hop in found:
                if hop.destination_type == "queue":
                    if (vhost, hop.destination) in self._queues:
                        path.append(hop)
                        queues.add(hop.destination)
                    continue
                path.append(hop)
                if hop.destination in seen:
                    continue
                seen.add(hop.destination)
                nxt = self._exchanges.get((vhost, hop.destination))
                if nxt is not None:  # cons_if_present: a missing exchange is skipped
                    work.append(nxt)
        return queues, path

    def alternate_exchange(self, vhost: str, name: str) -> str | None:
        """The exchange's alternate exchange (argument, else policy), or None."""
        x = self._exchanges.get((vhost, name))
        return self._alternate(vhost, x) if x is not None else None

    def _alternate(self, vhost: str, x: _Exchange) -> str | None:
        value = x.arguments.get("alternate-exchange")
        if isinstance(value, str):
            return value
        from_policy = self.policy_value(vhost, "exchange", x.name, "alternate-exchange")
        if from_policy is not None and isinstance(from_policy[0], str):
            return from_policy[0]
        return None

    def dead_letter_settings(
        self, vhost: str, queue: str
    ) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """The queue's dead-letter exchange and routing key, each with its source."""
        q = self._queues.get((vhost, queue))
        if q is None or q.type == "stream":
            return None, None
        result: list[tuple[str, str] | None] = []
        for key in ("dead-letter-exchange", "dead-letter-routing-key"):
            arg = q.arguments.get("x-" + key)
            if isinstance(arg, str):
                result.append((arg, "argument"))
                continue
            pol = self.policy_value(vhost, "queue", queue, key)
            result.append((str(pol[0]), pol[1]) if pol is not None else None)
        return result[0], result[1]

    def dead_letter(
        self, vhost: str, queue: str, keys: Sequence[str], headers: Mapping[str, Any]
    ) -> DeadLetter | None:
        """Where ``queue`` dead-letters this message (rejected, expired or over a limit)."""
        dlx, dlrk = self.dead_letter_settings(vhost, queue)
        if dlx is None:
            return None
        new_keys = [dlrk[0]] if dlrk is not None else list(keys)
        target = self._exchanges.get((vhost, dlx[0]))
        queues: set[str] = set()
        if target is not None:
            queues, _ = self._route(vhost, target, new_keys, headers)
        return DeadLetter(
            exchange=dlx[0],
            routing_key=new_keys[0] if new_keys else "",
            queues=tuple(sorted(queues)),
            routing_key_source=dlrk[1] if dlrk is not None else "message",
            exchange_source=dlx[1],
            exchange_missing=target is None,
        )

    # -- explain

    def explain(self, vhost: str, kind: str, name: str) -> Explanation:
        """The policies that apply to a queue or exchange and its effective settings."""
        if kind == "queue":
            q = self._queues.get((vhost, name))
            if q is None:
                raise UnknownObject(f"queue '{name}' is not in vhost '{vhost}'")
            qtype, arguments, durable = q.type, dict(q.arguments), q.durable
        else:
            x = self._exchanges.get((vhost, name))
            if x is None:
                raise UnknownObject(f"exchange '{name}' is not in vhost '{vhost}'")
            qtype, arguments, durable = "", dict(x.arguments), True
        policy, operator = self.selections(vhost, kind, name)
        pdef = dict(policy.chosen.definition) if policy.chosen else {}
        odef = dict(operator.chosen.definition) if operator.chosen else {}
        merged = merge_definitions(
            pdef if policy.chosen else None, odef if operator.chosen else None
        )
        effective: dict[str, Setting] = {}
        for key, value in merged.items():
            if key in pdef and key in odef:
                v, source = merge_value(key, pdef[key], odef[key])
                rule = (
                    "the smaller of policy and operator policy"
                    if key in MIN_MERGED_KEYS
                    else "the operator policy wins"
                )
                effective[key] = Setting(v, source, rule)
            else:
                effective[key] = Setting(value, "policy" if key in pdef else "operator_policy")
        rules = (
            RESOLVE_RULES.get(qtype, {}) if kind == "queue" else {"alternate-exchange": "argument"}
        )
        for arg, value in arguments.items():
            key = arg[2:] if arg.startswith("x-") else arg
            if key not in effective:
                effective[key] = Setting(value, "argument")
                continue
            resolve = rules.get(key)
            from_policy = effective[key]
            if resolve == "min" and _number(value) and _number(from_policy.value):
                if value <= from_policy.value:
                    effective[key] = Setting(value, "argument", _RULE_TEXT["min"])
                else:
                    effective[key] = Setting(
                        from_policy.value, from_policy.source, _RULE_TEXT["min"]
                    )
            elif resolve == "policy":
                effective[key] = Setting(
                    from_policy.value, from_policy.source, _RULE_TEXT["policy"]
                )
            else:
                effective[key] = Setting(value, "argument", _RULE_TEXT["argument"])
        ignored: list[Ignored] = []
        for selection, source in ((policy, "policy"), (operator, "operator_policy")):
            for c in selection.candidates:
                if not c.applies:
                    ignored.append(Ignored(c.policy.name, source, c.reason))
        if kind == "queue":
            ignored += self._version_notes(qtype, durable, arguments, merged, effective)
        return Explanation(
            kind=kind,
            vhost=vhost,
            name=name,
            queue_type=qtype,
            policy=policy,
            operator_policy=operator,
            effective_policy_definition=merged,
            effective=effective,
            ignored=tuple(ignored),
        )

    def _version_notes(
        self,
        qtype: str,
        durable: bool,
        arguments: Mapping[str, Any],
        merged: Mapping[str, Any],
        effective: dict[str, Setting],
    ) -> list[Ignored]:
        """What has no effect on this queue for its type or the broker's version (rows of
        ``_versions.EDGES``), and the broker's default delivery limit (added to
        ``effective``)."""
        notes = [
            Ignored(arg, "argument", f"not supported by {qtype} queues")
            for arg in sorted(set(arguments) & FORBIDDEN_ARGUMENTS.get(qtype, frozenset()))
        ]
        for edge in edges_at(self.version):
            if edge.effect is Effect.DEFAULT:
                continue
            for hit in edge.queue_hits(qtype, durable, arguments):
                source = "queue" if edge.subject is Subject.QUEUE else "argument"
                notes.append(Ignored(hit, source, f"{edge.effect.value}: {edge.describe()}"))
            for hit in edge.policy_hits(merged):
                notes.append(Ignored(hit, "policy", f"{edge.effect.value}: {edge.describe()}"))
        limit = edge_row("quorum-delivery-limit", Subject.QUEUE_ARGUMENT, self.version or (4, 0))
        if qtype == "quorum" and limit is not None and "delivery-limit" not in effective:
            effective["delivery-limit"] = Setting(
                QUORUM_DEFAULT_DELIVERY_LIMIT,
                "default",
                "for quorum queues since RabbitMQ 4.0; set delivery_limit, -1 for none",
            )
        return notes


def simulator_for(topology: Topology, version: tuple[int, ...] = ()) -> Simulator:
    """A simulator with the operator policies the topology's ``access`` part declares."""
    operator: tuple[PolicySpec, ...] = ()
    if topology.access is not None:
        operator = topology.access.group("operator_policies")
    return Simulator(topology, operator, version)


# ----------------------------------------------------------------------------- expectations


def describe_route(route: Route) -> str:
    """One line: the queues reached and the path, for messages and text output."""
    if route.refused:
        return f"refused: {route.refused}"
    reached = ", ".join(route.queues) if route.queues else "no queue (unroutable)"
    steps = []
    for hop in route.path:
        arrow = f"-[{hop.binding_key}]->" if hop.binding_key else "->"
        if hop.via == "alternate-exchange":
            arrow = "-alternate->"
        steps.append(f"{hop.exchange or '(default)'} {arrow} {hop.destination}")
    return reached + (f" (via {'; '.join(steps)})" if steps else "")


def check_expectations(
    simulator: Simulator, expectations: Iterable[Expectation], *, offline: bool
) -> tuple[list[Problem], list[Problem]]:
    """Route each expectation's message; an expectation whose queues differ is an error.

    ``offline``: the simulator holds only the files, so an expectation whose exchange no file
    declares cannot be checked (a note, not an error); ``plan`` checks it against the broker.
    """
    errors: list[Problem] = []
    notes: list[Problem] = []
    for e in expectations:
        if offline and simulator.exchange(e.vhost, e.exchange) is None:
            notes.append(
                Problem(
                    f"exchange '{e.exchange}' is not declared in the files: checked only by "
                    "`plan`, against the broker",
                    e.location,
                    e.label,
                )
            )
            continue
        route = simulator.route(e.vhost, Message(e.exchange, e.routing_key, e.headers))
        wanted = tuple(sorted(e.reaches))
        if route.refused is not None or route.queues != wanted:
            expected = ", ".join(wanted) if wanted else "no queue (unroutable)"
            errors.append(
                Problem(
                    f"expected {expected}, but it reaches {describe_route(route)}",
                    e.location,
                    e.label,
                )
            )
    return errors, notes


def after_apply(desired: Topology, actual: Topology, *, prune: bool = False) -> Topology:
    """What the broker holds once ``desired`` is applied over ``actual``: the files' objects,
    plus the broker's others (dropped with ``prune`` in the files' vhosts). ``plan`` checks
    the ``expect`` section against this."""
    pruned = set(desired.vhost_names()) if prune else set()

    def keep(obj: Any, declared: set[Any], key: Any) -> bool:
        return key not in declared and obj.vhost not in pruned

    xs = {(x.vhost, x.name) for x in desired.exchanges}
    qs = {(q.vhost, q.name) for q in desired.queues}
    bs = {b.key for b in desired.bindings}
    ps = {(p.vhost, p.name) for p in desired.policies}
    return Topology(
        vhosts=desired.vhosts,
        exchanges=(
            *desired.exchanges,
            *(x for x in actual.exchanges if keep(x, xs, (x.vhost, x.name))),
        ),
        queues=(*desired.queues, *(q for q in actual.queues if keep(q, qs, (q.vhost, q.name)))),
        bindings=(*desired.bindings, *(b for b in actual.bindings if keep(b, bs, b.key))),
        policies=(
            *desired.policies,
            *(p for p in actual.policies if keep(p, ps, (p.vhost, p.name))),
        ),
        named=tuple(dict.fromkeys((*desired.vhost_names(), *actual.vhost_names()))),
        access=desired.access,
    )

"""Routing as the broker does it, rule by rule: the matching of each exchange type, a
message's routing keys and the values a route is made of. Pure: no I/O, no broker.
``_simulate.Simulator.route`` walks exchanges with these rules. Every rule names the server code
it follows (rabbitmq-server, ``deps/rabbit/src/``); where 3.10 and 4.x differ, both were measured
(RabbitMQ 3.10.8 and 4.0.5).

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ._model import BindingSpec

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

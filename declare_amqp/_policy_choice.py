"""Which policy the broker applies to an object, and how an operator policy merges with it
(``rabbit_policy``, ``rabbit_policies``). Pure: no I/O, no broker. Used by the simulator
(``explain``, dead letters, alternate exchanges) and by the plan (a queue's effective policy).

- ``select_policy``: of the policies whose pattern, apply-to and keys fit the object, the
  highest priority wins; a key the queue type does not support makes the broker skip the whole
  policy for that queue (``UNSUPPORTED_POLICY_KEYS``, plus the version rows of ``_versions``).
- ``merge_definitions``: the effective definition, policy and operator policy combined
  (``MIN_MERGED_KEYS``: the smaller number wins; anything else: the operator policy's).
- ``RESOLVE_RULES``: how a queue combines its own ``x-`` argument with the policy's value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._model import PolicySpec
from ._versions import MIRRORING_KEYS, policy_keys_skipped

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
RULE_TEXT: Mapping[str, str] = {
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
    if key in MIN_MERGED_KEYS and is_number(value) and is_number(op_value):
        return (value, "policy") if value < op_value else (op_value, "operator_policy")
    return op_value, "operator_policy"  # booleans and anything else: the operator's


def is_number(value: Any) -> bool:
    """A number the broker compares by size (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)

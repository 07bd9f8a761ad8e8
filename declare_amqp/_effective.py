"""``declare-amqp explain``: an object's effective settings and where each comes from. Pure.

Given the policy and operator policy the broker picks (``_policy_choice.select_policy``), the
effective policy definition is their merge (``rabbit_policy:merge_operator_definitions/2``), and
each of the object's own arguments is combined with it by the queue type's rule
(``RESOLVE_RULES``: ``rabbit_amqqueue_process:process_args_policy/1``,
``rabbit_quorum_queue:gather_policy_config/2``). Settings without effect on the object, for its
type or the broker's version (rows of ``_versions.EDGES``), are listed as ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._format import FORBIDDEN_ARGUMENTS
from ._policy_choice import (
    MIN_MERGED_KEYS,
    RESOLVE_RULES,
    RULE_TEXT,
    Selection,
    is_number,
    merge_definitions,
    merge_value,
)
from ._versions import QUORUM_DEFAULT_DELIVERY_LIMIT, Effect, Subject, edges_at
from ._versions import edge as edge_row


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


def explanation(
    kind: str,
    vhost: str,
    name: str,
    queue_type: str,
    arguments: Mapping[str, Any],
    durable: bool,
    selections: tuple[Selection, Selection],
    version: tuple[int, ...] = (),
) -> Explanation:
    """The explanation of one queue (``queue_type`` its type) or exchange (``""``): the chosen
    policy and operator policy, the effective settings and what the broker ignores."""
    policy, operator = selections
    pdef = dict(policy.chosen.definition) if policy.chosen else {}
    odef = dict(operator.chosen.definition) if operator.chosen else {}
    merged = merge_definitions(pdef if policy.chosen else None, odef if operator.chosen else None)
    effective = _from_policies(merged, pdef, odef)
    rules = (
        RESOLVE_RULES.get(queue_type, {}) if kind == "queue" else {"alternate-exchange": "argument"}
    )
    _with_arguments(effective, arguments, rules)
    ignored = [
        Ignored(c.policy.name, source, c.reason)
        for selection, source in ((policy, "policy"), (operator, "operator_policy"))
        for c in selection.candidates
        if not c.applies
    ]
    if kind == "queue":
        ignored += version_notes(queue_type, durable, arguments, merged, effective, version)
    return Explanation(
        kind=kind,
        vhost=vhost,
        name=name,
        queue_type=queue_type,
        policy=policy,
        operator_policy=operator,
        effective_policy_definition=merged,
        effective=effective,
        ignored=tuple(ignored),
    )


def _from_policies(
    merged: Mapping[str, Any], pdef: Mapping[str, Any], odef: Mapping[str, Any]
) -> dict[str, Setting]:
    """Each key of the merged definition with the side it came from."""
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
    return effective


def _with_arguments(
    effective: dict[str, Setting], arguments: Mapping[str, Any], rules: Mapping[str, str]
) -> None:
    """The object's own arguments combined with the policies' values, by ``rules``."""
    for arg, value in arguments.items():
        key = arg[2:] if arg.startswith("x-") else arg
        if key not in effective:
            effective[key] = Setting(value, "argument")
            continue
        resolve = rules.get(key)
        from_policy = effective[key]
        if resolve == "min" and is_number(value) and is_number(from_policy.value):
            if value <= from_policy.value:
                effective[key] = Setting(value, "argument", RULE_TEXT["min"])
            else:
                effective[key] = Setting(from_policy.value, from_policy.source, RULE_TEXT["min"])
        elif resolve == "policy":
            effective[key] = Setting(from_policy.value, from_policy.source, RULE_TEXT["policy"])
        else:
            effective[key] = Setting(value, "argument", RULE_TEXT["argument"])


def version_notes(
    qtype: str,
    durable: bool,
    arguments: Mapping[str, Any],
    merged: Mapping[str, Any],
    effective: dict[str, Setting],
    version: tuple[int, ...] = (),
) -> list[Ignored]:
    """What has no effect on this queue for its type or the broker's version (rows of
    ``_versions.EDGES``), and the broker's default delivery limit (added to ``effective``)."""
    notes = [
        Ignored(arg, "argument", f"not supported by {qtype} queues")
        for arg in sorted(set(arguments) & FORBIDDEN_ARGUMENTS.get(qtype, frozenset()))
    ]
    for edge in edges_at(version):
        if edge.effect is Effect.DEFAULT:
            continue
        for hit in edge.queue_hits(qtype, durable, arguments):
            source = "queue" if edge.subject is Subject.QUEUE else "argument"
            notes.append(Ignored(hit, source, f"{edge.effect.value}: {edge.describe()}"))
        for hit in edge.policy_hits(merged):
            notes.append(Ignored(hit, "policy", f"{edge.effect.value}: {edge.describe()}"))
    limit = edge_row("quorum-delivery-limit", Subject.QUEUE_ARGUMENT, version or (4, 0))
    if qtype == "quorum" and limit is not None and "delivery-limit" not in effective:
        effective["delivery-limit"] = Setting(
            QUORUM_DEFAULT_DELIVERY_LIMIT,
            "default",
            "for quorum queues since RabbitMQ 4.0; set delivery_limit, -1 for none",
        )
    return notes

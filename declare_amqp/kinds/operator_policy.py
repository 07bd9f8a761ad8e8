"""Operator policies: limits set by the operator that users' policies cannot lift."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import Location, Problem
from .._fit import policy_value_problem
from .._format import Key
from .._model import PolicySpec
from .._plan import CREATE, DELETE, UPDATE, Change, Kind
from .._versions import added_in, parse_version, show_version
from ._base import _INT, _STR, ADMINISTRATOR, AccessKind

if TYPE_CHECKING:
    from .._management import ManagementClient

# The keys the broker allows in an operator policy's definition (rabbit_policies).
OPERATOR_POLICY_DEFINITION_KEYS = frozenset(
    {
        "expires",
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "delivery-limit",
        "overflow",
        "target-group-size",
    }
)

# What RabbitMQ versions before these refuse in an operator policy (rows of
# _versions.ADDED_EDGES, with their sources); for 3.12.x before the patch that brought overflow
# the broker's own answer stands.
OPERATOR_POLICY_KEYS_SINCE = {
    "overflow": added_in("operator-policy-overflow"),
    "target-group-size": added_in("operator-policy-target-group-size"),
}
QUEUE_TYPE_APPLY_TO = ("classic_queues", "quorum_queues", "streams")
QUEUE_TYPE_APPLY_TO_SINCE = added_in("queue-type-apply-to")
NO_DELIVERY_LIMIT_SINCE = added_in("no-delivery-limit")  # delivery-limit -1, operator policy


@dataclass(frozen=True)
class OperatorPolicySpec(PolicySpec):
    """An operator policy: limits set by the operator that users' policies cannot lift."""

    GROUP: ClassVar[str] = "operator_policies"
    IN_VHOST: ClassVar[bool] = True

    apply_to: str = "queues"

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"operator policy '{self.name}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        """Plan details."""
        definition = ", ".join(f"{k}={v}" for k, v in sorted(self.definition.items()))
        return f"/{self.pattern}/ on {self.apply_to}, priority {self.priority}: {definition}"


class OperatorPolicyKind(AccessKind[OperatorPolicySpec]):
    """The ``operator_policies`` list; a ``parameters`` entry (``operator_policy``) or an
    ``operator_policies`` list in definitions JSON."""

    spec = OperatorPolicySpec
    kind = Kind.OPERATOR_POLICY
    key = "operator_policies"
    doc = "Operator policies: limits users' policies cannot lift."
    schema_name = "operator_policy"
    schema_doc = "An operator policy."
    plural = "operator policies"
    tag = ADMINISTRATOR
    compared = ("pattern", "definition", "apply_to", "priority")
    renamed = {"apply-to": "apply_to"}
    component = "operator_policy"
    definitions_section = "operator_policies"  # read; written among the parameters
    checked_on_broker = True
    keys = (
        Key("name", _STR, "Operator policy name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        Key("pattern", _STR, "Regular expression matched against queue names.", required=True),
        Key(
            "apply_to",
            _STR,
            "Which queues it applies to.",
            default="queues",
            choices=("queues", "classic_queues", "quorum_queues", "streams"),
        ),
        Key(
            "definition",
            (dict,),
            "Limits: " + ", ".join(sorted(OPERATOR_POLICY_DEFINITION_KEYS)) + ".",
            required=True,
        ),
        Key("priority", _INT, "Higher wins when several operator policies match.", default=0),
    )

    def identity(self, spec: OperatorPolicySpec) -> tuple[Any, ...]:
        """Its vhost and name."""
        return (spec.vhost, spec.name)

    def build(self, f: Mapping[str, Any], vhost: str, location: Location) -> OperatorPolicySpec:
        """An operator policy entry (``apply_to`` defaults to queues)."""
        return OperatorPolicySpec(
            f.get("vhost", vhost),
            f["name"],
            f["pattern"],
            dict(f["definition"]),
            f.get("apply_to", "queues"),
            f.get("priority", 0),
            location,
        )

    def problems(self, spec: OperatorPolicySpec) -> list[Problem]:
        """A pattern that does not compile, an empty definition, keys the broker does not allow in
        an operator policy, values that do not fit."""
        o, problems = spec, []
        try:
            re.compile(o.pattern)
        except re.error as exc:
            problems.append(
                Problem(f"pattern is not a valid regular expression: {exc}", o.location, o.label)
            )
        if not o.definition:
            problems.append(Problem("definition must not be empty", o.location, o.label))
        allowed = ", ".join(sorted(OPERATOR_POLICY_DEFINITION_KEYS))
        problems += [
            Problem(
                f"'{key}' cannot be set by an operator policy (the broker allows {allowed})",
                o.location,
                o.label,
            )
            for key in sorted(set(o.definition) - OPERATOR_POLICY_DEFINITION_KEYS)
        ]
        for key in sorted(set(o.definition) & OPERATOR_POLICY_DEFINITION_KEYS):
            wrong = policy_value_problem(key, o.definition[key], operator=True)
            if wrong is not None:
                problems.append(Problem(f"policy key '{key}' {wrong}", o.location, o.label))
        return problems

    def refusals(
        self, specs: Sequence[OperatorPolicySpec], *, users: set[str], version: str
    ) -> list[Problem]:
        """The keys and values older brokers refuse (``OPERATOR_POLICY_KEYS_SINCE`` and the
        two limits below it)."""
        v = parse_version(version)
        problems: list[Problem] = []
        for o in specs if v else ():
            for key, since in OPERATOR_POLICY_KEYS_SINCE.items():
                if key in o.definition and v < since:
                    problems.append(
                        Problem(
                            f"'{key}' cannot be set by an operator policy on RabbitMQ {version} "
                            f"({show_version(since)} and later allow it)",
                            o.location,
                            o.label,
                        )
                    )
            if o.apply_to in QUEUE_TYPE_APPLY_TO and v < QUEUE_TYPE_APPLY_TO_SINCE:
                problems.append(
                    Problem(
                        f"apply_to {o.apply_to} needs RabbitMQ "
                        f"{show_version(QUEUE_TYPE_APPLY_TO_SINCE)} or later "
                        f"(this broker is {version}); use apply_to queues",
                        o.location,
                        o.label,
                    )
                )
            if o.definition.get("delivery-limit") == -1 and v < NO_DELIVERY_LIMIT_SINCE:
                problems.append(
                    Problem(
                        f"delivery-limit -1 (no limit) needs RabbitMQ "
                        f"{show_version(NO_DELIVERY_LIMIT_SINCE)} or later (this broker is "
                        f"{version}); leave delivery-limit out for no limit",
                        o.location,
                        o.label,
                    )
                )
        return problems

    def to_definitions(self, spec: OperatorPolicySpec) -> dict[str, Any]:
        """A ``parameters`` entry (without its vhost)."""
        return {"value": spec.body(), "component": self.component, "name": spec.name}

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[OperatorPolicySpec]:
        """The operator policies of each vhost (read without the administrator tag too)."""
        return [
            OperatorPolicySpec(
                vhost,
                p["name"],
                p["pattern"],
                dict(p.get("definition") or {}),
                p.get("apply-to", "queues"),
                int(p.get("priority", 0)),
            )
            for vhost in vhosts
            # None: no such vhost yet, or not readable (the privilege check says so)
            for p in management.operator_policies(vhost) or ()
        ]

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """Write (PUT) or delete the operator policy."""
        if c.action in (CREATE, UPDATE):
            o = c.desired
            assert isinstance(o, OperatorPolicySpec)
            management.put_operator_policy(o, f"writing {o.label}")
            return True
        if c.action == DELETE:
            management.delete_operator_policy(c.vhost, c.name)
            return True
        return False

    def export_entry(self, spec: OperatorPolicySpec, with_vhost: bool) -> dict[str, Any]:
        """As a topology entry; with several vhosts, its vhost after its name."""
        entry = spec.entry()
        return {"name": spec.name, "vhost": spec.vhost, **entry} if with_vhost else entry


OPERATOR_POLICY = OperatorPolicyKind()

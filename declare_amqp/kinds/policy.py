"""The policy kind: a topology file's ``policies``, read into ``_model.PolicySpec`` (whose
``read``/``from_definitions`` the definitions reader and the broker reader share, and whose
``body`` is the one policy -> dict).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import DeclareAmqpError, Problem
from .._format import Key
from .._model import POLICY_APPLY_TO, PolicySpec, Topology
from .._plan import CREATE, DELETE, Change, Kind, Writer
from ._base import Reader, TopologyDefinitionsReader, TopologyKind, WithVhost

if TYPE_CHECKING:
    from .._management import ManagementClient

_STR = (str,)

POLICY_KEYS = (
    Key("name", _STR, "Policy name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("pattern", _STR, "Regular expression matched against object names.", required=True),
    Key("apply_to", _STR, "Which objects it applies to.", default="all", choices=POLICY_APPLY_TO),
    Key(
        "definition",
        (dict,),
        "Policy keys and values (message-ttl, max-length, ...).",
        required=True,
    ),
    Key("priority", (int,), "Higher wins when several policies match.", default=0),
)

# Policy definition keys the broker (and its bundled plugins) accepts; an unknown key
# would make the broker refuse the policy half-way through an apply.
POLICY_DEFINITION_KEYS = frozenset(
    {
        "alternate-exchange",
        "dead-letter-exchange",
        "dead-letter-routing-key",
        "dead-letter-strategy",
        "delivery-limit",
        "expires",
        "max-length",
        "max-length-bytes",
        "message-ttl",
        "overflow",
        "queue-mode",
        "queue-version",
        "queue-master-locator",
        "queue-leader-locator",
        "max-age",
        "stream-max-segment-size-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
        "ha-sync-batch-size",
        "federation-upstream",
        "federation-upstream-set",
        "initial-cluster-size",
    }
)

# Keys a policy cannot set: they are fixed when the queue is declared.
_FIXED_AT_DECLARE = ("max-priority", "queue-type", "x-queue-type", "durable")


class PolicyKind(TopologyKind[PolicySpec]):
    """A policy: written over the management API; a difference is an update in place."""

    spec = PolicySpec
    kind = Kind.POLICY
    key = "policies"
    doc = "Policies."
    top_rank = 5
    keys = POLICY_KEYS
    schema_name = "policy"
    schema_doc = "A policy."
    mutable = True
    definitions_fields = {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "pattern": (_STR, True),
        "apply-to": (_STR, False),
        "definition": ((dict,), True),
        "priority": ((int,), False),
    }
    writer = Writer.MANAGEMENT

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> PolicySpec:
        """The policy of a checked entry."""
        return PolicySpec.read(f.get("vhost", reader.vhost), f, reader.at(line))

    def problems(self, spec: PolicySpec) -> Iterable[Problem]:
        """A pattern that is no regular expression, an empty definition, a key the broker
        does not know (it would refuse the policy half-way through an apply) or cannot set
        by a policy."""
        p = spec
        try:
            re.compile(p.pattern)
        except re.error as exc:
            yield Problem(f"pattern is not a valid regular expression: {exc}", p.location, p.label)
        if not p.definition:
            yield Problem("definition must not be empty", p.location, p.label)
        for key in p.definition:
            if key not in POLICY_DEFINITION_KEYS:
                hint = difflib.get_close_matches(key, sorted(POLICY_DEFINITION_KEYS), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                yield Problem(f"unknown policy key '{key}'{suggestion}", p.location, p.label)
        for key in _FIXED_AT_DECLARE:
            if key in p.definition:
                yield Problem(
                    f"'{key}' cannot be set by a policy; it is fixed when the queue is declared",
                    p.location,
                    p.label,
                )

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> PolicySpec:
        """A policy of a definitions file (``apply-to``)."""
        return PolicySpec.from_definitions(reader.vhost_of(f), f, reader.at(line))

    def write(self, management: ManagementClient, c: Change) -> None:
        """Delete the policy, or write it whole (a create or an update)."""
        if c.action == DELETE:
            management.delete_policy(c.vhost, c.name)
        else:
            assert isinstance(c.desired, PolicySpec)
            management.put_policy(c.desired)

    def undo(self, management: ManagementClient, c: Change) -> None:
        """A create deleted; an update written back to what the broker held before."""
        if c.action == CREATE:
            management.delete_policy(c.vhost, c.name)
        elif isinstance(c.actual, PolicySpec):
            management.put_policy(c.actual)
        else:
            raise DeclareAmqpError("what it was before is not known")

    def to_definitions(self, spec: PolicySpec) -> dict[str, Any]:
        """A policy as definitions JSON spells it (``apply-to``; the vhost added by the
        caller)."""
        return {"name": spec.name, **spec.body()}

    def export(
        self, topology: Topology, single: bool, with_vhost: WithVhost
    ) -> list[dict[str, Any]]:
        """The policies, by vhost and name (``PolicySpec.entry``)."""
        return [
            with_vhost(p.entry(), p.vhost)
            for p in sorted(topology.policies, key=lambda p: (p.vhost, p.name))
        ]


POLICY = PolicyKind()

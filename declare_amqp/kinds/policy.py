"""The policy kind: a topology file's ``policies``, read into ``_model.PolicySpec`` (whose
``read``/``from_definitions`` the definitions reader and the broker reader share, and whose
``body`` is the one policy -> dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._format import Key
from .._model import POLICY_APPLY_TO, PolicySpec
from .._plan import Kind
from ._base import Reader, TopologyKind

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

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> PolicySpec:
        """The policy of a checked entry."""
        return PolicySpec.read(f.get("vhost", reader.vhost), f, reader.at(line))

    def to_definitions(self, spec: PolicySpec) -> dict[str, Any]:
        """A policy as definitions JSON spells it (``apply-to``; the vhost added by the
        caller)."""
        return {"name": spec.name, **spec.body()}

    def to_entry(self, spec: PolicySpec) -> dict[str, Any]:
        """A policy as a YAML entry (``PolicySpec.entry``)."""
        return spec.entry()


POLICY = PolicyKind()

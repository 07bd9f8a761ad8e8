"""The policy kind: a topology file's ``policies``, read into ``_model.PolicySpec`` (whose
``read``/``from_definitions`` the definitions reader and the broker reader share, and whose
``body`` is the one policy -> dict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._format import POLICY_KEYS, Reader
from .._model import PolicySpec


def read_document(reader: Reader, doc: Mapping[str, Any]) -> Iterable[PolicySpec]:
    """The policies of one parsed topology file (problems go to ``reader``)."""
    for raw, line in reader.entries(doc, "policies"):
        f = reader.fields(raw, POLICY_KEYS, "policy", line)
        if f is not None:
            yield PolicySpec.read(f.get("vhost", reader.vhost), f, reader.at(line))


def to_definitions(spec: PolicySpec) -> dict[str, Any]:
    """A policy as definitions JSON spells it (``apply-to``; the vhost added by the caller)."""
    return {"name": spec.name, **spec.body()}


def definitions_order(spec: PolicySpec) -> tuple[str, str]:
    """Policies are written sorted by vhost, then name."""
    return (spec.vhost, spec.name)

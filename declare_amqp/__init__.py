"""declare_amqp: declarative RabbitMQ topology — validate, plan and apply YAML files.

The pipeline is ``load`` (files -> validated ``Topology``) -> ``Session.plan`` (one bulk read
per vhost, then the pure ``plan(desired, actual)``) -> ``Session.apply`` (writes in
dependency order, then verifies). See README.md for the file format and the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from ._address import BrokerAddress, resolve_address
    from ._api import ApplyResult, Session, load
    from ._errors import (
        ApplyError,
        AuthenticationFailed,
        BrokerError,
        BrokerUnreachable,
        DeclareAmqpError,
        Location,
        ManagementUnavailable,
        PlanConflictError,
        Problem,
        TopologyError,
    )
    from ._export import to_yaml
    from ._loader import load_unvalidated, parse_unvalidated
    from ._model import BindingSpec, ExchangeSpec, PolicySpec, QueueSpec, Topology, VhostSpec
    from ._plan import Action, Change, Difference, Kind, Plan, QueueStats
    from ._planning import plan
    from ._schema import json_schema
    from ._validate import check_references, validate

    # the names before 0.2.1, kept for callers but not advertised in __all__
    parse = parse_unvalidated
    load_files = load_unvalidated

_HOMES: dict[str, str] = {
    "Action": "._plan",
    "ApplyError": "._errors",
    "ApplyResult": "._api",
    "AuthenticationFailed": "._errors",
    "BindingSpec": "._model",
    "BrokerAddress": "._address",
    "BrokerError": "._errors",
    "BrokerUnreachable": "._errors",
    "Change": "._plan",
    "DeclareAmqpError": "._errors",
    "Difference": "._plan",
    "ExchangeSpec": "._model",
    "Kind": "._plan",
    "Location": "._errors",
    "ManagementUnavailable": "._errors",
    "Plan": "._plan",
    "PlanConflictError": "._errors",
    "PolicySpec": "._model",
    "Problem": "._errors",
    "QueueSpec": "._model",
    "QueueStats": "._plan",
    "Session": "._api",
    "Topology": "._model",
    "TopologyError": "._errors",
    "VhostSpec": "._model",
    "check_references": "._validate",
    "json_schema": "._schema",
    "load": "._api",
    "load_unvalidated": "._loader",
    "parse_unvalidated": "._loader",
    "plan": "._planning",
    "resolve_address": "._address",
    "to_yaml": "._export",
    "validate": "._validate",
    # the names before 0.2.1 (they did not say that they do not validate), kept for callers
    "parse": "._loader:parse_unvalidated",
    "load_files": "._loader:load_unvalidated",
}

__all__ = [
    "Action",
    "ApplyError",
    "ApplyResult",
    "AuthenticationFailed",
    "BindingSpec",
    "BrokerAddress",
    "BrokerError",
    "BrokerUnreachable",
    "Change",
    "DeclareAmqpError",
    "Difference",
    "ExchangeSpec",
    "Kind",
    "Location",
    "ManagementUnavailable",
    "Plan",
    "PlanConflictError",
    "PolicySpec",
    "Problem",
    "QueueSpec",
    "QueueStats",
    "Session",
    "Topology",
    "TopologyError",
    "VhostSpec",
    "__version__",
    "check_references",
    "json_schema",
    "load",
    "load_unvalidated",
    "parse_unvalidated",
    "plan",
    "resolve_address",
    "to_yaml",
    "validate",
]


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (PEP 562), so that ``import
    declare_amqp.urls`` — what priority_worker does — loads neither httpx nor yaml."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'declare_amqp' has no attribute {name!r}")
    module_name, _, attribute = home.partition(":")
    value = getattr(importlib.import_module(module_name, __name__), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))

"""declare_amqp: declarative RabbitMQ topology — validate, plan and apply YAML files.

The pipeline is ``load`` (files -> validated ``Topology``) -> ``Session.plan`` (one bulk read
per vhost, then the pure ``plan(desired, actual)``) -> ``Session.apply`` (writes in
dependency order, then verifies). See README.md for the file format and the CLI.
"""

from __future__ import annotations

__version__ = "0.2.0"

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
from ._plan import Action, Change, Difference, Kind, Plan, QueueStats, plan
from ._schema import json_schema
from ._validate import check_references, validate

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

# The names before 0.2.1 (they did not say that they do not validate), kept for callers.
parse = parse_unvalidated
load_files = load_unvalidated

"""The kinds of objects, one module each, and their registry.

Each module holds one kind: its frozen spec (a topology kind's is in ``_model``, which
the broker reader shares), its YAML keys, checks, identity, what an update changes in
place, how it is written (through the management client, or for exchanges, queues and
bindings by ``_amqp``), its definitions-JSON mapping and its export (see
``_base.TopologyKind`` and ``_base.AccessKind``). The engines (the loader, ``_validate``,
``_planning``, ``_apply``, ``_rollback``, ``_access``, ``_definitions``, ``_schema``,
``_export``) loop over ``TOPOLOGY_KINDS`` and ``ACCESS_KINDS``.

Adding an access kind is one module here plus its line at the end of ``ACCESS_KINDS`` (its
``kind`` a ``_plan.AccessKindName``; written by ``_access`` after the built-in access kinds,
deleted before them, rolled back by its ``undo``), and, for a new endpoint, its
``ManagementClient`` methods. A topology kind is one module here plus its line at the end
of ``TOPOLOGY_KINDS`` (its ``kind`` a ``_plan.KindName``; written by the management API
after the built-in kinds), and its client methods (see ARCHITECTURE.md, "Adding a kind").
"""

from __future__ import annotations

from typing import Any

from .._format import SECTION_TOP_KEYS, VHOST_TOP_KEY, Key
from .._plan import AccessKindName, Kind, Writer
from ._base import AccessKind, TopologyKind
from .binding import BINDING
from .exchange import EXCHANGE
from .federation_upstream import FEDERATION_UPSTREAM
from .operator_policy import OPERATOR_POLICY
from .parameters import Component
from .permission import PERMISSION
from .policy import POLICY
from .queue import QUEUE
from .shovel import SHOVEL
from .topic_permission import TOPIC_PERMISSION
from .user import USER
from .vhost import VHOST
from .vhost_settings import VHOST_SETTINGS

# The topology kinds, in the order they are created (_plan.PHASES; deleted in the reverse
# order).
TOPOLOGY_KINDS: tuple[TopologyKind[Any], ...] = (VHOST, EXCHANGE, POLICY, QUEUE, BINDING)


def _written_by_management(kinds: tuple[TopologyKind[Any], ...]) -> None:
    """A kind with no ``Kind`` member is written by its own ``write`` through the management
    API, in ``PHASES``'s phases for such kinds: AMQP declares exchanges, queues and bindings
    only, and ``_amqp``'s table has no row for another kind."""
    for k in kinds:
        if type(k.kind) is not Kind and k.writer is not Writer.MANAGEMENT:
            raise TypeError(f"topology kind {k.kind!r}: only the management API can write it")
        if isinstance(k.kind, AccessKindName):
            raise TypeError(f"topology kind {k.kind!r}: its kind must be a KindName")


def _named_as_access(kinds: tuple[AccessKind[Any], ...]) -> None:
    """An access kind with no ``Kind`` member names itself by an ``AccessKindName``: that
    is what puts its changes in the access phases (``_plan.apply_position``) and makes the
    rollback undo them by its ``undo`` (``_rollback``). A plain name would be taken for a
    topology kind's."""
    for k in kinds:
        if type(k.kind) is not Kind and type(k.kind) is not AccessKindName:
            raise TypeError(f"access kind {k.kind!r}: its kind must be an AccessKindName")


_written_by_management(TOPOLOGY_KINDS)

# The registry, in the order the kinds are written (deleted in the reverse order). The
# built-in kinds first, in _plan.ACCESS_KINDS's order; a kind added later (its kind an
# ``AccessKindName``) goes at the end: it is written after them and deleted before them.
ACCESS_KINDS: tuple[AccessKind[Any], ...] = (
    VHOST_SETTINGS,
    USER,
    PERMISSION,
    TOPIC_PERMISSION,
    OPERATOR_POLICY,
    FEDERATION_UPSTREAM,
    SHOVEL,
)
_named_as_access(ACCESS_KINDS)

# The runtime parameters' kinds (their specs share one group, ``parameters``).
COMPONENTS: tuple[Component, ...] = tuple(k for k in ACCESS_KINDS if isinstance(k, Component))

# The top-level keys of a topology file that hold access objects (each a kind's list).
ACCESS_TOP_KEYS: tuple[Key, ...] = tuple(
    Key(k.key, (list,), k.doc) for k in ACCESS_KINDS if getattr(k, "top_level", True)
)

# Every top-level key of a topology file (the loader's table, and the JSON schema's): the
# topology kinds' lists in the order a file lists them, then the sections, then the access
# kinds' lists.
TOP_KEYS: tuple[Key, ...] = (
    VHOST_TOP_KEY,
    *(Key(k.key, (list,), k.doc) for k in sorted(TOPOLOGY_KINDS, key=lambda k: k.top_rank)),
    *SECTION_TOP_KEYS,
    *ACCESS_TOP_KEYS,
)

# Every kind: the topology kinds, then the access kinds, each group in apply order.
KINDS: tuple[TopologyKind[Any] | AccessKind[Any], ...] = (*TOPOLOGY_KINDS, *ACCESS_KINDS)


def topology_kind_of(kind: str) -> TopologyKind[Any]:
    """The registered topology kind whose plan kind is ``kind`` ("queue"...)."""
    return next(k for k in TOPOLOGY_KINDS if k.kind == kind)


def kind_of(kind: str) -> AccessKind[Any]:
    """The registered kind whose plan kind is ``kind`` ("topic permission"...)."""
    return next(k for k in ACCESS_KINDS if k.kind == kind)


__all__ = [
    "ACCESS_KINDS",
    "ACCESS_TOP_KEYS",
    "BINDING",
    "COMPONENTS",
    "EXCHANGE",
    "KINDS",
    "POLICY",
    "QUEUE",
    "TOPOLOGY_KINDS",
    "TOP_KEYS",
    "VHOST",
    "AccessKind",
    "TopologyKind",
    "kind_of",
    "topology_kind_of",
]

"""Write a live broker's topology in the YAML format, so an existing broker can be adopted.

Applying the export to the same broker is a no-op: aliases are used only where the loader
maps them back to the very same arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml

from ._access import access_document
from ._model import Topology
from .kinds import TOPOLOGY_KINDS
from .kinds.parameters import ParameterSpec, as_tuple
from .worker_queues import made_by_worker


class _Dumper(yaml.SafeDumper):
    """Block style, insertion order, and no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def worker_made(topology: Topology) -> list[tuple[str, str, str]]:
    """(vhost, queue, consumed queue) of the queues priority_worker made for another queue.

    They are not exported: a ``consumers`` section derives them, and prune keeps them
    without one (see :mod:`declare_amqp.worker_queues`).
    """
    names: dict[str, set[str]] = {}
    for q in topology.queues:
        names.setdefault(q.vhost, set()).add(q.name)
    found = []
    for q in topology.queues:
        owner = made_by_worker(q.name, q.arguments, names[q.vhost])
        if owner is not None:
            found.append((q.vhost, q.name, owner))
    return found


def to_document(topology: Topology, vhosts: Sequence[str]) -> dict[str, Any]:
    """The topology as a plain mapping of the YAML format (priority_worker's own queues
    left out, see :func:`worker_made`)."""
    topology = _without_worker_queues(topology)
    single = len(vhosts) == 1
    doc: dict[str, Any] = {}
    if single:
        doc["vhost"] = vhosts[0]
    else:
        doc["vhosts"] = list(vhosts)

    def with_vhost(entry: dict[str, Any], vhost: str) -> dict[str, Any]:
        if not single:
            entry = {"name": entry.pop("name"), "vhost": vhost, **entry}
        return entry

    # each kind's list, written by its module (kinds/), in the order a file lists them
    for kind in sorted(TOPOLOGY_KINDS, key=lambda k: k.top_rank):
        items = kind.export(topology, single, with_vhost)
        if items:
            doc[kind.key] = items
    if topology.access is not None:
        doc.update(access_document(topology.access, vhosts))
    return doc


def _without_worker_queues(topology: Topology) -> Topology:
    """The topology without the queues priority_worker makes by itself, nor their bindings."""
    made = {(vhost, name) for vhost, name, _ in worker_made(topology)}
    if not made:
        return topology
    return dataclasses.replace(
        topology,
        queues=tuple(q for q in topology.queues if (q.vhost, q.name) not in made),
        bindings=tuple(
            b
            for b in topology.bindings
            if not (b.destination_type == "queue" and (b.vhost, b.destination) in made)
        ),
    )


def to_yaml(topology: Topology, vhosts: Sequence[str], header: str = "") -> str:
    """The export as YAML text."""
    text = yaml.dump(
        to_document(topology, vhosts),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    references = [
        (p.label, uri_key if isinstance(refs, str) else f"{uri_key} {i} of {len(refs)}", ref[1:])
        for p in (topology.access.of(ParameterSpec) if topology.access is not None else ())
        for uri_key, refs in sorted(p.uri_refs.items())
        for i, ref in enumerate(as_tuple(refs), 1)
        if ref.startswith("$")
    ]
    if references:
        header += (
            "# URIs with a password are not exported: set these environment variables to "
            "them before\n# planning or applying this file:\n"
        )
        header += "".join(
            f"#   {variable} ({uri_key} of {label})\n" for label, uri_key, variable in references
        )
    made = worker_made(topology)
    if made:
        header += (
            "# Not exported, made by priority_worker (a consumers section derives them, "
            "prune keeps them):\n"
        )
        header += "".join(
            f"#   {name} (for {owner}, vhost {vhost})\n" for vhost, name, owner in made
        )
    return header + text


# YAML reads these as line breaks: inside a plain or single-quoted scalar they would fold into
# a space on loading (a queue named "a\x85b" came back as "a b"). Double quotes escape them.
_LINE_BREAKS = ("\x85", "\u2028", "\u2029", "\r")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(c in value for c in _LINE_BREAKS):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)

"""RabbitMQ definitions JSON, in and out: the broker's own format as a topology file.

Reading accepts both shapes the broker writes (``rabbitmqctl export_definitions``,
``GET /api/definitions``, 4.x's ``rabbitmq_definition_format``):

- *cluster*: ``vhosts``, and every queue, exchange, binding and policy names its ``vhost``;
- *single virtual host* (``GET /api/definitions/{vhost}``): no ``vhost`` fields; the objects
  go to the file's vhost (``--vhost``, else the URL's vhost, else ``/``), as in YAML files.

Objects of kinds the tool does not manage (users, permissions, parameters, ...) are listed in
one warning per kind, never dropped silently. Every object keeps the line it starts on, so
errors read ``definitions.json:120: queue 'x' ...`` like those of YAML files.

Writing (``export --format definitions``) produces the single-vhost shape for one vhost and
the cluster shape for several, with ``rabbitmq_definition_format`` set.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from typing import Any

from ._errors import Location, Problem
from ._fit import type_fits
from ._format import describe_types
from ._model import BindingSpec, ExchangeSpec, PolicySpec, QueueSpec, Topology, VhostSpec
from ._validate import is_builtin_exchange

# Top-level keys that describe the export, not objects.
_METADATA = frozenset(
    {
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
        "rabbitmq_definition_format",
        "explanation",
    }
)
_MANAGED = ("vhosts", "exchanges", "queues", "bindings", "policies")
# Kinds a definitions file may hold that declare-amqp does not manage (yet).
_IGNORED_KINDS = {
    "users": "users",
    "permissions": "permissions",
    "topic_permissions": "topic permissions",
    "parameters": "runtime parameters (federation, shovels, limits)",
    "global_parameters": "global parameters",
    "operator_policies": "operator policies",
    "limits": "limits",
}

_STR, _BOOL, _INT, _MAP, _LIST = (str,), (bool,), (int,), (dict,), (list,)
# field -> (types, required) for each object of the broker's format.
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "vhosts": {
        "name": (_STR, True),
        "limits": (_LIST, False),
        "metadata": (_MAP, False),
        "description": (_STR, False),
        "tags": (_LIST, False),
        "default_queue_type": (_STR, False),
        "tracing": (_BOOL, False),
    },
    "exchanges": {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "type": (_STR, True),
        "durable": (_BOOL, False),
        "auto_delete": (_BOOL, False),
        "internal": (_BOOL, False),
        "arguments": (_MAP, False),
    },
    "queues": {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "durable": (_BOOL, False),
        "auto_delete": (_BOOL, False),
        "arguments": (_MAP, False),
        "type": (_STR, False),
        "exclusive": (_BOOL, False),
        "node": (_STR, False),
    },
    "bindings": {
        "source": (_STR, True),
        "vhost": (_STR, False),
        "destination": (_STR, True),
        "destination_type": (_STR, True),
        "routing_key": (_STR, False),
        "arguments": (_MAP, False),
        "properties_key": (_STR, False),
    },
    "policies": {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "pattern": (_STR, True),
        "apply-to": (_STR, False),
        "definition": (_MAP, True),
        "priority": (_INT, False),
    },
}
_SINGULAR = {
    "vhosts": "vhost",
    "exchanges": "exchange",
    "queues": "queue",
    "bindings": "binding",
    "policies": "policy",
}


class _Object(dict[str, Any]):
    """A JSON object that remembers the line it starts on."""

    line: int = 1


# Strings (with escapes) and the braces outside them: enough to find where each object
# starts without a second JSON parser.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}]', re.DOTALL)


def _object_lines(text: str) -> list[int]:
    """The start line of every JSON object, in the order the decoder *closes* them."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    opened: list[int] = []
    closing: list[int] = []
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token == "{":
            opened.append(m.start())
        elif token == "}" and opened:
            closing.append(bisect.bisect_left(newlines, opened.pop()) + 1)
    return closing


def load_json(text: str, path: str) -> tuple[Any, list[Problem]]:
    """Parse JSON keeping each object's line; duplicate keys are problems, as in YAML."""
    lines = iter(_object_lines(text))
    problems: list[Problem] = []

    def make(pairs: list[tuple[str, Any]]) -> _Object:
        obj = _Object()
        obj.line = next(lines, 1)
        for key, value in pairs:
            if key in obj:
                problems.append(
                    Problem(f"key '{key}' appears twice in one object", Location(path, obj.line))
                )
            obj[key] = value
        return obj

    try:
        return json.loads(text, object_pairs_hook=make), problems
    except json.JSONDecodeError as exc:
        return None, [
            Problem(f"not valid JSON: {exc.msg} (column {exc.colno})", Location(path, exc.lineno))
        ]


def is_definitions(path: str) -> bool:
    """Files named ``*.json`` are read as RabbitMQ definitions."""
    return path.lower().endswith(".json")


class _Reader:
    def __init__(self, path: str, vhost: str) -> None:
        self.path = path
        self.vhost = vhost
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.own_vhost = True

    def vhost_of(self, f: dict[str, Any]) -> str:
        return self.vhost if self.own_vhost else str(f.get("vhost", self.vhost))

    def at(self, line: int) -> Location:
        return Location(self.path, line)

    def fields(self, kind: str, raw: Any, line: int) -> dict[str, Any] | None:
        what = _SINGULAR[kind]
        if not isinstance(raw, dict):
            self.problems.append(
                Problem(f"each entry of '{kind}' must be an object, not {raw!r}", self.at(line))
            )
            return None
        table = _FIELDS[kind]
        name = raw.get("name")
        label = f"{what} '{name}'" if isinstance(name, str) else what
        ok = True
        unknown = [str(k) for k in raw if k not in table]
        if unknown:
            # Never dropped silently: a field the broker's format does not have (or one a later
            # RabbitMQ added) is named, so a declare-amqp topology saved as .json is noticed.
            self.warnings.append(
                Problem(
                    f"ignored field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                    "not part "
                    "of RabbitMQ's definitions format as this tool reads it (a declare-amqp "
                    "topology written as JSON must be named .yml)",
                    self.at(line),
                    label,
                )
            )
        for key, value in raw.items():
            spec = table.get(key)
            if spec is None:
                continue
            if value is None and not spec[1]:
                continue
            if not type_fits(value, spec[0]):
                self.problems.append(
                    Problem(
                        f"'{key}' must be {describe_types(spec[0])}, not {value!r}",
                        self.at(line),
                        label,
                    )
                )
                ok = False
        for key, (_, required) in table.items():
            if required and key not in raw:
                self.problems.append(Problem(f"missing required key '{key}'", self.at(line), label))
                ok = False
        return dict(raw) if ok else None

    def entries(self, doc: dict[str, Any], kind: str) -> list[tuple[dict[str, Any], int]]:
        items = doc.get(kind)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.append(Problem(f"'{kind}' must be a list", self.at(doc_line(doc))))
            return []
        found = []
        for raw in items:
            line = getattr(raw, "line", doc_line(doc))
            f = self.fields(kind, raw, line)
            if f is not None:
                found.append((f, line))
        return found

    def read(self, doc: Any) -> Topology:
        if not isinstance(doc, dict):
            self.problems.append(
                Problem(
                    "a definitions file must be a JSON object with "
                    "exchanges, queues, bindings, ...",
                    self.at(1),
                )
            )
            return Topology()
        for key in doc:
            if key in _METADATA or key in _MANAGED:
                continue
            if key not in _IGNORED_KINDS:
                self.warnings.append(
                    Problem(
                        f"ignored key '{key}': not part of RabbitMQ's definitions format (a "
                        "declare-amqp topology written as JSON must be named .yml)",
                        self.at(doc_line(doc)),
                    )
                )
                continue
            self.ignore(key, doc[key], doc_line(doc))
        cluster = doc.get("rabbitmq_definition_format") == "cluster" or (
            "vhosts" in doc and doc.get("rabbitmq_definition_format") != "single_virtual_host"
        )
        # The single-vhost shape belongs to whichever vhost it is loaded into, as with the
        # broker's own import: a `vhost` field in it (3.10 writes one on policies) is not a
        # destination.
        self.own_vhost = not cluster
        vhosts: list[VhostSpec] = []
        for f, line in self.entries(doc, "vhosts"):
            vhosts.append(VhostSpec(f["name"], self.at(line)))
            extra = sorted(k for k in ("limits", "default_queue_type", "tracing") if f.get(k))
            metadata = f.get("metadata") or {}
            extra += sorted(f"metadata.{k}" for k, v in metadata.items() if v)
            if extra:
                self.warnings.append(
                    Problem(
                        f"ignored: {', '.join(extra)} (declare-amqp does not manage vhost "
                        "settings yet; set them on the broker)",
                        self.at(line),
                        f"vhost '{f['name']}'",
                    )
                )
        exchanges = []
        for f, line in self.entries(doc, "exchanges"):
            vhost = self.vhost_of(f)
            if is_builtin_exchange(f["name"]):
                self.warnings.append(
                    Problem(
                        "ignored: built-in exchanges belong to the broker",
                        self.at(line),
                        f"exchange '{f['name']}' (vhost {vhost})",
                    )
                )
                continue
            exchanges.append(
                ExchangeSpec(
                    vhost=vhost,
                    name=f["name"],
                    type=f["type"],
                    durable=f.get("durable", True),
                    auto_delete=f.get("auto_delete", False),
                    internal=f.get("internal", False),
                    arguments=dict(f.get("arguments") or {}),
                    location=self.at(line),
                )
            )
        queues = []
        for f, line in self.entries(doc, "queues"):
            arguments = dict(f.get("arguments") or {})
            queue_type = arguments.pop("x-queue-type", None) or f.get("type") or "classic"
            queues.append(
                QueueSpec(
                    vhost=self.vhost_of(f),
                    name=f["name"],
                    type=queue_type,
                    durable=f.get("durable", True),
                    auto_delete=f.get("auto_delete", False),
                    arguments=arguments,
                    location=self.at(line),
                )
            )
        bindings = []
        for f, line in self.entries(doc, "bindings"):
            if f["destination_type"] not in ("queue", "exchange"):
                self.problems.append(
                    Problem("destination_type must be queue or exchange", self.at(line), "binding")
                )
                continue
            bindings.append(
                BindingSpec(
                    vhost=self.vhost_of(f),
                    source=f["source"],
                    destination=f["destination"],
                    destination_type=f["destination_type"],
                    routing_key=f.get("routing_key") or "",
                    arguments=dict(f.get("arguments") or {}),
                    location=self.at(line),
                )
            )
        policies = []
        for f, line in self.entries(doc, "policies"):
            policies.append(
                PolicySpec(
                    vhost=self.vhost_of(f),
                    name=f["name"],
                    pattern=f["pattern"],
                    definition=dict(f["definition"]),
                    apply_to=f.get("apply-to") or "all",
                    priority=f.get("priority", 0),
                    location=self.at(line),
                )
            )
        named = tuple(v.name for v in vhosts) if cluster else (self.vhost,)
        return Topology(
            vhosts=tuple(vhosts),
            exchanges=tuple(exchanges),
            queues=tuple(queues),
            bindings=tuple(bindings),
            policies=tuple(policies),
            named=named,
            warnings=tuple(self.warnings),
        )

    def ignore(self, key: str, value: Any, line: int) -> None:
        """One warning naming what a kind the tool does not manage holds (no secrets)."""
        what = _IGNORED_KINDS[key]
        names: list[str] = []
        if isinstance(value, list):
            for item in value:
                names.append(_describe(key, item))
            if not names:
                return  # an empty list ignores nothing
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        count = f"{len(names)} " if names else ""
        first = value[0] if isinstance(value, list) else value
        self.warnings.append(
            Problem(
                f"ignored: {count}{what}{' (' + shown + ')' if shown else ''}: declare-amqp does "
                "not manage this kind yet; it is neither created nor compared",
                self.at(getattr(first, "line", line)),
            )
        )


def _describe(kind: str, item: Any) -> str:
    """A name for an ignored object: never a password hash or a parameter's value."""
    if not isinstance(item, dict):
        return "?"
    if kind in ("permissions", "topic_permissions"):
        return f"{item.get('user', '?')}@{item.get('vhost', '?')}"
    if kind == "parameters":
        return f"{item.get('component', '?')}/{item.get('name', '?')}"
    return str(item.get("name", "?"))


def doc_line(doc: Any) -> int:
    return getattr(doc, "line", 1)


def parse_definitions(
    text: str, path: str, vhost: str | None = None, default_vhost: str = "/"
) -> tuple[Topology, list[Problem]]:
    """One definitions file -> (topology, problems); the vhost rules of YAML files apply."""
    doc, problems = load_json(text, path)
    if doc is None:
        return Topology(), problems
    reader = _Reader(path, vhost or default_vhost)
    topology = reader.read(doc)
    return topology, problems + reader.problems


# --------------------------------------------------------------------------- writing


def to_definitions(topology: Topology, vhosts: Sequence[str], version: str = "") -> dict[str, Any]:
    """The broker's own format: single-vhost shape for one vhost, cluster shape for several."""
    single = len(vhosts) == 1
    doc: dict[str, Any] = {}
    if version:
        doc["rabbit_version"] = version
        doc["rabbitmq_version"] = version
    doc["rabbitmq_definition_format"] = "single_virtual_host" if single else "cluster"

    def with_vhost(entry: dict[str, Any], vhost: str) -> dict[str, Any]:
        # the single-vhost shape names no vhost: objects go to the one the file is loaded into
        return entry if single and vhost == vhosts[0] else {**entry, "vhost": vhost}

    if not single:
        doc["vhosts"] = [{"name": v} for v in vhosts]
    doc["policies"] = [
        with_vhost(
            {
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "definition": dict(p.definition),
                "priority": p.priority,
            },
            p.vhost,
        )
        for p in sorted(topology.policies, key=lambda p: (p.vhost, p.name))
    ]
    queues = []
    for q in sorted(topology.queues, key=lambda q: (q.vhost, q.name)):
        arguments = dict(q.arguments)
        if q.type != "classic":
            arguments["x-queue-type"] = q.type
        queues.append(
            with_vhost(
                {
                    "name": q.name,
                    "durable": q.durable,
                    "auto_delete": q.auto_delete,
                    "arguments": arguments,
                },
                q.vhost,
            )
        )
    doc["queues"] = queues
    doc["exchanges"] = [
        with_vhost(
            {
                "name": x.name,
                "type": x.type,
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": dict(x.arguments),
            },
            x.vhost,
        )
        for x in sorted(topology.exchanges, key=lambda x: (x.vhost, x.name))
    ]
    doc["bindings"] = [
        with_vhost(
            {
                "source": b.source,
                "destination": b.destination,
                "destination_type": b.destination_type,
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            },
            b.vhost,
        )
        for b in sorted(topology.bindings, key=lambda b: b.key)
    ]
    return doc


def to_definitions_json(topology: Topology, vhosts: Sequence[str], version: str = "") -> str:
    """The export as JSON text, one key per line so errors can name lines."""
    return (
        json.dumps(to_definitions(topology, vhosts, version), indent=2, ensure_ascii=False) + "\n"
    )

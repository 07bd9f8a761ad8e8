"""RabbitMQ definitions JSON, in and out: the broker's own format as a topology file.

Reading accepts both shapes the broker writes (``rabbitmqctl export_definitions``,
``GET /api/definitions``, 4.x's ``rabbitmq_definition_format``):

- *cluster*: ``vhosts``, and every queue, exchange, binding and policy names its ``vhost``;
- *single virtual host* (``GET /api/definitions/{vhost}``): no ``vhost`` fields; the objects
  go to the file's vhost (``--vhost``, else the URL's vhost, else ``/``), as in YAML files.

Users, permissions, topic permissions, vhost metadata and limits, user limits, operator
policies, federation upstreams and shovels (``parameters``) become the same ``Access`` model
the YAML loader builds, through the same reader (``_access.read_access``) after their
broker spelling is translated to the YAML keys, so the same rules hold: no literal
password (a user's ``password``, a URI with a password: give ``src-uri-env``,
``uri-file``, ... instead, as ``export --format definitions`` writes them), regexes and
limits checked, every problem with ``file:line``. Kinds the tool does not manage (global
parameters, other runtime parameters) are listed in one warning per kind, never dropped
silently. Every object keeps the line it starts on, so errors read
``definitions.json:120: queue 'x' ...`` like those of YAML files.

Writing (``export --format definitions``) produces the single-vhost shape for one vhost and
the cluster shape for several, with ``rabbitmq_definition_format`` set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._access import read_access
from ._errors import Location, Problem
from ._fit import key_problem, type_fits
from ._format import Key, describe_types
from ._json_lines import JsonObject, load_json
from ._model import (
    Access,
    Topology,
    VhostSpec,
)
from .kinds import ACCESS_KINDS, TOPOLOGY_KINDS, VHOST, TopologyKind
from .kinds.vhost_settings import VHOST_LIMITS as _VHOST_LIMITS
from .kinds.vhost_settings import (
    VHOST_SETTING_KEYS,
    VHOST_SETTINGS,
    describe_settings,
    without_defaults,
)

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
# The topology kinds that definitions JSON holds (a kind without ``definitions_fields``
# is not in the broker's format: a file's list of that key is an unknown key).
_IN_DEFINITIONS = tuple(k for k in TOPOLOGY_KINDS if k.definitions_fields)
_MANAGED = (
    *(k.key for k in _IN_DEFINITIONS),
    *(k.definitions_section for k in ACCESS_KINDS if k.definitions_section),
    "parameters",
)
# The single-vhost shape (4.x) carries its vhost's metadata and limits at the top.
_OWN_VHOST_KEYS = (
    "description",
    "tags",
    "default_queue_type",
    "metadata",
    "limits",
    "original_vhost_name",
    "original_cluster_name",
)
# Kinds a definitions file may hold that declare-amqp does not manage (yet).
_IGNORED_KINDS = {
    "global_parameters": "global parameters",
    "limits": "limits",
}
# Runtime parameter components read as access objects; the limits' keys by YAML key.
_SETTING_KEYS = {k.name: k for k in VHOST_SETTING_KEYS}

# The topology kinds by their list in a definitions file, in the order a file lists them
# (a skipped queue is known before its bindings are read).
_TOPOLOGY = {k.key: k for k in sorted(_IN_DEFINITIONS, key=lambda k: k.top_rank)}


class _Reader:
    def __init__(self, path: str, vhost: str) -> None:
        self.path = path
        self.vhost = vhost
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.own_vhost = True
        self.skipped: set[tuple[str, str, str]] = set()

    def vhost_of(self, f: Mapping[str, Any]) -> str:
        return self.vhost if self.own_vhost else str(f.get("vhost", self.vhost))

    def warn(self, line: int, message: str, obj: str | None = None) -> None:
        """Read, with a caveat shown (for the kinds' ``from_definitions``)."""
        self.warnings.append(Problem(message, self.at(line), obj))

    def at(self, line: int) -> Location:
        return Location(self.path, line)

    def fields(self, kind: str, raw: Any, line: int) -> dict[str, Any] | None:
        topology_kind = _TOPOLOGY[kind]
        what = str(topology_kind.kind)
        if not isinstance(raw, dict):
            self.problems.append(
                Problem(f"each entry of '{kind}' must be an object, not {raw!r}", self.at(line))
            )
            return None
        table = topology_kind.definitions_fields
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
        """The objects of one topology kind, checked against its table."""
        found = []
        for raw, line in self.objects(doc, kind):
            f = self.fields(kind, raw, line)
            if f is not None:
                found.append((f, line))
        return found

    def read(self, doc: Any) -> Topology:
        """The topology of a parsed definitions file (problems and warnings kept here)."""
        if not isinstance(doc, dict):
            self.problems.append(
                Problem(
                    "a definitions file must be a JSON object with "
                    "exchanges, queues, bindings, ...",
                    self.at(1),
                )
            )
            return Topology()
        cluster = doc.get("rabbitmq_definition_format") == "cluster" or (
            "vhosts" in doc and doc.get("rabbitmq_definition_format") != "single_virtual_host"
        )
        self.unknown_keys(doc, cluster)
        # The single-vhost shape belongs to whichever vhost it is loaded into, as with the
        # broker's own import: a `vhost` field in it (3.10 writes one on policies) is not a
        # destination.
        self.own_vhost = not cluster
        vhosts: list[VhostSpec] = []
        settings: dict[str, tuple[JsonObject, int]] = {}
        for f, line in self.entries(doc, "vhosts"):
            vhosts.append(VHOST.from_definitions(self, f, line))
            settings[f["name"]] = (self.vhost_settings(f, line), line)
            extra = [k for k in ("limits",) if f.get(k) and isinstance(f[k], list)]
            extra += [k for k in ("tracing",) if f.get(k)]
            metadata = f.get("metadata") or {}
            extra += sorted(
                f"metadata.{k}" for k, v in metadata.items() if v and k not in _SETTING_KEYS
            )
            if extra:
                self.warnings.append(
                    Problem(
                        f"ignored: {', '.join(extra)} (declare-amqp does not manage these "
                        "vhost settings; set them on the broker)",
                        self.at(line),
                        f"vhost '{f['name']}'",
                    )
                )
        if not cluster:
            settings[self.vhost] = (self.vhost_settings(doc, doc_line(doc)), doc_line(doc))
        # each other kind's objects through its reader (kinds/)
        found: dict[str, Any] = {}
        for key, kind in _TOPOLOGY.items():
            if kind is not VHOST:
                specs = (kind.from_definitions(self, f, line) for f, line in self.entries(doc, key))
                found[key] = tuple(s for s in specs if s is not None)
        named = tuple(v.name for v in vhosts) if cluster else (self.vhost,)
        access = self.access(doc, settings)
        return Topology(
            vhosts=tuple(vhosts),
            named=named,
            warnings=tuple(self.warnings),
            access=access if access.size or access.managed else None,
        ).holding(**found)

    # ------------------------------------------------------------- access objects

    def unknown_keys(self, doc: dict[str, Any], cluster: bool) -> None:
        """One warning per top-level key the tool does not read (what it holds is named
        for the kinds it does not manage yet)."""
        for key in doc:
            if key in _METADATA or key in _MANAGED or (not cluster and key in _OWN_VHOST_KEYS):
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

    def vhost_settings(self, f: dict[str, Any], line: int) -> JsonObject:
        """A vhost's metadata (``description``, ``tags``, ``default_queue_type``, at the top
        or in ``metadata``) and limits (4.x's single-vhost ``limits``) by YAML key; empty
        ones (a vhost without a description) are not managed, as in an export."""
        given = f.get("metadata")
        metadata: dict[str, Any] = given if isinstance(given, dict) else {}
        found = JsonObject()
        found.line = line
        label = f"vhost '{f.get('name', self.vhost)}'"
        for key in ("description", "tags", "default_queue_type"):
            value = f.get(key, metadata.get(key))
            if isinstance(value, str) and key == "tags":
                value = [t for t in value.split(",") if t]
            if value in (None, "", [], "undefined"):
                continue
            self.setting(found, key, value, line, label)
        limits = f.get("limits")
        if isinstance(limits, dict):
            self.limits(found, limits, _VHOST_LIMITS, line, label)
        return found

    def setting(self, into: JsonObject, key: str, value: Any, line: int, label: str) -> None:
        wrong = key_problem(_SETTING_KEYS[key], value)
        if wrong is not None:
            self.problems.append(Problem(f"'{key}' {wrong}", self.at(line), label))
        else:
            into[key] = value

    def limits(
        self, into: JsonObject, limits: dict[str, Any], names: dict[str, str], line: int, label: str
    ) -> None:
        for key, value in limits.items():
            if key not in names:
                self.warnings.append(
                    Problem(
                        f"ignored limit '{key}' (not one declare-amqp sets)", self.at(line), label
                    )
                )
            elif names is _VHOST_LIMITS:
                self.setting(into, names[key], value, line, label)
            else:
                into[names[key]] = value  # checked with the user's keys
                if hasattr(into, "spelled"):
                    into.spelled[names[key]] = key

    def objects(self, doc: dict[str, Any], kind: str) -> list[tuple[dict[str, Any], int]]:
        """The objects (JSON objects) of one kind with their lines, unchecked; anything
        else in the list is a problem."""
        items = doc.get(kind)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.append(Problem(f"'{kind}' must be a list", self.at(doc_line(doc))))
            return []
        found = []
        for raw in items:
            line = getattr(raw, "line", doc_line(doc))
            if isinstance(raw, dict):
                found.append((raw, line))
            else:
                self.problems.append(
                    Problem(f"each entry of '{kind}' must be an object, not {raw!r}", self.at(line))
                )
        return found

    def translated(self, raw: dict[str, Any], line: int, renamed: dict[str, str]) -> JsonObject:
        """``raw`` with the broker's keys renamed to the YAML ones (and ``vhost`` dropped in
        the single-vhost shape, whose objects belong to the file's vhost)."""
        out = JsonObject()
        out.line = line
        out.spelled = {}
        for key, value in raw.items():
            if key == "vhost" and self.own_vhost:
                continue
            new = renamed.get(key, key)
            out[new] = value
            out.spelled[new] = key
        return out

    def access(self, doc: dict[str, Any], settings: dict[str, tuple[JsonObject, int]]) -> Access:
        """Users, permissions, ... as the YAML loader reads them (see the module doc): each
        kind translates its objects (``AccessKind.from_definitions``), the runtime
        parameters go to the kind of their component."""
        yaml_doc: dict[str, list[tuple[Any, int]]] = {}
        for kind in ACCESS_KINDS:
            section = kind.definitions_section
            if section is not None and section in doc:
                yaml_doc[kind.key] = [
                    (kind.from_definitions(self, raw, line), line)
                    for raw, line in self.objects(doc, section)
                ]
            if kind.component is not None and "parameters" in doc:
                yaml_doc.setdefault(kind.key, [])
        by_component = {k.component: k for k in ACCESS_KINDS if k.component is not None}
        ignored: list[dict[str, Any]] = []
        for raw, line in self.objects(doc, "parameters"):
            component, value = raw.get("component"), raw.get("value")
            name = raw.get("name")
            owner = by_component.get(str(component))
            if owner is None and component != "vhost-limits":
                # e.g. federation-upstream-set (its value is a list): the broker's, not ours
                ignored.append(raw)
                continue
            if not isinstance(value, dict) or not isinstance(name, str):
                self.problems.append(
                    Problem("a parameter needs a 'name' and an object 'value'", self.at(line))
                )
                continue
            vhost = self.vhost if self.own_vhost else str(raw.get("vhost", self.vhost))
            if owner is None:  # vhost-limits
                entry, _ = settings.setdefault(vhost, (JsonObject(), line))
                self.limits(entry, value, _VHOST_LIMITS, line, f"vhost '{vhost}'")
                continue
            where = {"name": name, **({} if self.own_vhost else {"vhost": raw.get("vhost")})}
            translated = owner.from_definitions(self, {**where, **value}, line)
            yaml_doc[owner.key].append((translated, line))
        if ignored:
            self.ignore("parameters", ignored, doc_line(doc))
        vhost_entries = []
        for name, (entry, line) in settings.items():
            if len(entry):
                entry["name"] = name
                vhost_entries.append((entry, line))
        yaml_doc[VHOST_SETTINGS.key] = vhost_entries
        return read_access(_AccessReader(self), yaml_doc)

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        """An error of the definitions file (for the kinds' ``from_definitions``)."""
        self.problems.append(Problem(message, self.at(line), obj))

    def ignore(self, key: str, value: Any, line: int) -> None:
        """One warning naming what a kind the tool does not manage holds (no secrets)."""
        what = {**_IGNORED_KINDS, "parameters": "runtime parameters of other components"}[key]
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


class _AccessReader:
    """The interface ``_access.read_access`` reads through (the YAML loader's), over the
    translated objects of a definitions file; problems and warnings go to its reader."""

    def __init__(self, outer: _Reader) -> None:
        self.outer = outer
        self.vhost = outer.vhost

    def at(self, line: int) -> Location:
        return self.outer.at(line)

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        self.outer.problems.append(Problem(message, self.at(line), obj))

    def warn(self, line: int, message: str, obj: str | None = None) -> None:
        """Accepted, with a caveat shown to the user (``--strict`` refuses it)."""
        self.outer.warnings.append(Problem(message, self.at(line), obj))

    def entries(self, doc: dict[str, Any], key: str) -> list[tuple[JsonObject, int]]:
        found: list[tuple[JsonObject, int]] = doc.get(key, [])
        return found

    def fields(self, raw: Any, keys: Sequence[Key], what: str, line: int) -> dict[str, Any] | None:
        """The values of ``raw`` that ``keys`` know, checked as in YAML files; other fields
        are named in a warning."""
        if not isinstance(raw, dict):
            self.problem(line, f"each entry of {what} must be an object, not {raw!r}")
            return None
        by_name = {k.name: k for k in keys}
        name = raw.get("name")
        label = f"{what} '{name}'" if isinstance(name, str) else what
        spelled = getattr(raw, "spelled", {})
        unknown = [str(spelled.get(k, k)) for k in raw if k not in by_name]
        if unknown:
            self.outer.warnings.append(
                Problem(
                    f"ignored field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                    f"(declare-amqp does not manage {'them' if len(unknown) > 1 else 'it'})",
                    self.at(line),
                    label,
                )
            )
        values: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            spec = by_name.get(key)
            if spec is None or (value is None and not spec.required):
                continue
            wrong = key_problem(spec, value)
            if wrong is not None:
                self.problem(line, f"'{spelled.get(key, key)}' {wrong}", label)
                ok = False
            else:
                values[key] = value
        for spec in keys:
            if spec.required and spec.name not in raw:
                self.problem(line, f"missing required key '{spec.name}'", label)
                ok = False
        return values if ok else None


def _describe(kind: str, item: Any) -> str:
    """A name for an ignored object: never a password hash or a parameter's value."""
    if not isinstance(item, dict):
        return "?"
    if kind == "parameters":
        return f"{item.get('component', '?')}/{item.get('name', '?')}"
    return str(item.get("name", "?"))


def doc_line(doc: Any) -> int:
    """The line a parsed document starts on (1 when it does not say)."""
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


# The broker's own export lists these kinds in this order (a kind not listed goes last).
_BROKER_ORDER = ("policies", "queues", "exchanges", "bindings")


def _written_rank(kind: TopologyKind[Any]) -> int:
    return _BROKER_ORDER.index(kind.key) if kind.key in _BROKER_ORDER else len(_BROKER_ORDER)


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

    access = topology.access or Access()
    described = {
        v.name: describe_settings(without_defaults(v)) for v in VHOST_SETTINGS.specs(access)
    }
    metadata_keys = ("description", "tags", "default_queue_type")
    if single:
        doc.update({k: v for k, v in described.get(vhosts[0], {}).items() if k in metadata_keys})
    else:
        doc["vhosts"] = [
            {
                "name": v,
                **{k: x for k, x in described.get(v, {}).items() if k in metadata_keys},
            }
            for v in vhosts
        ]
    parameters = []
    for name in vhosts:
        limits = {
            broker: described[name][key]
            for broker, key in _VHOST_LIMITS.items()
            if key in described.get(name, {})
        }
        if limits:
            parameters.append(
                with_vhost({"value": limits, "component": "vhost-limits", "name": "limits"}, name)
            )
    # each kind's objects: in its own list, or (a runtime parameter) among the parameters
    for kind in ACCESS_KINDS:
        if kind.component is None and kind.definitions_section is None:
            continue  # vhost settings: above
        entries = [
            with_vhost(kind.to_definitions(s), s.vhost)
            if getattr(s, "IN_VHOST", False)
            else kind.to_definitions(s)
            for s in sorted(kind.specs(access), key=kind.definitions_order)
        ]
        if kind.component is not None:
            parameters += entries
        elif entries and kind.definitions_section is not None:
            doc[kind.definitions_section] = entries
    if parameters:
        doc["parameters"] = parameters
    # the topology kinds, each in its own list, written by its module (kinds/); the vhosts
    # were written above, with their settings
    for topo in sorted(_IN_DEFINITIONS, key=_written_rank):
        if topo is VHOST:
            continue
        doc[topo.key] = [
            with_vhost(topo.to_definitions(s), getattr(s, "vhost"))  # noqa: B009
            for s in sorted(topo.specs(topology), key=topo.definitions_order)
        ]
    return doc


def to_definitions_json(topology: Topology, vhosts: Sequence[str], version: str = "") -> str:
    """The export as JSON text, one key per line so errors can name lines."""
    return (
        json.dumps(to_definitions(topology, vhosts, version), indent=2, ensure_ascii=False) + "\n"
    )

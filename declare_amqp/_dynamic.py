"""Federation upstreams and dynamic shovels: runtime parameters whose URIs carry credentials.

A URI is given by reference (``uri_env`` / ``uri_file``, ``src_uri_env`` ... for shovels) or
literally only when it holds no password; a literal password is refused like a user's. Each
of these keys also takes a list (several URIs, which RabbitMQ tries for failover: one URI
per variable or file); a list of one is its one URI, and a list of several is written to the
broker as a list, in its order. The referenced URIs are read when planning (to compare with
the broker's) and when applying, and never kept in a ``Change``: the broker's own URIs are
kept only as digests (of the whole list, order included), and a changed URI plans as
``uri: (hidden) -> (changed)``. Each kind needs its plugin
(``rabbitmq_federation``, ``rabbitmq_shovel``); the plan says which one is missing.

Exporting (``export_parameters``) keeps that rule: a broker's URI without a password is
written as it is (``uri: amqp://host``), one with a password as a reference to an
environment variable the export names (``uri_env: FEDERATION_UPSTREAM_ORIGIN_URI``), and
``export_warnings`` tells the user which variables to set. A list of several URIs is written
as a list: literally when none holds a password, else as a list of variables, one per URI
(``FEDERATION_UPSTREAM_ORIGIN_URI_1``, ``_2``, ...). Planning the export with those
variables set to the broker's URIs finds nothing to change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import BrokerError, DeclareAmqpError, Location, Problem, TopologyError
from ._format import Key

if TYPE_CHECKING:
    from ._management import ManagementClient
    from ._model import PolicySpec
    from ._plan import Change

_STR, _INT, _BOOL = (str,), (int,), (bool,)
_STR_OR_LIST = (str, list)  # a URI key: one, or a list (of strings, at least one)
_LITERAL = "the file (no password)"  # the uri_refs entry of a URI given literally
_LITERAL_SECRET = "the file (with a password, not shown)"  # ... that holds a password

# One URI, or several in the order the broker keeps them (a list of one is its one URI).
Uris = str | tuple[str, ...]


@dataclass(frozen=True)
class Component:
    """One kind of runtime parameter: its YAML key, broker component, plugin and keys."""

    key: str  # top-level YAML key
    kind: str  # kind in plans
    component: str  # /api/parameters/{component}
    plugin: str
    uri_keys: tuple[str, ...]  # the URI fields, e.g. ("uri",) or ("src_uri", "dest_uri")
    keys: tuple[Key, ...]


def _uri_keys(prefix: str, what: str) -> tuple[Key, ...]:
    several = "each connection attempt picks one"

    def key(name: str, doc: str) -> Key:
        return Key(name, _STR_OR_LIST, doc, items=_STR, min_items=1)

    return (
        key(
            f"{prefix}uri",
            f"{what} URI without a password (else use {prefix}uri_env), or a list of them "
            f"({several}).",
        ),
        key(
            f"{prefix}uri_env",
            f"Environment variable holding the {what} URI, or a list of variables, one URI "
            f"each ({several}).",
        ),
        key(
            f"{prefix}uri_file",
            f"File holding the {what} URI, or a list of files, one URI each ({several}).",
        ),
    )


FEDERATION = Component(
    "federation_upstreams",
    "federation upstream",
    "federation-upstream",
    "rabbitmq_federation",
    ("uri",),
    (
        Key("name", _STR, "Upstream name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        *_uri_keys("", "upstream broker's"),
        Key("exchange", _STR, "Upstream exchange (default: the federated exchange's name)."),
        Key("queue", _STR, "Upstream queue (default: the federated queue's name)."),
        Key("max_hops", _INT, "How many federation links a message may cross.", minimum=1),
        Key("prefetch_count", _INT, "Unacknowledged messages per link.", minimum=1),
        Key("reconnect_delay", _INT, "Seconds between reconnects.", minimum=0),
        Key(
            "ack_mode",
            _STR,
            "on-confirm, on-publish or no-ack.",
            choices=("on-confirm", "on-publish", "no-ack"),
        ),
        Key("trust_user_id", _BOOL, "Keep the user-id of federated messages."),
        Key("expires", _INT, "ms after which an unused upstream queue is deleted.", minimum=1),
        Key("message_ttl", _INT, "TTL of messages in the upstream queue (ms).", minimum=0),
    ),
)

SHOVEL = Component(
    "shovels",
    "shovel",
    "shovel",
    "rabbitmq_shovel",
    ("src_uri", "dest_uri"),
    (
        Key("name", _STR, "Shovel name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        *_uri_keys("src_", "source"),
        Key("src_queue", _STR, "Source queue."),
        Key("src_exchange", _STR, "Source exchange."),
        Key("src_exchange_key", _STR, "Routing key to bind the source exchange with."),
        Key("src_delete_after", (str, int), "never, queue-length, or a number of messages."),
        *_uri_keys("dest_", "destination"),
        Key("dest_queue", _STR, "Destination queue."),
        Key("dest_exchange", _STR, "Destination exchange."),
        Key("dest_exchange_key", _STR, "Routing key to publish with."),
        Key("dest_add_forward_headers", _BOOL, "Add x-shovelled headers."),
        Key(
            "ack_mode",
            _STR,
            "on-confirm, on-publish or no-ack.",
            choices=("on-confirm", "on-publish", "no-ack"),
        ),
        Key("prefetch_count", _INT, "Unacknowledged messages in flight.", minimum=1),
        Key("reconnect_delay", _INT, "Seconds between reconnects.", minimum=0),
    ),
)

COMPONENTS = (FEDERATION, SHOVEL)


@dataclass(frozen=True)
class ParameterSpec:
    """A federation upstream or shovel. ``settings`` holds the non-secret values (YAML key
    names); ``uri_refs`` where each URI comes from (``$NAME`` for a variable, a file's
    path, or ``_LITERAL`` with the URI in ``literal_uris``, which has no password); a
    broker's URIs are kept only as ``uri_digests``. A URI key with several URIs has a
    tuple there: of references (one per URI), or of literal URIs."""

    kind: str
    vhost: str
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    uri_refs: Mapping[str, Uris] = field(default_factory=dict)
    literal_uris: Mapping[str, Uris] = field(default_factory=dict, repr=False)
    uri_digests: Mapping[str, str] = field(default_factory=dict, repr=False)
    location: Location | None = field(default=None, compare=False)
    # keys of the broker's value that declare-amqp does not manage (named by an export)
    unmanaged: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        parts = [
            f"{k} from {ref if isinstance(ref, str) else '[' + ', '.join(ref) + ']'}"
            for k, ref in sorted(self.uri_refs.items())
        ]
        parts += [f"{k}={v}" for k, v in sorted(self.settings.items())]
        return ", ".join(parts)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def as_tuple(uris: Uris) -> tuple[str, ...]:
    """The URIs of a URI key, in order (one URI is a tuple of one)."""
    return (uris,) if isinstance(uris, str) else uris


def is_uris(value: Any) -> bool:
    """``value`` is a URI or a tuple of several (a broker's value as ``split_value`` has it)."""
    return isinstance(value, str) or (
        isinstance(value, tuple) and len(value) > 1 and all(isinstance(u, str) for u in value)
    )


def _one_or_many(items: Sequence[str]) -> Uris:
    """A list of one is its one URI (or reference); several stay a tuple, in order."""
    return items[0] if len(items) == 1 else tuple(items)


def uris_digest(uris: Uris) -> str:
    """The digest a plan compares: of the URIs in their order (one URI is a list of one)."""
    return _digest(json.dumps(list(as_tuple(uris))))


def _has_password(uri: str) -> bool:
    try:
        return bool(urllib.parse.urlsplit(uri).password)
    except ValueError:
        return True  # unparseable: treat as secret


def read_dynamic(reader: Any, doc: Mapping[str, Any]) -> list[ParameterSpec]:
    """The federation upstreams and shovels of one file (problems go to ``reader``)."""
    found: list[ParameterSpec] = []
    if not isinstance(doc, Mapping):
        return found
    for comp in COMPONENTS:
        for raw, line in reader.entries(doc, comp.key):
            spec = _read_one(reader, comp, raw, line)
            if spec is not None:
                found.append(spec)
    return found


def _literal_problems(
    comp: Component, raw: Mapping[str, Any], line: int
) -> list[tuple[int, str, bool]]:
    """(line, message, fatal) of each literal URI that holds a password (a warning: the
    broker's import takes it) or is no string (an error): checked before the key table, whose
    messages would repeat the value."""
    found: list[tuple[int, str, bool]] = []
    spelled = getattr(raw, "spelled", {})  # a definitions file's src-uri, ...
    for uri_key in comp.uri_keys:
        value = raw.get(uri_key)
        if value is None:
            continue
        given = spelled.get(uri_key, uri_key)
        sep = "-" if "-" in given else "_"
        use = f"prefer {given}{sep}env or {given}{sep}file (--strict refuses it)"
        key_line = getattr(raw, "key_lines", {}).get(uri_key, line)
        if isinstance(value, str):
            if _has_password(value):
                found.append(
                    (
                        key_line,
                        f"'{given}' holds a password, a secret in a topology file (it would be in "
                        "version control; it is never printed); " + use,
                        False,
                    )
                )
        elif isinstance(value, list):
            lines = getattr(value, "item_lines", [key_line] * len(value))
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    found.append(
                        (lines[i], f"'{given}' item {i + 1} must be a URI string (not shown)", True)
                    )
                elif _has_password(item):
                    found.append(
                        (
                            lines[i],
                            f"'{given}' item {i + 1} holds a password, a secret in a topology "
                            f"file (never printed); {use}",
                            False,
                        )
                    )
        else:
            found.append(
                (
                    key_line,
                    f"'{given}' must be a URI or a list of URIs (the value is not shown)",
                    True,
                )
            )
    return found


def _read_one(reader: Any, comp: Component, raw: Any, line: int) -> ParameterSpec | None:
    problems = _literal_problems(comp, raw, line) if isinstance(raw, dict) else []
    if problems:
        name = raw.get("name")
        label = f"{comp.kind} '{name}'" if isinstance(name, str) else comp.kind
        for key_line, message, fatal in problems:
            (reader.problem if fatal else reader.warn)(key_line, message, label)
        if any(fatal for _, _, fatal in problems):
            return None
    f = reader.fields(raw, comp.keys, comp.kind, line)
    if f is None:
        return None
    label = f"{comp.kind} '{f['name']}'"
    refs: dict[str, Uris] = {}
    literals: dict[str, Uris] = {}
    for uri_key in comp.uri_keys:
        given = [k for k in (uri_key, f"{uri_key}_env", f"{uri_key}_file") if k in f]
        if len(given) > 1:
            reader.problem(line, f"give one of {', '.join(given)}, not several", label)
        elif not given:
            reader.problem(
                line,
                f"missing '{uri_key}_env' (or {uri_key}_file, or {uri_key} without a password)",
                label,
            )
        else:
            value = f[given[0]]  # a string, or a list of at least one (the key table's rule)
            items = [value] if isinstance(value, str) else value
            if given[0].endswith("_env"):
                refs[uri_key] = _one_or_many(["$" + v for v in items])
            elif given[0].endswith("_file"):
                refs[uri_key] = _one_or_many(items)
            else:
                secret = any(_has_password(i) for i in items)
                refs[uri_key] = _LITERAL_SECRET if secret else _LITERAL
                literals[uri_key] = _one_or_many(items)
    if comp is SHOVEL:
        for side in ("src", "dest"):
            if not any(f"{side}_{k}" in f for k in ("queue", "exchange")):
                reader.problem(line, f"a shovel needs {side}_queue or {side}_exchange", label)
    settings = {
        k: v
        for k, v in f.items()
        if k not in ("name", "vhost") and not k.endswith(("uri", "uri_env", "uri_file"))
    }
    return ParameterSpec(
        comp.kind,
        f.get("vhost", reader.vhost),
        f["name"],
        settings,
        refs,
        literals,
        location=reader.at(line),
    )


def _component(kind: str) -> Component:
    return next(c for c in COMPONENTS if c.kind == kind)


def resolve_uris(spec: ParameterSpec, env: Mapping[str, str] | None = None) -> dict[str, Uris]:
    """The URIs of a desired spec (raises TopologyError naming the reference, never a URI)."""
    env = os.environ if env is None else env
    uris: dict[str, Uris] = dict(spec.literal_uris)
    comp = _component(spec.kind)
    for uri_key in comp.uri_keys:
        if uri_key in uris:
            continue
        refs = as_tuple(spec.uri_refs.get(uri_key, ""))
        uris[uri_key] = _one_or_many(
            [_resolve(spec, uri_key, ref, i, len(refs), env) for i, ref in enumerate(refs, 1)]
        )
    return uris


def _resolve(
    spec: ParameterSpec, uri_key: str, ref: str, position: int, count: int, env: Mapping[str, str]
) -> str:
    """The URI one reference gives: ``$NAME`` a variable's, else a file's (stripped)."""
    which = f" (URI {position} of {count})" if count > 1 else ""
    if ref.startswith("$"):
        value = env.get(ref[1:])
        if not value:
            message = (
                f"{uri_key}_env: the environment variable {ref[1:]}{which} is not set (or empty)"
            )
            raise TopologyError([Problem(message, spec.location, spec.label)])
        return value
    try:
        with open(ref, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        message = f"{uri_key}_file: cannot read {ref}{which}: {exc.strerror or type(exc).__name__}"
        raise TopologyError([Problem(message, spec.location, spec.label)]) from None


def broker_value(spec: ParameterSpec, uris: Mapping[str, Uris]) -> dict[str, Any]:
    """The ``value`` of ``PUT /api/parameters/...``: one URI as a string (as before lists
    were declared), several as a list in their order."""
    value: dict[str, Any] = {k.replace("_", "-"): v for k, v in spec.settings.items()}
    for uri_key, uri in uris.items():
        value[uri_key.replace("_", "-")] = uri if isinstance(uri, str) else list(uri)
    if spec.kind == "shovel":
        value.setdefault("src-protocol", "amqp091")
        value.setdefault("dest-protocol", "amqp091")
    return value


def _broker_values(
    management: ManagementClient, comp: Component, vhost: str
) -> list[tuple[str, dict[str, Any]]]:
    """(name, value) of the broker's parameters of one kind in one vhost (none when the
    vhost does not exist or the user may not read them)."""
    found = management.parameters(comp.component, vhost, f"{comp.kind}s") or ()
    return [(str(p["name"]), dict(p.get("value") or {})) for p in found]


def split_value(
    comp: Component, value: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """A broker value as (settings by YAML key, URIs by YAML key, keys not managed).

    A URI may be a list on the broker (several URIs): a list of one is its URI, a list of
    several a tuple in the broker's order (``Uris``). Anything else (no string, an empty
    list) is kept as it is, which ``is_uris`` tells apart. The default protocols (amqp091)
    are no settings.
    """
    names = {k.name for k in comp.keys}
    rest = dict(value)
    uris: dict[str, Any] = {}
    for uri_key in comp.uri_keys:
        uri = rest.pop(uri_key.replace("_", "-"), None)
        if isinstance(uri, list) and uri and all(isinstance(u, str) for u in uri):
            uri = _one_or_many(uri)
        if uri is not None:
            uris[uri_key] = uri
    for proto in ("src-protocol", "dest-protocol"):
        if rest.get(proto) == "amqp091":
            rest.pop(proto)
    settings = {k.replace("-", "_"): v for k, v in rest.items() if k.replace("-", "_") in names}
    unmanaged = tuple(sorted(k for k in rest if k.replace("-", "_") not in names))
    return settings, uris, unmanaged


def read_broker(
    management: ManagementClient, kinds: Iterable[str], vhosts: Sequence[str]
) -> list[ParameterSpec]:
    """The broker's upstreams and shovels of the vhosts, one request per kind per vhost."""
    found: list[ParameterSpec] = []
    for kind in kinds:
        comp = _component(kind)
        for vhost in vhosts:
            for name, value in _broker_values(management, comp, vhost):
                settings, uris, _ = split_value(comp, value)
                digests = {
                    k: uris_digest(u) if is_uris(u) else _digest(repr(u)) for k, u in uris.items()
                }
                found.append(ParameterSpec(kind, vhost, name, settings, uri_digests=digests))
    return found


def env_variable(
    spec_kind: str, vhost: str, name: str, uri_key: str, taken: set[str], position: int = 0
) -> str:
    """The environment variable an export names for a URI with a password: e.g.
    ``SHOVEL_MOVE_SRC_URI``; the vhost goes into it when two vhosts share a name. The URIs
    of a list are numbered from 1 (``position``): ``FEDERATION_UPSTREAM_ORIGIN_URI_2``."""

    def clean(text: str) -> str:
        return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")

    prefix = clean(spec_kind)
    key = clean(uri_key) + (f"_{position}" if position else "")
    candidates = [f"{prefix}_{clean(name)}_{key}", f"{prefix}_{clean(vhost)}_{clean(name)}_{key}"]
    chosen = next((c for c in candidates if c not in taken), None)
    n = 2
    while chosen is None:
        if f"{candidates[1]}_{n}" not in taken:
            chosen = f"{candidates[1]}_{n}"
        n += 1
    taken.add(chosen)
    return chosen


def export_parameters(
    management: ManagementClient, vhosts: Sequence[str]
) -> tuple[list[ParameterSpec], list[Problem]]:
    """The broker's upstreams and shovels as specs an export can write: URIs without a
    password literally, the others by reference (see ``env_variable``); with the
    problems of those it cannot write (a URI that is no string nor a list of them)."""
    raw = [
        (comp, vhost, name, value)
        for comp in COMPONENTS
        for vhost in vhosts
        for name, value in _broker_values(management, comp, vhost)
    ]
    return exportable(raw)


def exportable(
    raw: Sequence[tuple[Component, str, str, Mapping[str, Any]]],
) -> tuple[list[ParameterSpec], list[Problem]]:
    """The pure part of ``export_parameters``."""
    found: list[ParameterSpec] = []
    problems: list[Problem] = []
    taken: set[str] = set()
    for comp, vhost, name, value in sorted(raw, key=lambda r: (r[0].kind, r[1], r[2])):
        settings, uris, unmanaged = split_value(comp, value)
        label = f"{comp.kind} '{name}' (vhost {vhost})"
        malformed = [k for k, u in uris.items() if not is_uris(u)]
        if malformed:
            problems.append(
                Problem(
                    f"not exported: its {', '.join(malformed)} is neither a URI nor a list of URIs",
                    None,
                    label,
                )
            )
            continue
        refs: dict[str, Uris] = {}
        literals: dict[str, Uris] = {}
        for uri_key, uri in uris.items():
            if isinstance(uri, str) and _has_password(uri):
                refs[uri_key] = "$" + env_variable(comp.kind, vhost, name, uri_key, taken)
            elif any(_has_password(u) for u in uri):
                # a list is given one way (uri or uri_env): all by variable when one URI of
                # it holds a password, numbered in the broker's order
                refs[uri_key] = tuple(
                    "$" + env_variable(comp.kind, vhost, name, uri_key, taken, position)
                    for position in range(1, len(uri) + 1)
                )
            else:
                refs[uri_key] = _LITERAL
                literals[uri_key] = uri
        found.append(
            ParameterSpec(
                comp.kind,
                vhost,
                name,
                settings,
                refs,
                literals,
                {k: uris_digest(u) for k, u in uris.items()},
                unmanaged=unmanaged,
            )
        )
    return found, problems


def export_warnings(parameters: Iterable[ParameterSpec]) -> list[Problem]:
    """What a user must know about exported upstreams and shovels: the environment
    variables to set (their URIs hold passwords, which an export never writes), and the
    broker's keys that the export leaves out."""
    warnings: list[Problem] = []
    for spec in parameters:
        for uri_key, refs in sorted(spec.uri_refs.items()):
            if uri_key not in spec.uri_digests:
                continue
            if isinstance(refs, str) and refs.startswith("$"):
                warnings.append(
                    Problem(
                        f"{uri_key} holds a password, so the export names it "
                        f"{uri_key}_env: {refs[1:]}; set that environment variable to the "
                        "URI (as the broker has it) before planning or applying the export",
                        None,
                        spec.label,
                    )
                )
            elif not isinstance(refs, str):
                warnings += [
                    Problem(
                        f"{uri_key} lists URIs with a password, so the export names URI "
                        f"{position} of {len(refs)} {uri_key}_env: {ref[1:]}; set that "
                        "environment variable to that URI (as the broker has it) before "
                        "planning or applying the export",
                        None,
                        spec.label,
                    )
                    for position, ref in enumerate(refs, 1)
                    if ref.startswith("$")
                ]
        if spec.unmanaged:
            warnings.append(
                Problem(
                    f"not exported: {', '.join(spec.unmanaged)} (declare-amqp does not "
                    f"manage these keys of a {spec.kind})",
                    None,
                    spec.label,
                )
            )
    return warnings


def _written(uris: Uris) -> str | list[str]:
    """One URI (or reference) as a string, several as a list."""
    items = as_tuple(uris)
    return items[0] if len(items) == 1 else list(items)


def document_entry(spec: ParameterSpec, with_vhost: bool) -> dict[str, Any]:
    """An upstream or shovel as an entry of the YAML format (URIs as the file had them:
    literal without a password, else ``*_env`` or ``*_file``; several as a list)."""
    comp = _component(spec.kind)
    entry: dict[str, Any] = {"name": spec.name}
    if with_vhost:
        entry["vhost"] = spec.vhost
    for key in comp.keys:
        base = key.name.removesuffix("_env").removesuffix("_file")
        if key.name in ("name", "vhost"):
            continue
        if key.name in comp.uri_keys:
            if key.name in spec.literal_uris:
                entry[key.name] = _written(spec.literal_uris[key.name])
        elif base in comp.uri_keys and base not in spec.literal_uris:
            refs = as_tuple(spec.uri_refs.get(base, ""))
            by_env = refs[0].startswith("$")  # a list is all variables or all files
            if key.name.endswith("_env") and by_env:
                entry[key.name] = _written(tuple(r[1:] for r in refs))
            elif key.name.endswith("_file") and refs[0] and not by_env:
                entry[key.name] = _written(refs)
        elif key.name in spec.settings:
            entry[key.name] = spec.settings[key.name]
    return entry


def definitions_entry(spec: ParameterSpec, with_vhost: bool) -> dict[str, Any]:
    """An upstream or shovel as a ``parameters`` entry of the broker's definitions format;
    a URI with a password is a reference there too (``uri-env``, ``src-uri-file``, ...),
    which the definitions reader takes like the YAML keys."""
    comp = _component(spec.kind)
    value = broker_value(spec, spec.literal_uris)
    for uri_key in comp.uri_keys:
        refs = as_tuple(spec.uri_refs.get(uri_key, ""))
        if uri_key in spec.literal_uris or not refs[0]:
            continue
        suffix = "-env" if refs[0].startswith("$") else "-file"
        value[uri_key.replace("_", "-") + suffix] = _written(
            tuple(r.removeprefix("$") for r in refs)
        )
    entry: dict[str, Any] = {"value": value}
    if with_vhost:
        entry["vhost"] = spec.vhost
    entry["component"] = comp.component
    entry["name"] = spec.name
    return entry


def _running(management: ManagementClient, plugins: set[str]) -> set[str]:
    """Which of ``plugins`` (federation, shovel) the broker runs, as far as it shows.

    Federation registers the exchange type ``x-federation-upstream`` (listed in the
    overview); shovels are seen through ``GET /api/shovels`` of rabbitmq_shovel_management.
    """
    running: set[str] = set()
    if FEDERATION.plugin in plugins and management.federation_enabled():
        running.add(FEDERATION.plugin)
    if SHOVEL.plugin in plugins and management.shovels_enabled():
        running.add(SHOVEL.plugin)
    return running


def _not_enabled(plugin: str, what: str) -> str:
    return (
        f"the {plugin} plugin is not enabled on the broker, so {what} "
        f"(`rabbitmq-plugins enable {plugin} {plugin}_management`)"
    )


def missing_plugins(
    management: ManagementClient, desired: Sequence[ParameterSpec]
) -> list[Problem]:
    """The plugins the files' upstreams and shovels need and the broker does not run."""
    running = _running(management, {_component(d.kind).plugin for d in desired})
    problems = []
    for spec in desired:
        comp = _component(spec.kind)
        if comp.plugin not in running:
            problems.append(
                Problem(
                    _not_enabled(comp.plugin, f"it has no {comp.kind}s"),
                    spec.location,
                    spec.label,
                )
            )
    return problems


# Policy keys that only a plugin knows: the broker refuses a policy holding one while the
# plugin is off ("... are not recognised policy settings"), after the writes before it.
PLUGIN_POLICY_KEYS = {
    "federation-upstream": FEDERATION.plugin,
    "federation-upstream-set": FEDERATION.plugin,
}


def policy_plugin_problems(
    management: ManagementClient, policies: Iterable[PolicySpec]
) -> list[Problem]:
    """Policies whose keys need a plugin the broker does not run (checked at plan time)."""
    needed = [
        (p, key, PLUGIN_POLICY_KEYS[key])
        for p in policies
        for key in sorted(p.definition)
        if key in PLUGIN_POLICY_KEYS
    ]
    if not needed:
        return []
    running = _running(management, {plugin for _, _, plugin in needed})
    return [
        Problem(
            _not_enabled(plugin, f"the broker refuses the policy key '{key}'"), p.location, p.label
        )
        for p, key, plugin in needed
        if plugin not in running
    ]


def plan_dynamic(
    desired: Sequence[ParameterSpec],
    actual: Sequence[ParameterSpec],
    managed: Iterable[str],
    scope: Sequence[str],
    prune: bool,
    env: Mapping[str, str] | None = None,
) -> list[Change]:
    """Creates, updates (non-secret settings shown, URIs only as changed) and deletes."""
    from ._access import _change
    from ._plan import CREATE, DELETE, UPDATE, Difference

    changes: list[Change] = []
    live = {(a.kind, a.vhost, a.name): a for a in actual}
    for want in desired:
        have = live.get((want.kind, want.vhost, want.name))
        uris = resolve_uris(want, env)
        if have is None:
            changes.append(_change(CREATE, want.kind, want.vhost, want.name, desired=want))
            continue
        diffs = [
            Difference(k, have.settings.get(k), want.settings.get(k))
            for k in sorted(set(want.settings) | set(have.settings))
            if want.settings.get(k) != have.settings.get(k)
        ]
        diffs += [
            Difference(k, "(hidden)", "(changed)")
            for k, uri in sorted(uris.items())
            if uris_digest(uri) != have.uri_digests.get(k)
        ]
        if diffs:
            changes.append(_change(UPDATE, want.kind, want.vhost, want.name, want, have, diffs))
    if prune:
        kinds = {c.kind for c in COMPONENTS if c.key in set(managed)}
        wanted = {(d.kind, d.vhost, d.name) for d in desired}
        for a in actual:
            if (
                a.kind in kinds
                and a.vhost in set(scope)
                and (a.kind, a.vhost, a.name) not in wanted
            ):
                changes.append(_change(DELETE, a.kind, a.vhost, a.name, actual=a))
    return changes


def apply_dynamic(
    management: ManagementClient, change: Change, env: Mapping[str, str] | None = None
) -> None:
    """Write or delete one upstream or shovel; broker errors are redacted of its URIs."""
    from ._plan import DELETE

    spec = change.spec
    assert isinstance(spec, ParameterSpec)
    comp = _component(spec.kind)
    if change.action == DELETE:
        management.delete_parameter(comp.component, spec.vhost, spec.name, f"deleting {spec.label}")
        return
    uris = resolve_uris(spec, env)
    try:
        management.put_parameter(
            comp.component,
            spec.vhost,
            spec.name,
            broker_value(spec, uris),
            f"writing {spec.label}",
        )
    except DeclareAmqpError as exc:
        text = str(exc)
        for uri in (u for value in uris.values() for u in as_tuple(value)):
            text = text.replace(uri, "***")
            password = urllib.parse.urlsplit(uri).password
            if password:
                text = text.replace(password, "***")
        if "not found" in text and "component" in text:
            text += f" (is the {comp.plugin} plugin enabled?)"
        raise BrokerError(text) from None

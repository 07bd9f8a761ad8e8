"""What federation upstreams and dynamic shovels share: runtime parameters whose URIs carry
credentials (``Component``, the kind both are; ``federation_upstream`` and ``shovel`` are its
two instances).

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
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import BrokerError, DeclareAmqpError, Location, Problem, TopologyError
from .._format import Key
from .._model import Access
from .._plan import CREATE, DELETE, UPDATE, Change, Difference, access_kind_named
from ._base import AccessKind, DefinitionsReader, PlanContext, Reader, change

if TYPE_CHECKING:
    from .._management import ManagementClient

_STR, _INT, _BOOL = (str,), (int,), (bool,)
_STR_OR_LIST = (str, list)  # a URI key: one, or a list (of strings, at least one)
_LITERAL = "the file (no password)"  # the uri_refs entry of a URI given literally
_LITERAL_SECRET = "the file (with a password, not shown)"  # ... that holds a password

# One URI, or several in the order the broker keeps them (a list of one is its one URI).
Uris = str | tuple[str, ...]

# The broker's value of each parameter an apply updated, read just before the write, by the
# client that wrote it: ``undo`` writes it back. It holds URIs with their passwords, so it
# lives only in memory, for as long as that client does, and is never shown.
_PREVIOUS: weakref.WeakKeyDictionary[ManagementClient, dict[tuple[str, str, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def uri_keys(prefix: str, what: str) -> tuple[Key, ...]:
    """The three keys of one URI (literal, ``_env``, ``_file``), each taking a list too."""
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


@dataclass(frozen=True)
class ParameterSpec:
    """A federation upstream or shovel. ``settings`` holds the non-secret values (YAML key
    names); ``uri_refs`` where each URI comes from (``$NAME`` for a variable, a file's
    path, or ``_LITERAL`` with the URI in ``literal_uris``, which has no password); a
    broker's URIs are kept only as ``uri_digests``. A URI key with several URIs has a
    tuple there: of references (one per URI), or of literal URIs."""

    GROUP: ClassVar[str] = "parameters"
    IN_VHOST: ClassVar[bool] = True

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
        """How messages name it."""
        return f"{self.kind} '{self.name}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        """Plan details: where each URI comes from (never a URI), the settings."""
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


def has_password(uri: str) -> bool:
    """Whether a URI holds a password (an unparseable one counts as secret)."""
    try:
        return bool(urllib.parse.urlsplit(uri).password)
    except ValueError:
        return True  # unparseable: treat as secret


def _literal_problems(
    uri_keys: Sequence[str], raw: Mapping[str, Any], line: int
) -> list[tuple[int, str, bool]]:
    """(line, message, fatal) of each literal URI that holds a password (a warning: the
    broker's import takes it) or is no string (an error): checked before the key table, whose
    messages would repeat the value."""
    found: list[tuple[int, str, bool]] = []
    spelled = getattr(raw, "spelled", {})  # a definitions file's src-uri, ...
    for uri_key in uri_keys:
        value = raw.get(uri_key)
        if value is None:
            continue
        given = spelled.get(uri_key, uri_key)
        sep = "-" if "-" in given else "_"
        use = f"prefer {given}{sep}env or {given}{sep}file (--strict refuses it)"
        key_line = getattr(raw, "key_lines", {}).get(uri_key, line)
        if isinstance(value, str):
            if has_password(value):
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
                elif has_password(item):
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


class Component(AccessKind[ParameterSpec]):
    """One kind of runtime parameter: its YAML key, broker component, plugin and keys."""

    spec = ParameterSpec
    tag = "policymaker"
    compared = ()

    def __init__(
        self,
        key: str,
        kind: str,
        component: str,
        plugin: str,
        uri_keys: tuple[str, ...],
        keys: tuple[Key, ...],
        *,
        doc: str,
        schema_doc: str,
    ) -> None:
        """``key``: top-level YAML key; ``kind``: in plans; ``component``: of
        ``/api/parameters/{component}``; ``uri_keys``: the URI fields, e.g. ``("uri",)``."""
        self.key = key
        self.kind = access_kind_named(kind)
        self.component = component
        self.api_component = component  # the same, typed as present
        self.plugin = plugin
        self.uri_keys = uri_keys
        self.keys = keys
        self.doc = doc
        self.schema_name = key.removesuffix("s")
        self.schema_doc = schema_doc
        self.plural = kind + "s"

    def __repr__(self) -> str:
        return f"Component({self.key!r})"

    def kept_by_prune(self, spec: ParameterSpec) -> bool:
        """Whether prune leaves the broker's ``spec`` alone though no file declares it (none
        of this component's: see ``ShovelKind``)."""
        return False

    def specs(self, access: Access) -> tuple[ParameterSpec, ...]:
        """The parameters of this component (both share the ``parameters`` group)."""
        return tuple(p for p in access.of(ParameterSpec) if p.kind == self.kind)

    def identity(self, spec: ParameterSpec) -> tuple[Any, ...]:
        """Its kind, vhost and name."""
        return (spec.kind, spec.vhost, spec.name)

    # ------------------------------------------------------------ files

    def read(self, reader: Reader, raw: Any, line: int) -> ParameterSpec | None:
        """One entry: a literal URI with a password is a warning, a malformed URI list an error, and
        each URI is given one way (literal, ``_env`` or ``_file``)."""
        problems = _literal_problems(self.uri_keys, raw, line) if isinstance(raw, dict) else []
        if problems:
            name = raw.get("name")
            label = f"{self.kind} '{name}'" if isinstance(name, str) else self.kind
            for key_line, message, fatal in problems:
                (reader.problem if fatal else reader.warn)(key_line, message, label)
            if any(fatal for _, _, fatal in problems):
                return None
        f = reader.fields(raw, self.keys, self.kind, line)
        if f is None:
            return None
        label = f"{self.kind} '{f['name']}'"
        refs: dict[str, Uris] = {}
        literals: dict[str, Uris] = {}
        for uri_key in self.uri_keys:
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
                    secret = any(has_password(i) for i in items)
                    refs[uri_key] = _LITERAL_SECRET if secret else _LITERAL
                    literals[uri_key] = _one_or_many(items)
        self.check(reader, f, line, label)
        settings = {
            k: v
            for k, v in f.items()
            if k not in ("name", "vhost") and not k.endswith(("uri", "uri_env", "uri_file"))
        }
        return ParameterSpec(
            self.kind.value,
            f.get("vhost", reader.vhost),
            f["name"],
            settings,
            refs,
            literals,
            location=reader.at(line),
        )

    def check(self, reader: Reader, f: Mapping[str, Any], line: int, label: str) -> None:
        """Rules of this component beyond its key table (problems go to ``reader``)."""

    def resolve_uris(
        self, spec: ParameterSpec, env: Mapping[str, str] | None = None
    ) -> dict[str, Uris]:
        """The URIs of a desired spec (raises TopologyError naming the reference, never a
        URI)."""
        env = os.environ if env is None else env
        uris: dict[str, Uris] = dict(spec.literal_uris)
        for uri_key in self.uri_keys:
            if uri_key in uris:
                continue
            refs = as_tuple(spec.uri_refs.get(uri_key, ""))
            uris[uri_key] = _one_or_many(
                [_resolve(spec, uri_key, ref, i, len(refs), env) for i, ref in enumerate(refs, 1)]
            )
        return uris

    def broker_value(self, spec: ParameterSpec, uris: Mapping[str, Uris]) -> dict[str, Any]:
        """The ``value`` of ``PUT /api/parameters/...``: one URI as a string (as before lists
        were declared), several as a list in their order."""
        value: dict[str, Any] = {k.replace("_", "-"): v for k, v in spec.settings.items()}
        for uri_key, uri in uris.items():
            value[uri_key.replace("_", "-")] = uri if isinstance(uri, str) else list(uri)
        return value

    # ------------------------------------------------------------ definitions JSON

    def from_definitions(self, reader: DefinitionsReader, raw: Any, line: int) -> Any:
        """A ``parameters`` entry of this component (``where``: its name and vhost merged
        into ``raw["value"]`` by the caller) by YAML key: the default protocols dropped, a
        list of one URI as its URI."""
        value = {k: v for k, v in raw.items() if v != "amqp091" or "protocol" not in k}
        for key, uri in list(value.items()):
            if isinstance(uri, list) and len(uri) == 1 and key.endswith("uri"):
                value[key] = uri[0]
        renamed = {k: k.replace("-", "_") for k in value if k not in ("name", "vhost")}
        return reader.translated(value, line, renamed)

    def to_definitions(self, spec: ParameterSpec) -> dict[str, Any]:
        """A ``parameters`` entry (without its vhost); a URI with a password is a reference
        there too (``uri-env``, ``src-uri-file``, ...), which the definitions reader takes
        like the YAML keys."""
        value = self.broker_value(spec, spec.literal_uris)
        for uri_key in self.uri_keys:
            refs = as_tuple(spec.uri_refs.get(uri_key, ""))
            if uri_key in spec.literal_uris or not refs[0]:
                continue
            suffix = "-env" if refs[0].startswith("$") else "-file"
            value[uri_key.replace("_", "-") + suffix] = _written(
                tuple(r.removeprefix("$") for r in refs)
            )
        return {"value": value, "component": self.component, "name": spec.name}

    def definitions_order(self, spec: ParameterSpec) -> tuple[Any, ...]:
        """By kind, vhost and name."""
        return (spec.kind, spec.vhost, spec.name)

    # ------------------------------------------------------------ the broker

    def running(self, management: ManagementClient) -> bool:
        """Whether the broker runs this component's plugin, as far as it shows."""
        raise NotImplementedError

    def missing_plugin(
        self, management: ManagementClient, desired: Sequence[ParameterSpec]
    ) -> list[Problem]:
        """Each of ``desired`` when the broker does not run the plugin (one question)."""
        if not desired or self.running(management):
            return []
        message = not_enabled(self.plugin, f"it has no {self.kind}s")
        return [Problem(message, spec.location, spec.label) for spec in desired]

    def broker_values(
        self, management: ManagementClient, vhost: str
    ) -> list[tuple[str, dict[str, Any]]]:
        """(name, value) of the broker's parameters of this kind in one vhost (none when
        the vhost does not exist or the user may not read them)."""
        found = management.parameters(self.api_component, vhost, f"{self.kind}s") or ()
        return [(str(p["name"]), dict(p.get("value") or {})) for p in found]

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[ParameterSpec]:
        """The broker's parameters of this kind in ``vhosts``, URIs kept only as digests."""
        found: list[ParameterSpec] = []
        for vhost in vhosts:
            for name, value in self.broker_values(management, vhost):
                settings, uris, _ = split_value(self, value)
                digests = {
                    k: uris_digest(u) if is_uris(u) else _digest(repr(u)) for k, u in uris.items()
                }
                found.append(
                    ParameterSpec(self.kind.value, vhost, name, settings, uri_digests=digests)
                )
        return found

    def plan(
        self, desired: Sequence[ParameterSpec], actual: Sequence[ParameterSpec], ctx: PlanContext
    ) -> tuple[list[Change], list[Problem]]:
        """Creates, updates (non-secret settings shown, URIs only as changed) and deletes."""
        changes: list[Change] = []
        live = {self.identity(a): a for a in actual}
        for want in desired:
            have = live.get(self.identity(want))
            uris = self.resolve_uris(want, ctx.env)
            if have is None:
                changes.append(change(CREATE, want.kind, want.vhost, want.name, desired=want))
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
                changes.append(change(UPDATE, want.kind, want.vhost, want.name, want, have, diffs))
        if ctx.prune and self.key in ctx.managed:
            wanted = {self.identity(d) for d in desired}
            changes += [
                change(DELETE, a.kind, a.vhost, a.name, actual=a)
                for a in actual
                if a.vhost in set(ctx.scope)
                and self.identity(a) not in wanted
                and not self.kept_by_prune(a)
            ]
        return changes, []

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """Write or delete one parameter; broker errors are redacted of its URIs. Before an
        update, the broker's value is read and kept in memory for ``undo`` (the plan keeps
        its URIs only as digests)."""
        spec = c.spec
        assert isinstance(spec, ParameterSpec)
        if c.action == DELETE:
            management.delete_parameter(
                self.api_component, spec.vhost, spec.name, f"deleting {spec.label}"
            )
            return True
        if c.action not in (CREATE, UPDATE):
            return False
        if c.action == UPDATE:
            previous = management.parameter_value(
                self.api_component, spec.vhost, spec.name, spec.label
            )
            if previous is not None:
                _PREVIOUS.setdefault(management, {})[self._slot(spec)] = previous
        uris = self.resolve_uris(spec, env)
        self._put(management, spec, self.broker_value(spec, uris), uris.values())
        return True

    def _slot(self, spec: ParameterSpec) -> tuple[str, str, str]:
        return (self.api_component, spec.vhost, spec.name)

    def _put(
        self,
        management: ManagementClient,
        spec: ParameterSpec,
        value: Mapping[str, Any],
        uris: Iterable[Uris],
    ) -> None:
        try:
            management.put_parameter(
                self.api_component, spec.vhost, spec.name, value, f"writing {spec.label}"
            )
        except DeclareAmqpError as exc:
            text = str(exc)
            for uri in (u for value in uris for u in as_tuple(value)):
                text = text.replace(uri, "***")
                password = urllib.parse.urlsplit(uri).password
                if password:
                    text = text.replace(password, "***")
            if "not found" in text and "component" in text:
                text += f" (is the {self.plugin} plugin enabled?)"
            raise BrokerError(text) from None

    def undo(self, management: ManagementClient, c: Change) -> None:
        """A created parameter is deleted; an update is undone by writing back the value
        ``write`` read from the broker just before it (held in memory, never shown). Without
        that value (the update was not written through this client) it cannot be undone
        exactly: the plan keeps the broker's URIs only as digests."""
        if c.action != UPDATE:
            super().undo(management, c)
            return
        spec = c.spec
        assert isinstance(spec, ParameterSpec)
        previous = _PREVIOUS.get(management, {}).pop(self._slot(spec), None)
        if previous is None:
            raise DeclareAmqpError(
                "updated in place; its previous value was not read before the write, and "
                "the plan keeps its URIs only as digests, so it cannot be written back"
            )
        # the broker spells the URI keys with hyphens (``broker_value``): src_uri -> src-uri
        uris = (previous.get(k.replace("_", "-")) for k in self.uri_keys)
        self._put(
            management,
            spec,
            previous,
            (tuple(u) if isinstance(u, list) else u for u in uris if isinstance(u, str | list)),
        )

    # ------------------------------------------------------------ export

    def export_entry(self, spec: ParameterSpec, with_vhost: bool) -> dict[str, Any]:
        """An entry of the YAML format (URIs as the file had them: literal without a
        password, else ``*_env`` or ``*_file``; several as a list)."""
        entry: dict[str, Any] = {"name": spec.name}
        if with_vhost:
            entry["vhost"] = spec.vhost
        for key in self.keys:
            base = key.name.removesuffix("_env").removesuffix("_file")
            if key.name in ("name", "vhost"):
                continue
            if key.name in self.uri_keys:
                if key.name in spec.literal_uris:
                    entry[key.name] = _written(spec.literal_uris[key.name])
            elif base in self.uri_keys and base not in spec.literal_uris:
                refs = as_tuple(spec.uri_refs.get(base, ""))
                by_env = refs[0].startswith("$")  # a list is all variables or all files
                if key.name.endswith("_env") and by_env:
                    entry[key.name] = _written(tuple(r[1:] for r in refs))
                elif key.name.endswith("_file") and refs[0] and not by_env:
                    entry[key.name] = _written(refs)
            elif key.name in spec.settings:
                entry[key.name] = spec.settings[key.name]
        return entry

    def exportable(self, management: ManagementClient, vhosts: Sequence[str]) -> list[Any]:
        """(self, vhost, name, value) of the broker's parameters of this kind (``exportable``
        turns them into specs)."""
        return [
            (self, vhost, name, value)
            for vhost in vhosts
            for name, value in self.broker_values(management, vhost)
        ]


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
            if isinstance(uri, str) and has_password(uri):
                refs[uri_key] = "$" + env_variable(comp.kind, vhost, name, uri_key, taken)
            elif any(has_password(u) for u in uri):
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
                comp.kind.value,
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


def not_enabled(plugin: str, what: str) -> str:
    """The message naming a plugin the broker does not run and how to enable it."""
    return (
        f"the {plugin} plugin is not enabled on the broker, so {what} "
        f"(`rabbitmq-plugins enable {plugin} {plugin}_management`)"
    )

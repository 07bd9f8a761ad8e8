"""A vhost's metadata (description, tags, default queue type) and limits.

The vhost itself is the topology's (``_model.VhostSpec``, created with the topology); its
settings come from the same ``vhosts`` entries of a file and are planned here: a new vhost
is created with its metadata and gets its limits right after (``has_followup``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import Location, Problem
from .._format import Key
from .._model import QUEUE_TYPES
from .._plan import CONFLICT, CREATE, UPDATE, Change, Difference, Kind
from ._base import (
    AccessKind,
    PlanContext,
    Reader,
    change,
    limit_of,
    plain,
    read_tags,
    tag_tuple,
    unlimited,
)

if TYPE_CHECKING:
    from .._management import ManagementClient

# Metadata and limits of a vhost: the keys of a ``vhosts`` entry after its ``name``.
VHOST_SETTING_KEYS = (
    Key("description", (str,), "Description of the vhost."),
    Key("tags", (list,), "Tags of the vhost (strings)."),
    Key(
        "default_queue_type",
        (str,),
        "Type of queues declared without one; set when the vhost is created.",
        choices=QUEUE_TYPES,
    ),
    Key("max_connections", (int,), "Limit of client connections (-1: none).", minimum=-1),
    Key("max_queues", (int,), "Limit of queues (-1: none).", minimum=-1),
)

# a vhost's limits: the broker's name -> the YAML key
VHOST_LIMITS = {"max-connections": "max_connections", "max-queues": "max_queues"}


@dataclass(frozen=True)
class VhostSettings:
    """A vhost's metadata and limits; None means the files do not manage that setting."""

    GROUP: ClassVar[str] = "vhost_settings"

    name: str
    description: str | None = None
    tags: tuple[str, ...] | None = None
    default_queue_type: str | None = None
    max_connections: int | None = None
    max_queues: int | None = None
    location: Location | None = field(default=None, compare=False)

    @property
    def vhost(self) -> str:
        """The vhost it is about."""
        return self.name

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"vhost '{self.name}'"

    @property
    def shown(self) -> str:
        """Plan details."""
        return ", ".join(f"{k}={plain(v)!r}" for k, v in describe_settings(self).items())

    @property
    def settings(self) -> dict[str, Any]:
        """The body of ``PUT /api/vhosts/{name}`` for the metadata the files set."""
        body: dict[str, Any] = {}
        if self.description is not None:
            body["description"] = self.description
        if self.tags is not None:
            body["tags"] = ",".join(self.tags)
        if self.default_queue_type is not None:
            # 3.x reads `defaultqueuetype`, 3.13+/4.x `default_queue_type`
            body["default_queue_type"] = body["defaultqueuetype"] = self.default_queue_type
        return body


def without_defaults(v: VhostSettings) -> VhostSettings:
    """The settings a new vhost would not have anyway (empty description and tags)."""
    return replace(v, description=v.description or None, tags=v.tags or None)


def describe_settings(v: VhostSettings) -> dict[str, Any]:
    """A vhost's managed settings, for an export's vhost entry."""
    return {
        f.name: plain(getattr(v, f.name))
        for f in fields(v)
        if f.name not in ("name", "location") and getattr(v, f.name) is not None
    }


def has_followup(c: Change) -> bool:
    """A vhost creation whose limits ``write`` sets once the vhost was made."""
    return (
        c.kind == Kind.VHOST
        and c.action == CREATE
        and isinstance(c.desired, VhostSettings)
        and (c.desired.max_connections is not None or c.desired.max_queues is not None)
    )


class VhostSettingsKind(AccessKind[VhostSettings]):
    """The settings of the ``vhosts`` entries (that key is the topology's: ``top_level``
    is False, so it is no ``managed`` key and nothing is pruned)."""

    spec = VhostSettings
    kind = Kind.VHOST
    key = "vhosts"
    top_level = False
    doc = "Virtual hosts to create (names, or {name: ...})."
    schema_name = ""
    schema_doc = ""
    keys = VHOST_SETTING_KEYS
    plural = "vhosts"
    compared = ("description", "tags", "default_queue_type", "max_connections", "max_queues")

    def identity(self, spec: VhostSettings) -> tuple[Any, ...]:
        """The vhost's name."""
        return (spec.name,)

    def read(self, reader: Reader, raw: Any, line: int) -> VhostSettings | None:
        """The settings of one ``vhosts`` entry (a name alone has none: None)."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            return None  # the loader reports what is wrong with it
        values = {k.name: raw[k.name] for k in self.keys if raw.get(k.name) is not None}
        if "tags" in values:
            values["tags"] = read_tags(reader, values["tags"], line, f"vhost '{raw['name']}'")
        return VhostSettings(raw["name"], location=reader.at(line), **values) if values else None

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[VhostSettings]:
        """The metadata and limits of the vhosts in scope."""
        in_scope = set(vhosts)
        limits_by_vhost = {v["vhost"]: v.get("value") or {} for v in management.list_vhost_limits()}
        found = []
        for v in management.list_vhosts():
            if v["name"] not in in_scope:
                continue
            meta = v.get("metadata") or {}
            dqt = v.get("default_queue_type")
            limits = limits_by_vhost.get(v["name"], {})
            found.append(
                VhostSettings(
                    name=v["name"],
                    description=v.get("description", meta.get("description", "")),
                    tags=tag_tuple(v.get("tags", meta.get("tags"))),
                    default_queue_type=None if dqt in (None, "undefined") else str(dqt),
                    max_connections=limit_of(limits, "max-connections"),
                    max_queues=limit_of(limits, "max-queues"),
                )
            )
        return found

    def plan(
        self, desired: Sequence[VhostSettings], actual: Sequence[VhostSettings], ctx: PlanContext
    ) -> tuple[list[Change], list[Problem]]:
        """Updates of the settings the files set (the metadata of a new vhost goes with its
        creation, its limits right after); a different default queue type is a conflict."""
        changes: list[Change] = []
        live = {v.name: v for v in actual}
        for want in desired:
            if want.name in ctx.new_vhosts:
                continue  # created with its metadata, then its limits (see write)
            have = live.get(want.name) or VhostSettings(want.name, description="", tags=())
            diffs = [
                Difference(f, plain(getattr(have, f)), plain(getattr(want, f)))
                for f in self.compared
                if getattr(want, f) is not None
                and unlimited(getattr(want, f)) != unlimited(getattr(have, f))
            ]
            immutable = [d for d in diffs if d.field == "default_queue_type"]
            if immutable:
                changes.append(
                    change(
                        CONFLICT,
                        self.kind,
                        want.name,
                        want.name,
                        want,
                        have,
                        immutable,
                        f"default_queue_type is {have.default_queue_type or 'not set'} on the "
                        f"broker but {want.default_queue_type} in {want.location}; it is set "
                        "when the vhost is created (queues declared before keep their type): "
                        "keep the broker's value in the file, or delete and re-create the vhost",
                    )
                )
                diffs = [d for d in diffs if d.field != "default_queue_type"]
            if diffs:
                changes.append(change(UPDATE, self.kind, want.name, want.name, want, have, diffs))
        return changes, []

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """A new vhost's limits (counted as written by the topology's apply: False), or
        the settings an update changes."""
        if has_followup(c):
            assert isinstance(c.desired, VhostSettings)
            for limit, f in VHOST_LIMITS.items():
                if getattr(c.desired, f) is not None:
                    management.put_vhost_limit(c.name, limit, getattr(c.desired, f))
            return False
        if c.action != UPDATE:
            return False
        want = c.desired
        assert isinstance(want, VhostSettings)
        fields_changed = {d.field for d in c.differences}
        if fields_changed & {"description", "tags", "default_queue_type"}:
            management.put_vhost(want.name, want.settings, creating=False)
        for limit, f in VHOST_LIMITS.items():
            if f in fields_changed:
                management.put_vhost_limit(c.name, limit, getattr(want, f))
        return True

    def undo(self, management: ManagementClient, c: Change) -> None:
        """An update's metadata and limits written back to what the vhost had; a vhost that
        had no limits gets no limits record back either (the broker keeps an empty one after
        its last limit is removed one by one)."""
        super().undo(management, c)
        before = c.actual
        if isinstance(before, VhostSettings) and all(
            getattr(before, f) is None for f in VHOST_LIMITS.values()
        ):
            changed = {d.field for d in c.differences} & set(VHOST_LIMITS.values())
            if changed:
                management.delete_parameter(
                    "vhost-limits", c.name, "limits", f"clearing the limits of vhost '{c.name}'"
                )

    def export_entry(self, spec: VhostSettings, with_vhost: bool) -> dict[str, Any]:
        """As a ``vhosts`` entry (the settings a new vhost has anyway left out)."""
        return {"name": spec.name, **describe_settings(without_defaults(spec))}


VHOST_SETTINGS = VhostSettingsKind()

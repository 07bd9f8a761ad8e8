"""The vhost kind: a topology file's ``vhosts`` (a name, or an object with ``name``).

Its spec is ``_model.VhostSpec``; its settings (metadata, limits) are the access kind
``vhost_settings``, read from the same entries with the keys after ``name``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._format import Key
from .._model import VhostSpec
from .._plan import Change, Difference, Kind, Writer
from ._base import (
    PruneContext,
    Reader,
    SchemaObject,
    TopologyDefinitionsReader,
    TopologyKind,
)
from .vhost_settings import VHOST_SETTING_KEYS

if TYPE_CHECKING:
    from .._management import ManagementClient

VHOST_KEYS = (
    Key("name", (str,), "Name of the virtual host.", required=True),
    *VHOST_SETTING_KEYS,
)


class VhostKind(TopologyKind[VhostSpec]):
    """A vhost: created over the management API; never updated nor pruned here."""

    spec = VhostSpec
    kind = Kind.VHOST
    key = "vhosts"
    doc = "Virtual hosts to create (names, or {name: ...})."
    top_rank = 1
    keys = VHOST_KEYS
    writer = Writer.MANAGEMENT
    definitions_fields = {
        "name": ((str,), True),
        "limits": ((list, dict), False),
        "metadata": ((dict,), False),
        "description": ((str,), False),
        "tags": ((list, str), False),
        "default_queue_type": ((str,), False),
        "tracing": ((bool,), False),
    }

    def read(self, reader: Reader, raw: Any, line: int) -> VhostSpec | None:
        """A name alone, or an entry with ``name`` (and the settings ``vhost_settings`` reads)."""
        if isinstance(raw, str):
            return VhostSpec(raw, reader.at(line))
        return super().read(reader, raw, line)

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> VhostSpec:
        """The vhost of a checked entry."""
        return VhostSpec(f["name"], reader.at(line))

    def identity(self, spec: VhostSpec) -> Hashable:
        """Its name."""
        return spec.name

    def place(self, spec: VhostSpec) -> tuple[str, str]:
        """A vhost's change is in itself."""
        return (spec.name, spec.name)

    def differences(self, want: VhostSpec, have: VhostSpec) -> list[Difference]:
        """None: a vhost's settings are the access kind ``vhost_settings``'s."""
        return []

    def prune(self, actual: Sequence[VhostSpec], ctx: PruneContext) -> Iterable[Change]:
        """Nothing: prune works inside the vhosts the files name, never deletes one."""
        return ()

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> VhostSpec:
        """A vhost of a definitions file (its settings are ``vhost_settings``'s)."""
        return VhostSpec(f["name"], reader.at(line))

    def write(self, management: ManagementClient, c: Change) -> None:
        """Create the vhost, with its metadata (``vhost_settings``: its limits follow)."""
        management.put_vhost(c.name, getattr(c.desired, "settings", None))

    def undo(self, management: ManagementClient, c: Change) -> None:
        """Delete the vhost this run created."""
        management.delete_vhost(c.name)

    def schema_definitions(self, obj: SchemaObject) -> dict[str, dict[str, Any]]:
        """None: a vhost's schema is inline in the ``vhosts`` list (a name or an object)."""
        return {}

    def schema_property(self, obj: SchemaObject) -> dict[str, Any]:
        """A list of names or objects."""
        return {
            "type": "array",
            "description": "Virtual hosts to create.",
            "items": {"anyOf": [{"type": "string"}, obj(self.keys, "A virtual host.")]},
        }


VHOST = VhostKind()

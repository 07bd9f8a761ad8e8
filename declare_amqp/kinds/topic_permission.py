"""Topic permissions: which routing keys one user may use on one topic exchange of a vhost.

Adding this kind took this module, one registry line and the client methods of its
endpoints (``list_topic_permissions``, ``topic_permissions_of``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import Location
from .._format import Key
from .._plan import Kind
from ._base import _STR
from .permission import GrantKind

if TYPE_CHECKING:
    from .._management import ManagementClient


@dataclass(frozen=True)
class TopicPermissionSpec:
    """Which routing keys one user may use on one topic exchange of one vhost."""

    GROUP: ClassVar[str] = "topic_permissions"
    IN_VHOST: ClassVar[bool] = True

    user: str
    vhost: str
    exchange: str
    write: str = ""
    read: str = ""
    location: Location | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The name a plan shows."""
        return f"{self.user} on {self.exchange}"

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"topic permissions of '{self.user}' on '{self.exchange}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        """Plan details."""
        return f"write /{self.write}/, read /{self.read}/"


class TopicPermissionKind(GrantKind[TopicPermissionSpec]):
    """The ``topic_permissions`` list; written with users in one definitions import."""

    spec = TopicPermissionSpec
    kind = Kind.TOPIC_PERMISSION
    key = "topic_permissions"
    doc = "Topic permissions of users on vhosts."
    schema_name = "topic_permission"
    schema_doc = "Topic permissions of a user."
    plural = "topic permissions"
    compared = ("write", "read")
    regexes = compared
    definitions_section = "topic_permissions"
    keys = (
        Key("user", _STR, "User name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        Key("exchange", _STR, "Topic exchange the permission is about.", required=True),
        Key("write", _STR, "Regex of routing keys the user may publish with.", default=""),
        Key("read", _STR, "Regex of routing keys the user may bind with.", default=""),
    )

    def identity(self, spec: TopicPermissionSpec) -> tuple[Any, ...]:
        """Its vhost, user and exchange."""
        return (spec.vhost, spec.user, spec.exchange)

    def build(self, f: Mapping[str, Any], vhost: str, location: Location) -> TopicPermissionSpec:
        """A topic permissions entry (a regex left out is empty: nothing allowed)."""
        return TopicPermissionSpec(
            f["user"],
            f.get("vhost", vhost),
            f["exchange"],
            f.get("write", ""),
            f.get("read", ""),
            location,
        )

    def to_definitions(self, spec: TopicPermissionSpec) -> dict[str, Any]:
        """The broker's entry (without its vhost)."""
        return {
            "user": spec.user,
            "exchange": spec.exchange,
            "write": spec.write,
            "read": spec.read,
        }

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[TopicPermissionSpec]:
        """The topic permissions in ``vhosts`` (only an administrator may read them: none
        otherwise)."""
        if not admin:
            return []
        in_scope = set(vhosts)
        return [
            TopicPermissionSpec(
                t["user"], t["vhost"], t["exchange"], t.get("write", ""), t.get("read", "")
            )
            for t in management.list_topic_permissions()
            if t["vhost"] in in_scope
        ]

    def delete(self, management: ManagementClient, spec: TopicPermissionSpec) -> None:
        """The HTTP API deletes all of a user's topic permissions in a vhost at once: put
        back the ones on other exchanges."""
        t = spec
        keep = [
            x
            for x in management.topic_permissions_of(t.vhost, t.user)
            if x.get("exchange") != t.exchange
        ]
        management.delete_topic_permissions(t.vhost, t.user, f"deleting {t.label}")
        for x in keep:
            management.put_topic_permission(
                t.vhost, t.user, x["exchange"], x.get("write", ""), x.get("read", "")
            )


TOPIC_PERMISSION = TopicPermissionKind()

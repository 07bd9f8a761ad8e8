"""Topic permissions: which routing keys one user may use on one topic exchange of a vhost.

Adding this kind took this module, one registry line and the client methods of its
endpoints (``list_topic_permissions``, ``topic_permissions_of``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import Location, Problem
from .._format import Key
from .._plan import CREATE, DELETE, UPDATE, Change, Kind
from ._base import _STR, AccessKind, PlanContext
from .permission import missing_user_problems, regex_problems

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


class TopicPermissionKind(AccessKind[TopicPermissionSpec]):
    """The ``topic_permissions`` list; written with users in one definitions import."""

    spec = TopicPermissionSpec
    kind = Kind.TOPIC_PERMISSION
    key = "topic_permissions"
    doc = "Topic permissions of users on vhosts."
    schema_name = "topic_permission"
    schema_doc = "Topic permissions of a user."
    plural = "topic permissions"
    admin_to_read = True
    compared = ("write", "read")
    definitions_section = "topic_permissions"
    bulk = True
    checked_on_broker = True
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

    def problems(self, spec: TopicPermissionSpec) -> list[Problem]:
        """``write`` and ``read`` must be regular expressions."""
        return regex_problems(spec, ("write", "read"))

    def refusals(
        self, specs: Sequence[TopicPermissionSpec], *, users: set[str], version: str
    ) -> list[Problem]:
        """Grants to users that will not exist."""
        return missing_user_problems(specs, users)

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

    def prunable(self, spec: TopicPermissionSpec, ctx: PlanContext) -> bool:
        """Never the connecting user's own topic permissions."""
        return spec.user != ctx.connecting_user

    def bulk_entry(self, c: Change, env: Mapping[str, str] | None) -> dict[str, Any] | None:
        """Its entry of the run's definitions import."""
        t = c.desired
        assert isinstance(t, TopicPermissionSpec)
        return {"user": t.user, "vhost": t.vhost, **self.to_definitions(t)}

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """Creates and updates are in the definitions import; a delete puts back the user's other
        topic permissions in the vhost (the API deletes them all at once)."""
        if c.action in (CREATE, UPDATE):
            return True  # written by the definitions import (bulk_entry)
        if c.action != DELETE:
            return False
        t = c.spec
        assert isinstance(t, TopicPermissionSpec)
        # The HTTP API deletes all of a user's topic permissions in a vhost at once: put
        # back the ones on other exchanges.
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
        return True

    def export_entry(self, spec: TopicPermissionSpec, with_vhost: bool) -> dict[str, Any]:
        """As a topology entry; with several vhosts, its vhost last."""
        entry = self.to_definitions(spec)
        if with_vhost:
            entry["vhost"] = spec.vhost
        return entry


TOPIC_PERMISSION = TopicPermissionKind()

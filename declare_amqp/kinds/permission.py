"""Permissions: what one user may configure, write and read in one vhost."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from .._errors import Location, Problem
from .._format import Key
from .._model import Access, AccessObject
from .._plan import CREATE, DELETE, UPDATE, Change, Kind
from ._base import _STR, AccessKind, PlanContext

if TYPE_CHECKING:
    from .._management import ManagementClient


@dataclass(frozen=True)
class PermissionSpec:
    """What one user may configure, write and read in one vhost."""

    GROUP: ClassVar[str] = "permissions"
    IN_VHOST: ClassVar[bool] = True

    user: str
    vhost: str
    configure: str = ""
    write: str = ""
    read: str = ""
    location: Location | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The name a plan shows: the user's."""
        return self.user

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"permissions of '{self.user}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        """Plan details."""
        return f"configure /{self.configure}/, write /{self.write}/, read /{self.read}/"


def regex_problems(spec: Any, keys: Sequence[str]) -> list[Problem]:
    """Each of ``keys`` of ``spec`` that is no regular expression."""
    problems = []
    for key in keys:
        try:
            re.compile(getattr(spec, key))
        except re.error as exc:
            problems.append(
                Problem(
                    f"'{key}' is not a valid regular expression: {exc}", spec.location, spec.label
                )
            )
    return problems


def missing_user_problems(specs: Sequence[Any], users: set[str]) -> list[Problem]:
    """Grants to users that will not exist (the broker answers 400 ``no_such_user``)."""
    return [
        Problem(
            f"user '{p.user}' does not exist (not on the broker, and no file creates "
            "it): the broker refuses permissions of a missing user",
            p.location,
            p.label,
        )
        for p in specs
        if p.user not in users
    ]


class Grant(AccessObject, Protocol):
    """A user's grant in a vhost (permissions, topic permissions)."""

    @property
    def user(self) -> str:
        """Whose grant it is."""


G = TypeVar("G", bound=Grant)


class GrantKind(AccessKind[G]):
    """What permissions and topic permissions share: a user's grant in a vhost, regexes
    checked, refused for a missing user, read only by an administrator, created and updated
    in the definitions import, never pruned from the connecting user."""

    admin_to_read = True
    bulk = True
    checked_on_broker = True
    regexes: tuple[str, ...] = ()

    def problems(self, spec: G) -> list[Problem]:
        """Each of ``regexes`` must be a regular expression."""
        return regex_problems(spec, self.regexes)

    def refusals(self, specs: Sequence[G], *, users: set[str], version: str) -> list[Problem]:
        """Grants to users that will not exist."""
        return missing_user_problems(specs, users)

    def prunable(self, spec: G, ctx: PlanContext) -> bool:
        """Never the connecting user's own grants."""
        return spec.user != ctx.connecting_user

    def bulk_entry(self, c: Change, env: Mapping[str, str] | None) -> dict[str, Any] | None:
        """Its entry of the run's definitions import."""
        spec = c.desired
        assert isinstance(spec, self.spec)
        return {"vhost": spec.vhost, **self.to_definitions(spec)}

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """Creates and updates are in the definitions import; a delete is ``delete``'s."""
        if c.action in (CREATE, UPDATE):
            return True
        if c.action != DELETE:
            return False
        spec = c.spec
        assert isinstance(spec, self.spec)
        self.delete(management, spec)
        return True

    def delete(self, management: ManagementClient, spec: G) -> None:
        """Remove the broker's grant ``spec``."""
        raise NotImplementedError

    def export_entry(self, spec: G, with_vhost: bool) -> dict[str, Any]:
        """As a topology entry; with several vhosts, its vhost last."""
        entry = self.to_definitions(spec)
        if with_vhost:
            entry["vhost"] = spec.vhost
        return entry


class PermissionKind(GrantKind[PermissionSpec]):
    """The ``permissions`` list; written with users in one definitions import."""

    spec = PermissionSpec
    kind = Kind.PERMISSION
    key = "permissions"
    doc = "Permissions of users on vhosts."
    schema_name = "permission"
    schema_doc = "Permissions of a user on a vhost."
    plural = "permissions"
    compared = ("configure", "write", "read")
    regexes = compared
    definitions_section = "permissions"
    keys = (
        Key("user", _STR, "User name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        Key("configure", _STR, "Regex of names the user may declare and delete.", default=""),
        Key("write", _STR, "Regex of names the user may publish to / bind from.", default=""),
        Key("read", _STR, "Regex of names the user may consume from / bind to.", default=""),
    )

    def identity(self, spec: PermissionSpec) -> tuple[Any, ...]:
        """Its vhost and user."""
        return (spec.vhost, spec.user)

    def build(self, f: Mapping[str, Any], vhost: str, location: Location) -> PermissionSpec:
        """A permissions entry (a regex left out is empty: nothing allowed)."""
        return PermissionSpec(
            f["user"],
            f.get("vhost", vhost),
            f.get("configure", ""),
            f.get("write", ""),
            f.get("read", ""),
            location,
        )

    def to_definitions(self, spec: PermissionSpec) -> dict[str, Any]:
        """The broker's entry (without its vhost)."""
        return {
            "user": spec.user,
            "configure": spec.configure,
            "write": spec.write,
            "read": spec.read,
        }

    def wanted(self, desired: Access) -> bool:
        """Also read for the users: user prune's scope is decided by their permissions."""
        return super().wanted(desired) or bool(desired.group("users")) or "users" in desired.managed

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[PermissionSpec]:
        """Every user's permissions (only an administrator may read them: none otherwise)."""
        if not admin:
            return []
        return [
            PermissionSpec(
                p["user"], p["vhost"], p.get("configure", ""), p.get("write", ""), p.get("read", "")
            )
            for p in management.list_permissions()
        ]

    def delete(self, management: ManagementClient, spec: PermissionSpec) -> None:
        """One request: the user's permissions in the vhost."""
        management.delete_permission(spec.vhost, spec.user, f"deleting {spec.label}")


PERMISSION = PermissionKind()

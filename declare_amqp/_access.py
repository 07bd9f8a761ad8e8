"""The engine of the access kinds: users, permissions, vhost settings, operator policies,
federation upstreams, shovels (``kinds.ACCESS_KINDS``, one module per kind).

Loading, validation, reading the broker, planning, applying and export loop over the
registry and call each kind's hooks (``kinds._base.AccessKind``); nothing here knows a
kind's fields. What is here is the part no kind owns: who the connecting user is and what
its tags allow, the order of a plan's changes, and the one definitions import that writes
users and their permissions together.

Secrets: passwords and URIs with a password are given by reference (see ``kinds.user`` and
``kinds.parameters``); they are read when a plan is made and when it is applied, and never
kept in a ``Change`` or a ``Plan``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._errors import DeclareAmqpError, Problem, TopologyError
from ._errors import dedupe as first_of_each
from ._model import Access, Topology
from ._plan import CREATE, UPDATE, Change, Plan, apply_position
from ._warnings import sort_problems
from .kinds import ACCESS_KINDS, ACCESS_TOP_KEYS, COMPONENTS, TOPOLOGY_KINDS, kind_of
from .kinds._base import ADMINISTRATOR, PlanContext, Reader, tag_tuple
from .kinds.parameters import export_warnings, exportable
from .kinds.permission import PERMISSION
from .kinds.user import USER, PasswordUnavailable
from .kinds.vhost_settings import VHOST_SETTINGS, VhostSettings, describe_settings, without_defaults
from .kinds.vhost_settings import has_followup as has_followup

if TYPE_CHECKING:
    from ._management import ManagementClient
    from ._model import Topology

# Topology kinds whose writes need a tag (the access kinds name theirs: ``AccessKind.tag``).
_TOPOLOGY_TAGS = {"policy": "policymaker"}
_TOPOLOGY_PLURALS = {"policy": "policies", "vhost": "vhosts"}

# ------------------------------------------------------------------ loading


def read_access(reader: Reader, doc: Mapping[str, Any]) -> Access:
    """The access objects of one parsed file; problems go to ``reader`` (the loader's)."""
    if not isinstance(doc, Mapping):
        return Access()
    specs = [spec for kind in ACCESS_KINDS for spec in kind.read_document(reader, doc)]
    return Access.holding(specs, managed=(k.name for k in ACCESS_TOP_KEYS if k.name in doc))


def merge_access(parts: Iterable[Access]) -> tuple[Access, list[Problem]]:
    """All files' access objects; the same object twice must be declared identically."""
    parts = list(parts)
    problems: list[Problem] = []
    specs = [
        spec
        for kind in ACCESS_KINDS
        for spec in first_of_each(
            (s for p in parts for s in kind.specs(p)), kind.identity, problems
        )
    ]
    return Access.holding(specs, managed=(k for p in parts for k in p.managed)), problems


def validate_access(access: Access) -> list[Problem]:
    """What the files alone can tell (regexes that do not compile, operator policy keys)."""
    return [p for kind in ACCESS_KINDS for spec in kind.specs(access) for p in kind.problems(spec)]


def refusal_problems(access: Access, *, users: Iterable[str], version: str) -> list[Problem]:
    """What the broker would refuse of the access objects, found before anything is written
    (the access objects are written after the topology: a refusal there would leave the
    exchanges and queues written and the rest not).

    ``users``: those that will exist when the access objects are written (the broker's,
    and the ones the files create). Measured on RabbitMQ 3.10.8 and 4.0.5: permissions and
    topic permissions of a missing user are refused (400 ``no_such_user``); operator
    policies' keys by version (``kinds.operator_policy``). A missing vhost (refused too) is
    ``_validate.check_references``'s, which names the first object in it.
    """
    known = set(users)
    return [
        p
        for kind in ACCESS_KINDS
        for p in kind.refusals(kind.specs(access), users=known, version=version)
    ]


# ------------------------------------------------------------------ the broker's side


class InsufficientPrivileges(DeclareAmqpError):
    """The connecting user lacks a tag or a permission that the files need."""

    def __init__(self, user: str, tags: Sequence[str], problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        shown = ", ".join(tags) or "none"
        super().__init__(
            f"user '{user}' (tags: {shown}) may not do what the files need; nothing was "
            "changed:\n" + "\n".join(f"  {p}" for p in self.problems)
        )


def whoami(management: ManagementClient) -> tuple[str, tuple[str, ...]]:
    """The connecting user's name and tags."""
    data = management.whoami()
    return str(data.get("name", management.address.user)), tag_tuple(data.get("tags"))


def read_broker_access(
    management: ManagementClient, desired: Access, vhosts: Sequence[str], admin: bool
) -> Access:
    """What the broker holds of the kinds the files use: one request per kind.

    Users and permissions can only be read by an ``administrator``; without the tag they
    are not read (the privilege check names what needs it).
    """
    specs = [
        spec
        for kind in ACCESS_KINDS
        if kind.wanted(desired)
        for spec in kind.read_broker(management, vhosts, admin)
    ]
    return Access.holding(specs)


def read_broker_kinds(
    management: ManagementClient, vhosts: Sequence[str], actual: Topology
) -> Topology:
    """``actual`` (what ``ManagementClient.read`` found) with the broker's objects of the
    topology kinds that read themselves (``TopologyKind.read_broker``: a kind registered
    besides the five built in), each by its client method."""
    found: dict[str, Sequence[Any]] = {}
    for kind in TOPOLOGY_KINDS:
        specs = kind.read_broker(management, vhosts)
        if specs is not None:
            found[kind.key] = specs
    return actual.holding(**found) if found else actual


def _users(management: ManagementClient) -> list[str]:
    """The broker's user names."""
    return [u["name"] for u in management.list_users(names_only=True)]


def _needed_tag(c: Change) -> str | None:
    if c.kind in _TOPOLOGY_TAGS:
        return _TOPOLOGY_TAGS[c.kind]
    found = next((k for k in ACCESS_KINDS if k.kind == c.kind), None)
    return found.tag if found is not None else None


def _kind_plural(kind: str) -> str:
    found = next((k for k in ACCESS_KINDS if k.kind == kind and k.top_level), None)
    return found.plural if found is not None else _TOPOLOGY_PLURALS.get(kind, kind + "s")


def privilege_problems(
    changes: Iterable[Change], user: str, tags: Sequence[str], *, reading: bool = False
) -> list[Problem]:
    """Each change the connecting user's tags do not allow, with the tag it needs."""
    problems: list[Problem] = []
    have = set(tags)
    if ADMINISTRATOR in have:
        return problems
    for c in changes:
        spec = c.desired if c.desired is not None else c.actual
        location = getattr(spec, "location", None)
        label = getattr(spec, "label", f"{c.kind} '{c.name}'")
        need = _needed_tag(c)
        if need is None or need in have or (need == "policymaker" and ADMINISTRATOR in have):
            continue
        verb = {
            "create": "creating",
            "update": "changing",
            "delete": "deleting",
            "conflict": "changing",
            "refuse": "deleting",
        }[c.action]
        what = (
            "the metadata and limits of vhosts"
            if c.kind == "vhost" and c.action != "create"
            else _kind_plural(c.kind)
        )
        problems.append(
            Problem(
                f"{verb} {what} needs the '{need}' tag, which user '{user}' lacks", location, label
            )
        )
    return problems


def unreadable_problems(desired: Access, user: str) -> list[Problem]:
    """What a user without the administrator tag cannot even read to plan."""
    return [
        Problem(
            f"reading and writing {kind.plural} needs the '{ADMINISTRATOR}' tag, "
            f"which user '{user}' lacks",
            spec.location,
            spec.label,
        )
        for kind in ACCESS_KINDS
        if kind.admin_to_read
        for spec in kind.specs(desired)
    ]


# ------------------------------------------------------------------ planning


def plan_access(
    desired: Access,
    actual: Access,
    *,
    scope: Sequence[str],
    prune: bool,
    connecting_user: str,
    new_vhosts: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[list[Change], list[Problem]]:
    """The changes that make the broker's access objects match the files: each kind's
    creates, updates and (with prune) deletes, then the users pruned with their
    permissions' scope.

    Returns the changes and warnings (what prune leaves alone, and why). Raises
    PasswordUnavailable when a password reference cannot be read.
    """
    ctx = PlanContext(scope, prune, connecting_user, desired.managed, frozenset(new_vhosts), env)
    changes: list[Change] = []
    warnings: list[Problem] = []
    for kind in ACCESS_KINDS:
        found, warned = kind.plan(kind.specs(desired), kind.specs(actual), ctx)
        changes += found
        warnings += warned
    found, warned = USER.prune(
        USER.specs(desired), USER.specs(actual), PERMISSION.specs(actual), ctx
    )
    return changes + found, warnings + warned


def splice(
    the_plan: Plan,
    access_changes: Sequence[Change],
    settings: Iterable[VhostSettings] = (),
    warnings: Sequence[Problem] = (),
) -> Plan:
    """The plan with the access changes in apply order (``_plan.PHASES``): the topology's
    writes first (vhosts are created there, with their metadata), then vhost limits, users
    and permissions; the deletes of users and permissions last."""
    by_name = {v.name: v for v in settings}
    topo = [
        replace(c, desired=by_name[c.name])
        if c.kind == "vhost" and c.action == CREATE and c.name in by_name
        else c
        for c in the_plan.changes
    ]
    return replace(
        the_plan,
        changes=tuple(sorted([*topo, *access_changes], key=apply_position)),
        warnings=(*the_plan.warnings, *warnings),
    )


def _refusals(management: ManagementClient, access: Access, actual: Access) -> list[Problem]:
    """``refusal_problems`` against the users there will be (the broker's are listed
    only when a kind checks them)."""
    if not any(kind.specs(access) for kind in ACCESS_KINDS if kind.checked_on_broker):
        return []
    broker_users = [u.name for u in USER.specs(actual)] or _users(management)
    users = [*broker_users, *(u.name for u in USER.specs(access) if not u.absent)]
    return refusal_problems(access, users=users, version=management.version)


def access_plan(
    management: ManagementClient,
    desired: Topology,
    the_plan: Plan,
    *,
    prune: bool,
    env: Mapping[str, str] | None = None,
) -> Plan:
    """``the_plan`` (the topology's) with the access objects planned into it.

    A user without the administrator tag cannot read users or permissions: then the files'
    users and permissions are refused here, before anything is written, naming each one.
    What else the user's tags do not allow is added as warnings (``apply`` refuses it).
    """
    access = desired.access or Access()
    user, tags = whoami(management)
    admin = ADMINISTRATOR in tags
    unreadable = unreadable_problems(access, user)
    if not admin and unreadable:
        raise InsufficientPrivileges(user, tags, unreadable)
    changes: list[Change] = []
    warnings: list[Problem] = []
    if access.size or access.managed:
        missing = [
            p for comp in COMPONENTS for p in comp.missing_plugin(management, comp.specs(access))
        ]
        if missing:
            raise TopologyError(missing)
        actual = read_broker_access(management, access, the_plan.vhosts, admin)
        new_vhosts = [c.name for c in the_plan.changes if c.kind == "vhost" and c.action == CREATE]
        refused = _refusals(management, access, actual) if admin else []
        if refused:
            raise TopologyError(sort_problems(refused))
        try:
            changes, warnings = plan_access(
                access,
                actual,
                scope=the_plan.vhosts,
                prune=prune,
                connecting_user=user,
                new_vhosts=new_vhosts,
                env=env,
            )
        except PasswordUnavailable as exc:
            raise TopologyError([exc.problem]) from None
    result = splice(the_plan, changes, VHOST_SETTINGS.specs(access), warnings)
    refused = privilege_problems(result.changes, user, tags)
    if refused:
        result = replace(
            result,
            warnings=(
                *result.warnings,
                *(replace(p, message="apply would be refused: " + p.message) for p in refused),
            ),
        )
    return result


def check_privileges(management: ManagementClient, the_plan: Plan) -> None:
    """Raise InsufficientPrivileges, before any write, when the plan needs a tag the
    connecting user lacks."""
    user, tags = whoami(management)
    problems = privilege_problems(the_plan.writes, user, tags)
    if problems:
        raise InsufficientPrivileges(user, tags, problems)


# ------------------------------------------------------------------ applying


def apply_access(
    management: ManagementClient,
    changes: Sequence[Change],
    env: Mapping[str, str] | None = None,
    written: list[Change] | None = None,
) -> list[Change]:
    """Write the access changes (HTTP, in the order given) and return those written; vhosts
    themselves are created with the topology (``_apply``). Each is added to ``written`` as
    soon as it is on the broker, so a refusal part-way leaves there what the rollback must
    undo."""
    written = [] if written is None else written
    imported = _import_in_bulk(
        management, [c for c in changes if c.action in (CREATE, UPDATE)], env
    )
    written.extend(imported)
    seen = {id(c) for c in imported}
    for c in changes:
        if kind_of(c.kind).write(management, c, env) and id(c) not in seen:
            written.append(c)
    return written


def _import_in_bulk(
    management: ManagementClient, changes: Sequence[Change], env: Mapping[str, str] | None
) -> list[Change]:
    """The creates and updates of the ``bulk`` kinds (users, permissions, topic
    permissions) in one ``POST /api/definitions`` (500 users and their permissions: 0.4 s
    instead of ~5 s one by one). Passwords are hashed by the user kind (RabbitMQ's scheme,
    a fresh salt), so none travels."""
    bulk = [k for k in ACCESS_KINDS if k.bulk]
    body: dict[str, list[dict[str, Any]]] = {str(k.definitions_section): [] for k in bulk}
    imported: list[Change] = []
    for c in changes:
        kind = kind_of(c.kind)
        if kind.bulk and isinstance(c.desired, kind.spec):
            entry = kind.bulk_entry(c, env)
            if entry is not None:
                body[str(kind.definitions_section)].append(entry)
                imported.append(c)
    if not any(body.values()):
        return []
    counts = [f"{len(body[str(k.definitions_section)])} {k.plural}" for k in bulk]
    management.import_definitions(body, "writing " + ", ".join(counts[:-1]) + " and " + counts[-1])
    return imported


# ------------------------------------------------------------------ export


def read_for_export(
    management: ManagementClient, vhosts: Sequence[str]
) -> tuple[Access | None, list[Problem]]:
    """The access objects of the exported vhosts, and warnings for the user.

    Read: their permissions and topic permissions, the users that have permissions there,
    operator policies, vhost metadata and limits (these need the administrator tag), and
    federation upstreams and shovels (URIs with a password as references to environment
    variables, which the warnings name: see ``kinds.parameters.exportable``). The access
    part is None when nothing of it can be read.
    """
    raw = [entry for comp in COMPONENTS for entry in comp.exportable(management, vhosts)]
    parameters, problems = exportable(raw)
    warnings = problems + export_warnings(parameters)
    _, tags = whoami(management)
    if ADMINISTRATOR not in tags:
        return (Access.holding(parameters) if parameters else None), warnings
    wanted = Access(
        vhost_settings=(VhostSettings(v) for v in vhosts),
        managed=(k.key for k in ACCESS_KINDS if k.top_level and k not in COMPONENTS),
    )
    found = read_broker_access(management, wanted, vhosts, admin=True)
    in_scope = set(vhosts)
    permissions = [p for p in PERMISSION.specs(found) if p.vhost in in_scope]
    names = {p.user for p in permissions}
    users = [u for u in USER.specs(found) if u.name in names]
    others = [s for k in ACCESS_KINDS if k not in (USER, PERMISSION) for s in k.specs(found)]
    return Access.holding([*users, *permissions, *others, *parameters]), warnings


def access_document(access: Access, vhosts: Sequence[str]) -> dict[str, Any]:
    """The access objects as entries of the YAML format (users with their hashes)."""
    doc: dict[str, Any] = {}
    # vhosts that carry metadata or limits become mappings (the others stay names)
    described = {
        v.name: describe_settings(without_defaults(v)) for v in VHOST_SETTINGS.specs(access)
    }
    if any(described.values()):
        doc["vhosts"] = [
            {"name": name, **described[name]} if described.get(name) else name for name in vhosts
        ]
    for kind in ACCESS_KINDS:
        if not kind.top_level:
            continue
        ordered = sorted(kind.specs(access), key=kind.definitions_order)
        items = [kind.export_entry(spec, with_vhost=len(vhosts) != 1) for spec in ordered]
        if items:
            doc[kind.key] = items
    return doc

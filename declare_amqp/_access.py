"""Who may do what: users, permissions, topic permissions, vhost metadata and limits.

Model, loading, validation, planning and applying of the access objects, apart from the
topology modules so that both can change without stepping on each other.

Secrets: a user's password is given only by reference (``password_env``, ``password_file``)
or as a ``password_hash``. The referenced password is read when a plan is made (to detect
drift by re-hashing it with the salt of the stored hash) and again when it is applied; it is
never kept in the model, a ``Change`` or a ``Plan``, so no output can show it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, cast

from ._dynamic import (
    FEDERATION,
    SHOVEL,
    ParameterSpec,
    apply_dynamic,
    document_entry,
    export_parameters,
    export_warnings,
    missing_plugins,
    plan_dynamic,
    read_broker,
    read_dynamic,
)
from ._errors import DeclareAmqpError, Location, Problem
from ._errors import dedupe as first_of_each
from ._fit import policy_value_problem
from ._format import ACCESS_TOP_KEYS, VHOST_SETTING_KEYS, Key
from ._model import PolicySpec
from ._versions import added_in, parse_version, show_version
from ._warnings import sort_problems

if TYPE_CHECKING:
    from ._management import ManagementClient
    from ._model import Topology
    from ._plan import Action, Change, Kind, Plan

HASHING_ALGORITHMS = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
DEFAULT_HASHING = "rabbit_password_hashing_sha256"
USERS_SCOPE = ""  # the "vhost" of cluster-wide changes (users)
ADMINISTRATOR = "administrator"

_STR, _INT, _LIST, _BOOL = (str,), (int,), (list,), (bool,)

USER_KEYS = (
    Key("name", _STR, "User name.", required=True),
    Key("tags", _LIST, "Tags: administrator, monitoring, policymaker, management, ..."),
    Key("password_env", _STR, "Environment variable that holds the password."),
    Key("password_file", _STR, "File whose content (trailing newline removed) is the password."),
    Key("password_hash", _STR, "The broker's password hash (base64 of salt + digest)."),
    Key(
        "hashing_algorithm",
        _STR,
        "Algorithm of password_hash.",
        default=DEFAULT_HASHING,
        choices=tuple(HASHING_ALGORITHMS),
    ),
    Key("max_connections", _INT, "Limit of connections of this user (-1: none).", minimum=-1),
    Key("max_channels", _INT, "Limit of channels of this user (-1: none).", minimum=-1),
    Key("absent", _BOOL, "The user must not exist: deleted (also guest).", default=False),
)

PERMISSION_KEYS = (
    Key("user", _STR, "User name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("configure", _STR, "Regex of names the user may declare and delete.", default=""),
    Key("write", _STR, "Regex of names the user may publish to / bind from.", default=""),
    Key("read", _STR, "Regex of names the user may consume from / bind to.", default=""),
)

TOPIC_PERMISSION_KEYS = (
    Key("user", _STR, "User name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("exchange", _STR, "Topic exchange the permission is about.", required=True),
    Key("write", _STR, "Regex of routing keys the user may publish with.", default=""),
    Key("read", _STR, "Regex of routing keys the user may bind with.", default=""),
)

# The keys the broker allows in an operator policy's definition (rabbit_policies).
OPERATOR_POLICY_DEFINITION_KEYS = frozenset(
    {
        "expires",
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "delivery-limit",
        "overflow",
        "target-group-size",
    }
)

# What RabbitMQ versions before these refuse in an operator policy (rows of
# _versions.ADDED_EDGES, with their sources); for 3.12.x before the patch that brought overflow
# the broker's own answer stands.
OPERATOR_POLICY_KEYS_SINCE = {
    "overflow": added_in("operator-policy-overflow"),
    "target-group-size": added_in("operator-policy-target-group-size"),
}
QUEUE_TYPE_APPLY_TO = ("classic_queues", "quorum_queues", "streams")
QUEUE_TYPE_APPLY_TO_SINCE = added_in("queue-type-apply-to")
NO_DELIVERY_LIMIT_SINCE = added_in("no-delivery-limit")  # delivery-limit -1, operator policy

OPERATOR_POLICY_KEYS = (
    Key("name", _STR, "Operator policy name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("pattern", _STR, "Regular expression matched against queue names.", required=True),
    Key(
        "apply_to",
        _STR,
        "Which queues it applies to.",
        default="queues",
        choices=("queues", "classic_queues", "quorum_queues", "streams"),
    ),
    Key(
        "definition",
        (dict,),
        "Limits: " + ", ".join(sorted(OPERATOR_POLICY_DEFINITION_KEYS)) + ".",
        required=True,
    ),
    Key("priority", _INT, "Higher wins when several operator policies match.", default=0),
)


@dataclass(frozen=True)
class UserSpec:
    """A user. The password is a reference (env/file) or a hash, never the password itself."""

    name: str
    tags: tuple[str, ...] = ()
    password_env: str | None = None
    password_file: str | None = None
    password_hash: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)  # literal: a warning, never shown
    hashing_algorithm: str | None = None
    max_connections: int | None = None
    max_channels: int | None = None
    absent: bool = False
    location: Location | None = field(default=None, compare=False)

    @property
    def vhost(self) -> str:
        return USERS_SCOPE

    @property
    def has_password(self) -> bool:
        return bool(self.password_env or self.password_file or self.password_hash or self.password)

    @property
    def shown(self) -> str:
        """Plan details: tags, where the password comes from (never the password), limits."""
        parts = [f"tags [{', '.join(self.tags)}]"]
        if self.password_env:
            parts.append(f"password from ${self.password_env}")
        elif self.password_file:
            parts.append(f"password from {self.password_file}")
        elif self.password_hash:
            parts.append(f"password hash ({self.hashing_algorithm})")
        elif self.password:
            parts.append("password given in the file (hashed before it is sent)")
        else:
            parts.append("no password (x509 / EXTERNAL only)")
        parts += [
            f"{f}={getattr(self, f)}"
            for f in ("max_connections", "max_channels")
            if getattr(self, f) is not None
        ]
        return ", ".join(parts)

    @property
    def label(self) -> str:
        return f"user '{self.name}'"


@dataclass(frozen=True)
class PermissionSpec:
    """What one user may configure, write and read in one vhost."""

    user: str
    vhost: str
    configure: str = ""
    write: str = ""
    read: str = ""
    location: Location | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.user

    @property
    def label(self) -> str:
        return f"permissions of '{self.user}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        return f"configure /{self.configure}/, write /{self.write}/, read /{self.read}/"


@dataclass(frozen=True)
class TopicPermissionSpec:
    """Which routing keys one user may use on one topic exchange of one vhost."""

    user: str
    vhost: str
    exchange: str
    write: str = ""
    read: str = ""
    location: Location | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.user} on {self.exchange}"

    @property
    def label(self) -> str:
        return f"topic permissions of '{self.user}' on '{self.exchange}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        return f"write /{self.write}/, read /{self.read}/"


@dataclass(frozen=True)
class VhostSettings:
    """A vhost's metadata and limits; None means the files do not manage that setting."""

    name: str
    description: str | None = None
    tags: tuple[str, ...] | None = None
    default_queue_type: str | None = None
    max_connections: int | None = None
    max_queues: int | None = None
    location: Location | None = field(default=None, compare=False)

    @property
    def vhost(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return f"vhost '{self.name}'"

    @property
    def shown(self) -> str:
        return ", ".join(f"{k}={_plain(v)!r}" for k, v in describe_settings(self).items())

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


@dataclass(frozen=True)
class Access:
    """The access objects of a set of files (or of a broker)."""

    users: tuple[UserSpec, ...] = ()
    permissions: tuple[PermissionSpec, ...] = ()
    topic_permissions: tuple[TopicPermissionSpec, ...] = ()
    vhost_settings: tuple[VhostSettings, ...] = ()
    operator_policies: tuple[OperatorPolicySpec, ...] = ()
    parameters: tuple[ParameterSpec, ...] = ()  # federation upstreams and shovels
    # Which top-level keys the files use: prune covers only those kinds.
    managed: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return (
            len(self.users)
            + len(self.permissions)
            + len(self.topic_permissions)
            + len(self.vhost_settings)
            + len(self.operator_policies)
            + len(self.parameters)
        )

    def vhost_names(self) -> list[str]:
        return list(
            dict.fromkeys(
                [
                    *(p.vhost for p in self.permissions),
                    *(t.vhost for t in self.topic_permissions),
                    *(o.vhost for o in self.operator_policies),
                    *(d.vhost for d in self.parameters),
                ]
            )
        )


@dataclass(frozen=True)
class OperatorPolicySpec(PolicySpec):
    """An operator policy: limits set by the operator that users' policies cannot lift."""

    apply_to: str = "queues"

    @property
    def label(self) -> str:
        return f"operator policy '{self.name}' (vhost {self.vhost})"

    @property
    def shown(self) -> str:
        definition = ", ".join(f"{k}={v}" for k, v in sorted(self.definition.items()))
        return f"/{self.pattern}/ on {self.apply_to}, priority {self.priority}: {definition}"


AccessSpec = (
    UserSpec
    | PermissionSpec
    | TopicPermissionSpec
    | VhostSettings
    | OperatorPolicySpec
    | ParameterSpec
)


# ------------------------------------------------------------------ loading


def read_access(reader: Any, doc: Mapping[str, Any]) -> Access:
    """The access objects of one parsed file; problems go to ``reader`` (the loader's)."""
    if not isinstance(doc, Mapping):
        return Access()
    users = []
    for raw, line in reader.entries(doc, "users"):
        user = _read_user(reader, raw, line)
        if user is not None:
            users.append(user)
    permissions = []
    for raw, line in reader.entries(doc, "permissions"):
        f = reader.fields(raw, PERMISSION_KEYS, "permission", line)
        if f is not None:
            permissions.append(
                PermissionSpec(
                    f["user"],
                    f.get("vhost", reader.vhost),
                    f.get("configure", ""),
                    f.get("write", ""),
                    f.get("read", ""),
                    reader.at(line),
                )
            )
    topic = []
    for raw, line in reader.entries(doc, "topic_permissions"):
        f = reader.fields(raw, TOPIC_PERMISSION_KEYS, "topic permission", line)
        if f is not None:
            topic.append(
                TopicPermissionSpec(
                    f["user"],
                    f.get("vhost", reader.vhost),
                    f["exchange"],
                    f.get("write", ""),
                    f.get("read", ""),
                    reader.at(line),
                )
            )
    operator = []
    for raw, line in reader.entries(doc, "operator_policies"):
        f = reader.fields(raw, OPERATOR_POLICY_KEYS, "operator policy", line)
        if f is not None:
            operator.append(
                OperatorPolicySpec(
                    f.get("vhost", reader.vhost),
                    f["name"],
                    f["pattern"],
                    dict(f["definition"]),
                    f.get("apply_to", "queues"),
                    f.get("priority", 0),
                    reader.at(line),
                )
            )
    settings = []
    for raw, line in reader.entries(doc, "vhosts"):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            continue  # the loader reports what is wrong with it
        values = {k.name: raw[k.name] for k in VHOST_SETTING_KEYS if raw.get(k.name) is not None}
        if "tags" in values:
            values["tags"] = _tags(reader, values["tags"], line, f"vhost '{raw['name']}'")
        if values:
            settings.append(VhostSettings(raw["name"], location=reader.at(line), **values))
    managed = frozenset(k.name for k in ACCESS_TOP_KEYS if k.name in doc)
    return Access(
        tuple(users),
        tuple(permissions),
        tuple(topic),
        tuple(settings),
        tuple(operator),
        tuple(read_dynamic(reader, doc)),
        managed,
    )


def _tags(reader: Any, value: Any, line: int, label: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        reader.problem(line, "'tags' must be a list of strings", label)
        return ()
    return tuple(sorted(set(value)))


def _read_user(reader: Any, raw: Any, line: int) -> UserSpec | None:
    literal: str | None = None
    if isinstance(raw, dict) and "password" in raw:
        # Accepted, as the broker's import does, with a warning; never echoed. It is hashed
        # (a fresh salt) before it is sent, like a password_env's value.
        name = raw.get("name")
        label = f"user '{name}'" if isinstance(name, str) else "user"
        key_line = getattr(raw, "key_lines", {}).get("password", line)
        literal = raw["password"]
        if not isinstance(literal, str) or not literal:
            reader.problem(key_line, "'password' must be a non-empty string (not shown)", label)
            literal = None
        else:
            reader.warn(
                key_line,
                "a literal password in a topology file (it would be in version control): "
                "accepted and hashed before it is sent, but prefer password_env, "
                "password_file, or password_hash with hashing_algorithm (--strict refuses it)",
                label,
            )
        rest: Any = type(raw)({k: v for k, v in raw.items() if k != "password"})
        rest.line, rest.key_lines = getattr(raw, "line", line), getattr(raw, "key_lines", {})
        raw = rest
    f = reader.fields(raw, USER_KEYS, "user", line)
    if f is None:
        return None
    label = f"user '{f['name']}'"
    given = [k for k in ("password_env", "password_file", "password_hash") if k in f]
    given += ["password"] if literal is not None else []
    if len(given) > 1:
        reader.problem(line, f"give one of {', '.join(given)}, not several", label)
    if "hashing_algorithm" in f and "password_hash" not in f:
        reader.problem(line, "hashing_algorithm goes with password_hash", label)
    if "password_hash" in f and not _hash_well_formed(f["password_hash"]):
        reader.problem(
            line,
            "password_hash is not a base64 salt + digest (as the broker's "
            "`GET /api/users` or an export shows it)",
            label,
        )
    return UserSpec(
        name=f["name"],
        tags=_tags(reader, f.get("tags", []), line, label),
        password_env=f.get("password_env"),
        password_file=f.get("password_file"),
        password_hash=f.get("password_hash"),
        password=literal,
        hashing_algorithm=(
            f.get("hashing_algorithm", DEFAULT_HASHING) if "password_hash" in f else None
        ),
        max_connections=f.get("max_connections"),
        max_channels=f.get("max_channels"),
        absent=f.get("absent", False),
        location=reader.at(line),
    )


def _hash_well_formed(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) > 4
    except ValueError:
        return False


def merge_access(parts: Iterable[Access]) -> tuple[Access, list[Problem]]:
    """All files' access objects; the same object twice must be declared identically."""
    parts = list(parts)
    problems: list[Problem] = []

    def dedupe(items: Iterable[Any], key: Callable[[Any], Hashable]) -> tuple[Any, ...]:
        return first_of_each(items, key, problems)

    merged = Access(
        users=dedupe((u for p in parts for u in p.users), lambda u: u.name),
        permissions=dedupe((x for p in parts for x in p.permissions), lambda x: (x.vhost, x.user)),
        topic_permissions=dedupe(
            (x for p in parts for x in p.topic_permissions), lambda x: (x.vhost, x.user, x.exchange)
        ),
        vhost_settings=dedupe((v for p in parts for v in p.vhost_settings), lambda v: v.name),
        operator_policies=dedupe(
            (o for p in parts for o in p.operator_policies), lambda o: (o.vhost, o.name)
        ),
        parameters=dedupe(
            (d for p in parts for d in p.parameters), lambda d: (d.kind, d.vhost, d.name)
        ),
        managed=frozenset(k for p in parts for k in p.managed),
    )
    return merged, problems


def validate_access(access: Access) -> list[Problem]:
    """What the files alone can tell: regexes that do not compile."""
    problems: list[Problem] = []
    objects: list[PermissionSpec | TopicPermissionSpec] = [
        *access.permissions,
        *access.topic_permissions,
    ]
    for obj in objects:
        for key in ("configure", "write", "read"):
            value = getattr(obj, key, None)
            if value is None:
                continue
            try:
                re.compile(value)
            except re.error as exc:
                problems.append(
                    Problem(
                        f"'{key}' is not a valid regular expression: {exc}", obj.location, obj.label
                    )
                )
    for o in access.operator_policies:
        try:
            re.compile(o.pattern)
        except re.error as exc:
            problems.append(
                Problem(f"pattern is not a valid regular expression: {exc}", o.location, o.label)
            )
        if not o.definition:
            problems.append(Problem("definition must not be empty", o.location, o.label))
        for key in sorted(set(o.definition) - OPERATOR_POLICY_DEFINITION_KEYS):
            problems.append(
                Problem(
                    f"'{key}' cannot be set by an operator policy (the broker allows "
                    f"{', '.join(sorted(OPERATOR_POLICY_DEFINITION_KEYS))})",
                    o.location,
                    o.label,
                )
            )
        for key in sorted(set(o.definition) & OPERATOR_POLICY_DEFINITION_KEYS):
            wrong = policy_value_problem(key, o.definition[key], operator=True)
            if wrong is not None:
                problems.append(Problem(f"policy key '{key}' {wrong}", o.location, o.label))
    return problems


def refusal_problems(access: Access, *, users: Iterable[str], version: str) -> list[Problem]:
    """What the broker would refuse of the access objects, found before anything is written
    (the access objects are written after the topology: a refusal there would leave the
    exchanges and queues written and the rest not).

    ``users``: those that will exist when the access objects are written (the broker's,
    and the ones the files create). Measured on RabbitMQ 3.10.8 and 4.0.5: permissions and
    topic permissions of a missing user are refused (400 ``no_such_user``); the version
    limits are ``OPERATOR_POLICY_KEYS_SINCE`` and the two below it. A missing vhost (refused
    too) is ``_validate.check_references``'s, which names the first object in it.
    """
    known_users = set(users)
    v = parse_version(version)
    problems: list[Problem] = []
    grants: list[PermissionSpec | TopicPermissionSpec] = [
        *access.permissions,
        *access.topic_permissions,
    ]
    for p in grants:
        if p.user not in known_users:
            problems.append(
                Problem(
                    f"user '{p.user}' does not exist (not on the broker, and no file creates "
                    "it): the broker refuses permissions of a missing user",
                    p.location,
                    p.label,
                )
            )
    for o in access.operator_policies if v else ():
        for key, since in OPERATOR_POLICY_KEYS_SINCE.items():
            if key in o.definition and v < since:
                problems.append(
                    Problem(
                        f"'{key}' cannot be set by an operator policy on RabbitMQ {version} "
                        f"({show_version(since)} and later allow it)",
                        o.location,
                        o.label,
                    )
                )
        if o.apply_to in QUEUE_TYPE_APPLY_TO and v < QUEUE_TYPE_APPLY_TO_SINCE:
            problems.append(
                Problem(
                    f"apply_to {o.apply_to} needs RabbitMQ "
                    f"{show_version(QUEUE_TYPE_APPLY_TO_SINCE)} or later "
                    f"(this broker is {version}); use apply_to queues",
                    o.location,
                    o.label,
                )
            )
        if o.definition.get("delivery-limit") == -1 and v < NO_DELIVERY_LIMIT_SINCE:
            problems.append(
                Problem(
                    f"delivery-limit -1 (no limit) needs RabbitMQ "
                    f"{show_version(NO_DELIVERY_LIMIT_SINCE)} or later (this broker is {version}); "
                    "leave delivery-limit out for no limit",
                    o.location,
                    o.label,
                )
            )
    return problems


# ------------------------------------------------------------------ passwords


def rabbit_hash(password: str, salt: bytes, algorithm: str = DEFAULT_HASHING) -> str:
    """RabbitMQ's password hash: base64(salt + H(salt + utf-8 password))."""
    digest = HASHING_ALGORITHMS[algorithm](salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password: str, stored_hash: str, algorithm: str) -> bool:
    """Whether ``password`` is the one behind ``stored_hash`` (re-hashed with its salt)."""
    if algorithm not in HASHING_ALGORITHMS or not stored_hash:
        return False
    try:
        salt = base64.b64decode(stored_hash)[:4]
    except ValueError:
        return False
    return rabbit_hash(password, salt, algorithm) == stored_hash


def resolve_password(user: UserSpec, env: Mapping[str, str] | None = None) -> str | None:
    """The password a user's reference points to; raises DeclareAmqpError naming the
    reference (never the value) when it cannot be read."""
    env = os.environ if env is None else env
    if user.password:
        return user.password
    if user.password_env:
        value = env.get(user.password_env)
        if not value:
            raise PasswordUnavailable(
                Problem(
                    f"password_env: the environment variable {user.password_env} is not set "
                    "(or empty)",
                    user.location,
                    user.label,
                )
            )
        return value
    if user.password_file:
        try:
            with open(user.password_file, encoding="utf-8") as fh:
                value = fh.read().rstrip("\r\n")
        except OSError as exc:
            raise PasswordUnavailable(
                Problem(
                    f"password_file: cannot read {user.password_file}: "
                    f"{exc.strerror or type(exc).__name__}",
                    user.location,
                    user.label,
                )
            ) from None
        if not value:
            raise PasswordUnavailable(
                Problem(f"password_file: {user.password_file} is empty", user.location, user.label)
            )
        return value
    return None


class PasswordUnavailable(DeclareAmqpError):
    """A password reference that cannot be read (the message names it, not the value)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


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
    return str(data.get("name", management.address.user)), _tag_tuple(data.get("tags"))


def _tag_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # older brokers: "administrator,monitoring"
        value = [t for t in value.split(",") if t]
    return tuple(sorted(set(value or ())))


def _limits(value: Mapping[str, Any], key: str) -> int | None:
    found = value.get(key)
    return int(found) if found is not None else None


def read_broker_access(
    management: ManagementClient, desired: Access, vhosts: Sequence[str], admin: bool
) -> Access:
    """What the broker holds of the kinds the files use: one request per kind.

    Users and permissions can only be read by an ``administrator``; without the tag they
    are not read (the privilege check names what needs it).
    """
    users: list[UserSpec] = []
    permissions: list[PermissionSpec] = []
    topic: list[TopicPermissionSpec] = []
    wants_users = bool(desired.users) or "users" in desired.managed
    wants_perms = (
        bool(desired.permissions) or "permissions" in desired.managed or wants_users
    )  # user prune's scope is decided by their permissions
    wants_topic = bool(desired.topic_permissions) or "topic_permissions" in desired.managed
    in_scope = set(vhosts)
    if admin and wants_users:
        user_limits = {u["user"]: u.get("value") or {} for u in management.list_user_limits()}
        for u in management.list_users():
            limits = user_limits.get(u["name"], {})
            users.append(
                UserSpec(
                    name=u["name"],
                    tags=_tag_tuple(u.get("tags")),
                    password_hash=u.get("password_hash") or None,
                    hashing_algorithm=u.get("hashing_algorithm") or DEFAULT_HASHING,
                    max_connections=_limits(limits, "max-connections"),
                    max_channels=_limits(limits, "max-channels"),
                )
            )
    if admin and wants_perms:
        for p in management.list_permissions():
            permissions.append(
                PermissionSpec(
                    p["user"],
                    p["vhost"],
                    p.get("configure", ""),
                    p.get("write", ""),
                    p.get("read", ""),
                )
            )
    if admin and wants_topic:
        for t in management.list_topic_permissions():
            if t["vhost"] in in_scope:
                topic.append(
                    TopicPermissionSpec(
                        t["user"], t["vhost"], t["exchange"], t.get("write", ""), t.get("read", "")
                    )
                )
    operator: list[OperatorPolicySpec] = []
    if desired.operator_policies or "operator_policies" in desired.managed:
        for vhost in vhosts:
            # None: no such vhost yet, or not readable (the privilege check says so)
            for p in management.operator_policies(vhost) or ():
                operator.append(
                    OperatorPolicySpec(
                        vhost,
                        p["name"],
                        p["pattern"],
                        dict(p.get("definition") or {}),
                        p.get("apply-to", "queues"),
                        int(p.get("priority", 0)),
                    )
                )
    settings: list[VhostSettings] = []
    if desired.vhost_settings:
        limits_by_vhost = {v["vhost"]: v.get("value") or {} for v in management.list_vhost_limits()}
        for v in management.list_vhosts():
            if v["name"] not in in_scope:
                continue
            meta = v.get("metadata") or {}
            dqt = v.get("default_queue_type")
            limits = limits_by_vhost.get(v["name"], {})
            settings.append(
                VhostSettings(
                    name=v["name"],
                    description=v.get("description", meta.get("description", "")),
                    tags=_tag_tuple(v.get("tags", meta.get("tags"))),
                    default_queue_type=None if dqt in (None, "undefined") else str(dqt),
                    max_connections=_limits(limits, "max-connections"),
                    max_queues=_limits(limits, "max-queues"),
                )
            )
    kinds = {d.kind for d in desired.parameters}
    kinds |= {
        k
        for key, k in (("federation_upstreams", "federation upstream"), ("shovels", "shovel"))
        if key in desired.managed
    }
    parameters = read_broker(management, sorted(kinds), vhosts) if kinds else []
    return Access(
        tuple(users),
        tuple(permissions),
        tuple(topic),
        tuple(settings),
        tuple(operator),
        tuple(parameters),
    )


def _users(management: ManagementClient) -> list[UserSpec]:
    """The broker's users, by name only."""
    return [UserSpec(u["name"]) for u in management.list_users(names_only=True)]


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


def _needed_tag(c: Change) -> str | None:
    if c.kind in ("user", "permission", "topic permission", "operator policy"):
        return ADMINISTRATOR
    if c.kind == "vhost":
        return ADMINISTRATOR
    if c.kind in ("policy", *DYNAMIC_KINDS):
        return "policymaker"
    return None


def _kind_plural(kind: str) -> str:
    return {
        "vhost": "vhosts",
        "user": "users",
        "permission": "permissions",
        "topic permission": "topic permissions",
        "policy": "policies",
        "operator policy": "operator policies",
        "federation upstream": "federation upstreams",
        "shovel": "shovels",
    }.get(kind, kind + "s")


def unreadable_problems(desired: Access, user: str) -> list[Problem]:
    """What a user without the administrator tag cannot even read to plan."""
    problems = []
    objects: list[AccessSpec] = [*desired.users, *desired.permissions, *desired.topic_permissions]
    for obj in objects:
        kind = (
            "users"
            if isinstance(obj, UserSpec)
            else ("permissions" if isinstance(obj, PermissionSpec) else "topic permissions")
        )
        problems.append(
            Problem(
                f"reading and writing {kind} needs the '{ADMINISTRATOR}' tag, "
                f"which user '{user}' lacks",
                obj.location,
                obj.label,
            )
        )
    return problems


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
    """The changes that make the broker's access objects match the files.

    Returns the changes and warnings (what prune leaves alone, and why). Raises
    PasswordUnavailable when a password reference cannot be read.
    """
    from ._plan import CONFLICT, CREATE, DELETE, UPDATE, Difference

    changes: list[Change] = []
    warnings: list[Problem] = []
    created_vhosts = set(new_vhosts)

    # vhost metadata and limits (the metadata of a new vhost goes with its creation)
    live_settings = {v.name: v for v in actual.vhost_settings}
    for want in desired.vhost_settings:
        new = want.name in created_vhosts
        have = live_settings.get(want.name) or VhostSettings(want.name, description="", tags=())
        if new:
            continue  # created with its metadata, then its limits (see apply_access)
        compared = ("description", "tags", "default_queue_type", "max_connections", "max_queues")
        diffs = [
            Difference(f, _plain(getattr(have, f)), _plain(getattr(want, f)))
            for f in compared
            if getattr(want, f) is not None
            and _unlimited(getattr(want, f)) != _unlimited(getattr(have, f))
        ]
        immutable = [d for d in diffs if d.field == "default_queue_type"]
        if immutable:
            changes.append(
                _change(
                    CONFLICT,
                    "vhost",
                    want.name,
                    want.name,
                    want,
                    have,
                    tuple(immutable),
                    f"default_queue_type is {have.default_queue_type or 'not set'} on the broker "
                    f"but {want.default_queue_type} in {want.location}; it is set when the vhost "
                    "is created (queues declared before keep their type): keep the broker's "
                    "value in the file, or delete and re-create the vhost",
                )
            )
            diffs = [d for d in diffs if d.field != "default_queue_type"]
        if diffs:
            changes.append(_change(UPDATE, "vhost", want.name, want.name, want, have, tuple(diffs)))

    # users
    live_users = {u.name: u for u in actual.users}
    admins = {u.name for u in actual.users if ADMINISTRATOR in u.tags}
    for wanted in desired.users:
        live = live_users.get(wanted.name)
        if wanted.absent:
            if live is not None:
                why = _undeletable(live, connecting_user, admins, explicit=True)
                if why:
                    warnings.append(Problem(f"not deleted: {why}", wanted.location, wanted.label))
                else:
                    changes.append(_change(DELETE, "user", USERS_SCOPE, wanted.name, actual=live))
                    admins.discard(wanted.name)
            continue
        password = resolve_password(wanted, env)
        if wanted.password_file and _open_to_others(wanted.password_file):
            warnings.append(
                Problem(
                    f"password_file {wanted.password_file} is readable by "
                    "group or others; make it 0600",
                    wanted.location,
                    wanted.label,
                )
            )
        if live is None:
            changes.append(_change(CREATE, "user", USERS_SCOPE, wanted.name, desired=wanted))
            continue
        diffs = []
        if wanted.tags != live.tags:
            diffs.append(Difference("tags", list(live.tags), list(wanted.tags)))
        if password is not None:
            if not password_matches(
                password, live.password_hash or "", live.hashing_algorithm or DEFAULT_HASHING
            ):
                diffs.append(Difference("password", "(hidden)", "(changed)"))
        elif wanted.password_hash is not None and (
            wanted.password_hash != live.password_hash
            or wanted.hashing_algorithm != live.hashing_algorithm
        ):
            diffs.append(Difference("password", "(hidden)", "(changed)"))
        for f in ("max_connections", "max_channels"):
            value = getattr(wanted, f)
            if value is not None and _unlimited(value) != _unlimited(getattr(live, f)):
                diffs.append(Difference(f, getattr(live, f), value))
        if diffs:
            changes.append(
                _change(UPDATE, "user", USERS_SCOPE, wanted.name, wanted, live, tuple(diffs))
            )

    changes.extend(
        _keyed(
            "permission",
            desired.permissions,
            actual.permissions,
            lambda p: (p.vhost, p.user),
            ("configure", "write", "read"),
        )
    )
    changes.extend(
        _keyed(
            "topic permission",
            desired.topic_permissions,
            actual.topic_permissions,
            lambda t: (t.vhost, t.user, t.exchange),
            ("write", "read"),
        )
    )

    changes.extend(
        plan_dynamic(desired.parameters, actual.parameters, desired.managed, scope, prune, env)
    )
    changes.extend(
        _keyed(
            "operator policy",
            desired.operator_policies,
            actual.operator_policies,
            lambda o: (o.vhost, o.name),
            ("pattern", "definition", "apply_to", "priority"),
        )
    )

    if prune:
        in_scope = set(scope)
        if "operator_policies" in desired.managed:
            want_o = {(o.vhost, o.name) for o in desired.operator_policies}
            for o in actual.operator_policies:
                if o.vhost in in_scope and (o.vhost, o.name) not in want_o:
                    changes.append(_change(DELETE, "operator policy", o.vhost, o.name, actual=o))
        if "topic_permissions" in desired.managed:
            want_t = {(t.vhost, t.user, t.exchange) for t in desired.topic_permissions}
            for t in actual.topic_permissions:
                if (
                    t.vhost in in_scope
                    and (t.vhost, t.user, t.exchange) not in want_t
                    and t.user != connecting_user
                ):
                    changes.append(_change(DELETE, "topic permission", t.vhost, t.name, actual=t))
        if "permissions" in desired.managed:
            want_p = {(p.vhost, p.user) for p in desired.permissions}
            for p in actual.permissions:
                if (
                    p.vhost in in_scope
                    and (p.vhost, p.user) not in want_p
                    and p.user != connecting_user
                ):
                    changes.append(_change(DELETE, "permission", p.vhost, p.user, actual=p))
        if "users" in desired.managed:
            declared = {u.name for u in desired.users}
            vhosts_of: dict[str, set[str]] = {}
            for p in actual.permissions:
                vhosts_of.setdefault(p.user, set()).add(p.vhost)
            for u in actual.users:
                where = vhosts_of.get(u.name, set())
                # A user is in scope when all of its permissions are in the files' vhosts;
                # one without permissions, or with some elsewhere, is somebody else's.
                if u.name in declared or not where or not where <= in_scope:
                    continue
                why = _undeletable(u, connecting_user, admins, explicit=False)
                if why:
                    warnings.append(Problem(f"user '{u.name}' not pruned: {why}"))
                    continue
                changes.append(_change(DELETE, "user", USERS_SCOPE, u.name, actual=u))
                admins.discard(u.name)
    return changes, warnings


def _unlimited(value: Any) -> Any:
    """A limit as compared: -1 (a file's "no limit") is the broker's missing limit."""
    return None if isinstance(value, int) and not isinstance(value, bool) and value < 0 else value


def _open_to_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


def _undeletable(user: UserSpec, connecting_user: str, admins: set[str], explicit: bool) -> str:
    if user.name == connecting_user:
        return "it is the user declare-amqp connects as"
    if ADMINISTRATOR in user.tags and admins <= {user.name}:
        return "it is the last user with the administrator tag"
    if user.name == "guest" and not explicit:
        return "guest is deleted only when a file lists it with 'absent: true'"
    return ""


def _change(
    action: Action | str,
    kind: Kind | str,
    vhost: str,
    name: str,
    desired: AccessSpec | None = None,
    actual: AccessSpec | None = None,
    differences: Sequence[Any] = (),
    message: str = "",
) -> Change:
    """A plan ``Change`` about an access object (``Change`` is typed for the topology's)."""
    from ._plan import Action, Change, Kind

    return Change(
        Action(action),
        Kind(kind),
        vhost,
        name,
        cast(Any, desired),
        cast(Any, actual),
        tuple(differences),
        message,
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _keyed(
    kind: str,
    desired: Iterable[Any],
    actual: Iterable[Any],
    key: Callable[[Any], tuple[str, ...]],
    compared: Sequence[str],
) -> Iterable[Change]:
    from ._plan import CREATE, UPDATE, Difference

    live = {key(o): o for o in actual}
    for want in desired:
        have = live.get(key(want))
        if have is None:
            yield _change(CREATE, kind, want.vhost, want.name, desired=want)
            continue
        diffs = tuple(
            Difference(f, getattr(have, f), getattr(want, f))
            for f in compared
            if getattr(want, f) != getattr(have, f)
        )
        if diffs:
            yield _change(UPDATE, kind, want.vhost, want.name, want, have, diffs)


DYNAMIC_KINDS = ("federation upstream", "shovel")


def splice(
    the_plan: Plan,
    access_changes: Sequence[Change],
    settings: Iterable[VhostSettings] = (),
    warnings: Sequence[Problem] = (),
) -> Plan:
    """The plan with the access changes in apply order (``_plan.PHASES``): the topology's
    writes first (vhosts are created there, with their metadata), then vhost limits, users
    and permissions; the deletes of users and permissions last."""
    from ._plan import CREATE, apply_position

    by_name = {v.name: v for v in settings}
    topo = [
        replace(c, desired=cast(Any, by_name[c.name]))
        if c.kind == "vhost" and c.action == CREATE and c.name in by_name
        else c
        for c in the_plan.changes
    ]
    return replace(
        the_plan,
        changes=tuple(sorted([*topo, *access_changes], key=apply_position)),
        warnings=(*the_plan.warnings, *warnings),
    )


def has_followup(c: Change) -> bool:
    """A vhost creation whose limits ``apply_access`` sets once the vhost was made."""
    from ._plan import CREATE

    return (
        c.kind == "vhost"
        and c.action == CREATE
        and isinstance(c.desired, VhostSettings)
        and (c.desired.max_connections is not None or c.desired.max_queues is not None)
    )


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
    from ._plan import CREATE

    access = desired.access or Access()
    user, tags = whoami(management)
    admin = ADMINISTRATOR in tags
    if not admin and (access.users or access.permissions or access.topic_permissions):
        raise InsufficientPrivileges(user, tags, unreadable_problems(access, user))
    changes: list[Change] = []
    warnings: list[Problem] = []
    if access.size or access.managed:
        from ._errors import TopologyError

        missing = missing_plugins(management, access.parameters)
        if missing:
            raise TopologyError(missing)
        actual = read_broker_access(management, access, the_plan.vhosts, admin)
        new_vhosts = [c.name for c in the_plan.changes if c.kind == "vhost" and c.action == CREATE]
        if admin and (access.permissions or access.topic_permissions or access.operator_policies):
            refused = refusal_problems(
                access,
                users=[
                    *(u.name for u in actual.users or _users(management)),
                    *(u.name for u in access.users if not u.absent),
                ],
                version=management.version,
            )
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
    result = splice(the_plan, changes, access.vhost_settings, warnings)
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
) -> list[Change]:
    """Write vhost settings and limits, users and permissions (HTTP, in the order given);
    vhosts themselves are created with the topology (``_apply``)."""
    from ._plan import CREATE, DELETE, UPDATE

    _import_in_bulk(management, [c for c in changes if c.action in (CREATE, UPDATE)], env)
    done = []
    for c in changes:
        if has_followup(c):
            assert isinstance(c.desired, VhostSettings)
            for f, limit in (("max_connections", "max-connections"), ("max_queues", "max-queues")):
                if getattr(c.desired, f) is not None:
                    management.put_vhost_limit(c.name, limit, getattr(c.desired, f))
            continue  # counted as written by the topology's apply
        if c.kind == "vhost" and c.action == UPDATE:
            want = c.desired
            assert isinstance(want, VhostSettings)
            fields_changed = {d.field for d in c.differences}
            if fields_changed & {"description", "tags", "default_queue_type"}:
                management.put_vhost(want.name, want.settings, creating=False)
            for f, limit in (("max_connections", "max-connections"), ("max_queues", "max-queues")):
                if f in fields_changed:
                    management.put_vhost_limit(c.name, limit, getattr(want, f))
        elif c.kind == "user" and c.action in (CREATE, UPDATE):
            want = c.desired
            assert isinstance(want, UserSpec)
            have = c.actual if isinstance(c.actual, UserSpec) else None
            for f, limit in (
                ("max_connections", "max-connections"),
                ("max_channels", "max-channels"),
            ):
                value = getattr(want, f)
                if value is not None and (have is None or getattr(have, f) != value):
                    management.put_user_limit(want.name, limit, value)
        elif c.kind == "user" and c.action == DELETE:
            management.delete_user(c.name)
        elif c.kind in ("permission", "topic permission") and c.action in (CREATE, UPDATE):
            pass  # written by _import_in_bulk above
        elif c.kind == "permission" and c.action == DELETE:
            p = c.spec
            assert isinstance(p, PermissionSpec)
            management.delete_permission(p.vhost, p.user, f"deleting {p.label}")
        elif c.kind == "topic permission" and c.action == DELETE:
            t = c.spec
            assert isinstance(t, TopicPermissionSpec)
            _delete_topic_permission(management, t)
        elif c.kind == "operator policy" and c.action in (CREATE, UPDATE):
            o = c.desired
            assert isinstance(o, OperatorPolicySpec)
            management.put_operator_policy(o, f"writing {o.label}")
        elif c.kind in DYNAMIC_KINDS and c.action in (CREATE, UPDATE, DELETE):
            apply_dynamic(management, c, env)
        elif c.kind == "operator policy" and c.action == DELETE:
            management.delete_operator_policy(c.vhost, c.name)
        else:
            continue
        done.append(c)
    return done


def _import_in_bulk(
    management: ManagementClient, changes: Sequence[Change], env: Mapping[str, str] | None
) -> None:
    """Users, permissions and topic permissions to create or update, in one
    ``POST /api/definitions`` (500 users and their permissions: 0.4 s instead of ~5 s one by
    one). Passwords are hashed here (RabbitMQ's scheme, a fresh salt), so none travels."""
    users: list[dict[str, Any]] = []
    permissions: list[dict[str, Any]] = []
    topic: list[dict[str, Any]] = []
    for c in changes:
        if c.kind == "user" and isinstance(c.desired, UserSpec):
            want, have = c.desired, c.actual if isinstance(c.actual, UserSpec) else None
            password = resolve_password(want, env)
            if password is not None:
                if (
                    have is not None
                    and have.password_hash
                    and password_matches(
                        password, have.password_hash, have.hashing_algorithm or DEFAULT_HASHING
                    )
                ):
                    stored = (have.password_hash, have.hashing_algorithm or DEFAULT_HASHING)
                else:
                    stored = (rabbit_hash(password, os.urandom(4)), DEFAULT_HASHING)
            elif want.password_hash is not None:
                stored = (want.password_hash, want.hashing_algorithm or DEFAULT_HASHING)
            elif have is not None:  # keep the stored password (an import without one clears it)
                stored = (have.password_hash or "", have.hashing_algorithm or DEFAULT_HASHING)
            else:
                stored = ("", DEFAULT_HASHING)  # no password: x509 / EXTERNAL only
            del password
            users.append(
                {
                    "name": want.name,
                    "password_hash": stored[0],
                    "hashing_algorithm": stored[1],
                    "tags": ",".join(want.tags),
                }
            )
        elif c.kind == "permission" and isinstance(c.desired, PermissionSpec):
            p = c.desired
            permissions.append(
                {
                    "user": p.user,
                    "vhost": p.vhost,
                    "configure": p.configure,
                    "write": p.write,
                    "read": p.read,
                }
            )
        elif c.kind == "topic permission" and isinstance(c.desired, TopicPermissionSpec):
            t = c.desired
            topic.append(
                {
                    "user": t.user,
                    "vhost": t.vhost,
                    "exchange": t.exchange,
                    "write": t.write,
                    "read": t.read,
                }
            )
    if not (users or permissions or topic):
        return
    body = {"users": users, "permissions": permissions, "topic_permissions": topic}
    management.import_definitions(
        body,
        f"writing {len(users)} users, {len(permissions)} permissions and "
        f"{len(topic)} topic permissions",
    )


def _delete_topic_permission(management: ManagementClient, t: TopicPermissionSpec) -> None:
    """The HTTP API deletes all of a user's topic permissions in a vhost at once: put back
    the ones on other exchanges."""
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


# ------------------------------------------------------------------ export


def read_for_export(
    management: ManagementClient, vhosts: Sequence[str]
) -> tuple[Access | None, list[Problem]]:
    """The access objects of the exported vhosts, and warnings for the user.

    Read: their permissions and topic permissions, the users that have permissions there,
    operator policies, vhost metadata and limits (these need the administrator tag), and
    federation upstreams and shovels (URIs with a password as references to environment
    variables, which the warnings name: see ``_dynamic.export_parameters``). The access
    part is None when nothing of it can be read.
    """
    parameters, problems = export_parameters(management, vhosts)
    warnings = problems + export_warnings(parameters)
    _, tags = whoami(management)
    if ADMINISTRATOR not in tags:
        return (Access(parameters=tuple(parameters)) if parameters else None), warnings
    wanted = Access(
        vhost_settings=tuple(VhostSettings(v) for v in vhosts),
        managed=frozenset({"users", "permissions", "topic_permissions", "operator_policies"}),
    )
    found = read_broker_access(management, wanted, vhosts, admin=True)
    in_scope = set(vhosts)
    permissions = tuple(p for p in found.permissions if p.vhost in in_scope)
    names = {p.user for p in permissions}
    access = Access(
        users=tuple(u for u in found.users if u.name in names),
        permissions=permissions,
        topic_permissions=found.topic_permissions,
        operator_policies=found.operator_policies,
        vhost_settings=found.vhost_settings,
        parameters=tuple(parameters),
    )
    return access, warnings


def access_document(access: Access, vhosts: Sequence[str]) -> dict[str, Any]:
    """The access objects as entries of the YAML format (users with their hashes)."""
    doc: dict[str, Any] = {}
    single = len(vhosts) == 1
    users = []
    for u in sorted(access.users, key=lambda u: u.name):
        entry: dict[str, Any] = {"name": u.name, "tags": list(u.tags)}
        if u.password_hash:
            entry["password_hash"] = u.password_hash
            entry["hashing_algorithm"] = u.hashing_algorithm or DEFAULT_HASHING
        for f in ("max_connections", "max_channels"):
            if getattr(u, f) is not None:
                entry[f] = getattr(u, f)
        users.append(entry)
    permissions = []
    for p in sorted(access.permissions, key=lambda p: (p.vhost, p.user)):
        entry = {"user": p.user, "configure": p.configure, "write": p.write, "read": p.read}
        if not single:
            entry["vhost"] = p.vhost
        permissions.append(entry)
    topic = []
    for t in sorted(access.topic_permissions, key=lambda t: (t.vhost, t.user, t.exchange)):
        entry = {"user": t.user, "exchange": t.exchange, "write": t.write, "read": t.read}
        if not single:
            entry["vhost"] = t.vhost
        topic.append(entry)
    operator = []
    for o in sorted(access.operator_policies, key=lambda o: (o.vhost, o.name)):
        entry = o.entry()
        if not single:
            entry = {"name": o.name, "vhost": o.vhost, **entry}
        operator.append(entry)
    # vhosts that carry metadata or limits become mappings (the others stay names)
    described = {v.name: describe_settings(without_defaults(v)) for v in access.vhost_settings}
    if any(described.values()):
        doc["vhosts"] = [
            {"name": name, **described[name]} if described.get(name) else name for name in vhosts
        ]
    dynamic: dict[str, list[dict[str, Any]]] = {FEDERATION.kind: [], SHOVEL.kind: []}
    for d in sorted(access.parameters, key=lambda d: (d.kind, d.vhost, d.name)):
        dynamic[d.kind].append(document_entry(d, with_vhost=not single))
    for key, items in (
        ("users", users),
        ("permissions", permissions),
        ("topic_permissions", topic),
        ("operator_policies", operator),
        (FEDERATION.key, dynamic[FEDERATION.kind]),
        (SHOVEL.key, dynamic[SHOVEL.kind]),
    ):
        if items:
            doc[key] = items
    return doc


def without_defaults(v: VhostSettings) -> VhostSettings:
    """The settings a new vhost would not have anyway (empty description and tags)."""
    return replace(v, description=v.description or None, tags=v.tags or None)


def describe_settings(v: VhostSettings) -> dict[str, Any]:
    """A vhost's managed settings, for an export's vhost entry."""
    return {
        f.name: _plain(getattr(v, f.name))
        for f in fields(v)
        if f.name not in ("name", "location") and getattr(v, f.name) is not None
    }

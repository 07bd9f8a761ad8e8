"""Users: their tags, limits and password (only by reference or as a hash).

Secrets: a user's password is given only by reference (``password_env``, ``password_file``)
or as a ``password_hash``. The referenced password is read when a plan is made (to detect
drift by re-hashing it with the salt of the stored hash) and again when it is applied; it is
never kept in the model, a ``Change`` or a ``Plan``, so no output can show it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import DeclareAmqpError, Location, Problem
from .._format import Key
from .._plan import CREATE, DELETE, UPDATE, Change, Difference, Kind
from ._base import (
    _BOOL,
    _INT,
    _LIST,
    _STR,
    ADMINISTRATOR,
    USERS_SCOPE,
    AccessKind,
    DefinitionsReader,
    PlanContext,
    Reader,
    change,
    limit_of,
    read_tags,
    tag_tuple,
    unlimited,
)

if TYPE_CHECKING:
    from .._management import ManagementClient

HASHING_ALGORITHMS = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
DEFAULT_HASHING = "rabbit_password_hashing_sha256"
# a user's limits: the broker's name -> the YAML key
USER_LIMITS = {"max-connections": "max_connections", "max-channels": "max_channels"}


@dataclass(frozen=True)
class UserSpec:
    """A user. The password is a reference (env/file) or a hash, never the password itself."""

    GROUP: ClassVar[str] = "users"

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
        """Users are cluster-wide: ``USERS_SCOPE``."""
        return USERS_SCOPE

    @property
    def has_password(self) -> bool:
        """Whether the files give a password in any way."""
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
        """How messages name it."""
        return f"user '{self.name}'"


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


class PasswordUnavailable(DeclareAmqpError):
    """A password reference that cannot be read (the message names it, not the value)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


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


def _hash_well_formed(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) > 4
    except ValueError:
        return False


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


def _stored_password(
    want: UserSpec, have: UserSpec | None, env: Mapping[str, str] | None
) -> tuple[str, str]:
    """(hash, algorithm) to import for ``want``: the broker's when the password did not
    change, else a fresh salt's (RabbitMQ's scheme), so no password travels."""
    password = resolve_password(want, env)
    if password is not None:
        if (
            have is not None
            and have.password_hash
            and password_matches(
                password, have.password_hash, have.hashing_algorithm or DEFAULT_HASHING
            )
        ):
            return (have.password_hash, have.hashing_algorithm or DEFAULT_HASHING)
        return (rabbit_hash(password, os.urandom(4)), DEFAULT_HASHING)
    if want.password_hash is not None:
        return (want.password_hash, want.hashing_algorithm or DEFAULT_HASHING)
    if have is not None:  # keep the stored password (an import without one clears it)
        return (have.password_hash or "", have.hashing_algorithm or DEFAULT_HASHING)
    return ("", DEFAULT_HASHING)  # no password: x509 / EXTERNAL only


class UserKind(AccessKind[UserSpec]):
    """The ``users`` list; created and updated in one definitions import with the
    permissions, their limits and deletes one request each."""

    spec = UserSpec
    kind = Kind.USER
    key = "users"
    doc = "Users (passwords only by reference: password_env, password_file or password_hash)."
    schema_name = "user"
    schema_doc = (
        "A user; the password only by reference or as a hash (a literal `password` is refused)."
    )
    plural = "users"
    admin_to_read = True
    definitions_section = "users"
    bulk = True
    keys = (
        Key("name", _STR, "User name.", required=True),
        Key("tags", _LIST, "Tags: administrator, monitoring, policymaker, management, ..."),
        Key("password_env", _STR, "Environment variable that holds the password."),
        Key(
            "password_file", _STR, "File whose content (trailing newline removed) is the password."
        ),
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

    def identity(self, spec: UserSpec) -> tuple[Any, ...]:
        """Its name."""
        return (spec.name,)

    def vhost_of(self, spec: UserSpec) -> str:
        """Users are cluster-wide: ``USERS_SCOPE``."""
        return USERS_SCOPE

    # ------------------------------------------------------------ files

    def read(self, reader: Reader, raw: Any, line: int) -> UserSpec | None:
        """One entry: a literal ``password`` is accepted with a warning (never shown), the password
        is given one way, a hash must be well formed."""
        literal: str | None = None
        if isinstance(raw, dict) and "password" in raw:
            # Accepted, as the broker's import does, with a warning; never echoed. It is
            # hashed (a fresh salt) before it is sent, like a password_env's value.
            literal, raw = self._literal_password(reader, raw, line)
        f = reader.fields(raw, self.keys, "user", line)
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
            tags=read_tags(reader, f.get("tags", []), line, label),
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

    @staticmethod
    def _literal_password(reader: Reader, raw: Any, line: int) -> tuple[str | None, Any]:
        """The literal ``password`` of an entry (warned about, never shown) and the entry
        without it."""
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
        return literal, rest

    # ------------------------------------------------------------ definitions JSON

    def from_definitions(self, reader: DefinitionsReader, raw: Any, line: int) -> Any:
        """A user of the broker's format by YAML key: tags as a list, limits apart, and an
        empty hash (a user without a password) as no hash at all."""
        out = reader.translated(raw, line, {})
        label = f"user '{raw.get('name')}'"
        if isinstance(out.get("tags"), str):
            out["tags"] = [t for t in out["tags"].split(",") if t]
        if not out.get("password_hash"):
            out.pop("password_hash", None)
            out.pop("hashing_algorithm", None)
        elif out.get("hashing_algorithm") is None:
            out["hashing_algorithm"] = DEFAULT_HASHING
        limits = out.pop("limits", None)
        if isinstance(limits, dict):
            reader.limits(out, limits, USER_LIMITS, line, label)
        elif limits not in (None, []):
            reader.problem(line, "'limits' must be an object", label)
        return out

    def to_definitions(self, spec: UserSpec) -> dict[str, Any]:
        """The broker's entry: its hash (empty: no password), tags and limits."""
        return {
            "name": spec.name,
            "password_hash": spec.password_hash or "",
            "hashing_algorithm": spec.hashing_algorithm or DEFAULT_HASHING,
            "tags": list(spec.tags),
            "limits": {
                broker: getattr(spec, key)
                for broker, key in USER_LIMITS.items()
                if getattr(spec, key) is not None
            },
        }

    # ------------------------------------------------------------ the broker

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[UserSpec]:
        """Every user with its limits (only an administrator may read them: none otherwise)."""
        if not admin:
            return []
        user_limits = {u["user"]: u.get("value") or {} for u in management.list_user_limits()}
        found = []
        for u in management.list_users():
            limits = user_limits.get(u["name"], {})
            found.append(
                UserSpec(
                    name=u["name"],
                    tags=tag_tuple(u.get("tags")),
                    password_hash=u.get("password_hash") or None,
                    hashing_algorithm=u.get("hashing_algorithm") or DEFAULT_HASHING,
                    max_connections=limit_of(limits, "max-connections"),
                    max_channels=limit_of(limits, "max-channels"),
                )
            )
        return found

    def plan(
        self, desired: Sequence[UserSpec], actual: Sequence[UserSpec], ctx: PlanContext
    ) -> tuple[list[Change], list[Problem]]:
        """Creates, updates (tags, password as "(changed)", limits) and deletes: of users
        ``absent: true``, and with prune of users whose permissions are all in scope; never
        the connecting user, the last administrator, or guest unless listed absent."""
        changes: list[Change] = []
        warnings: list[Problem] = []
        live_users = {u.name: u for u in actual}
        ctx.admins.update(u.name for u in actual if ADMINISTRATOR in u.tags)
        for wanted in desired:
            live = live_users.get(wanted.name)
            if wanted.absent:
                if live is not None:
                    why = _undeletable(live, ctx.connecting_user, ctx.admins, explicit=True)
                    if why:
                        warnings.append(
                            Problem(f"not deleted: {why}", wanted.location, wanted.label)
                        )
                    else:
                        changes.append(
                            change(DELETE, self.kind, USERS_SCOPE, wanted.name, actual=live)
                        )
                        ctx.admins.discard(wanted.name)
                continue
            password = resolve_password(wanted, ctx.env)
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
                changes.append(change(CREATE, self.kind, USERS_SCOPE, wanted.name, desired=wanted))
                continue
            diffs = _differences(wanted, live, password)
            if diffs:
                changes.append(
                    change(UPDATE, self.kind, USERS_SCOPE, wanted.name, wanted, live, diffs)
                )
        return changes, warnings

    def prune(
        self,
        desired: Sequence[UserSpec],
        actual: Sequence[UserSpec],
        permissions: Sequence[Any],
        ctx: PlanContext,
    ) -> tuple[list[Change], list[Problem]]:
        """With prune, the users no file declares whose permissions (``permissions``, the
        broker's) are all in the files' vhosts; run after the other kinds' prune."""
        changes: list[Change] = []
        warnings: list[Problem] = []
        if not (ctx.prune and self.key in ctx.managed):
            return changes, warnings
        in_scope = set(ctx.scope)
        declared = {u.name for u in desired}
        vhosts_of: dict[str, set[str]] = {}
        for p in permissions:
            vhosts_of.setdefault(p.user, set()).add(p.vhost)
        for u in actual:
            where = vhosts_of.get(u.name, set())
            # A user is in scope when all of its permissions are in the files' vhosts;
            # one without permissions, or with some elsewhere, is somebody else's.
            if u.name in declared or not where or not where <= in_scope:
                continue
            why = _undeletable(u, ctx.connecting_user, ctx.admins, explicit=False)
            if why:
                warnings.append(Problem(f"user '{u.name}' not pruned: {why}"))
                continue
            changes.append(change(DELETE, self.kind, USERS_SCOPE, u.name, actual=u))
            ctx.admins.discard(u.name)
        return changes, warnings

    def bulk_entry(self, c: Change, env: Mapping[str, str] | None) -> dict[str, Any] | None:
        """Its entry of the run's definitions import, with the hash to store
        (``_stored_password``)."""
        want = c.desired
        assert isinstance(want, UserSpec)
        have = c.actual if isinstance(c.actual, UserSpec) else None
        stored = _stored_password(want, have, env)
        return {
            "name": want.name,
            "password_hash": stored[0],
            "hashing_algorithm": stored[1],
            "tags": ",".join(want.tags),
        }

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """A create or update sets the limits that changed (the user itself is in the definitions
        import); a delete is one request."""
        if c.action in (CREATE, UPDATE):  # the user itself: the definitions import
            want = c.desired
            assert isinstance(want, UserSpec)
            have = c.actual if isinstance(c.actual, UserSpec) else None
            for limit, f in USER_LIMITS.items():
                value = getattr(want, f)
                if value is not None and (have is None or getattr(have, f) != value):
                    management.put_user_limit(want.name, limit, value)
            return True
        if c.action == DELETE:
            management.delete_user(c.name)
            return True
        return False

    def undo(self, management: ManagementClient, c: Change) -> None:
        """A created user is deleted (its permissions with it); an updated one gets back
        exactly what the broker held: the stored hash and its algorithm, the tags (one
        definitions import, so no password travels) and the limits this run changed."""
        if c.action != UPDATE:
            super().undo(management, c)
            return
        before, after = c.actual, c.desired
        assert isinstance(before, UserSpec) and isinstance(after, UserSpec)
        entry = {
            "name": before.name,
            "password_hash": before.password_hash or "",
            "hashing_algorithm": before.hashing_algorithm or DEFAULT_HASHING,
            "tags": ",".join(before.tags),
        }
        management.import_definitions({"users": [entry]}, f"restoring {before.label}")
        for limit, f in USER_LIMITS.items():
            if getattr(after, f) is not None and getattr(after, f) != getattr(before, f):
                management.put_user_limit(before.name, limit, getattr(before, f))

    # ------------------------------------------------------------ export

    def export_entry(self, spec: UserSpec, with_vhost: bool) -> dict[str, Any]:
        """As a topology entry: tags, hash and limits."""
        entry: dict[str, Any] = {"name": spec.name, "tags": list(spec.tags)}
        if spec.password_hash:
            entry["password_hash"] = spec.password_hash
            entry["hashing_algorithm"] = spec.hashing_algorithm or DEFAULT_HASHING
        for f in ("max_connections", "max_channels"):
            if getattr(spec, f) is not None:
                entry[f] = getattr(spec, f)
        return entry


def _differences(wanted: UserSpec, live: UserSpec, password: str | None) -> list[Difference]:
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
        if value is not None and unlimited(value) != unlimited(getattr(live, f)):
            diffs.append(Difference(f, getattr(live, f), value))
    return diffs


USER = UserKind()

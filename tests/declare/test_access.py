"""The access objects without a broker: loading (file:line, secrets never echoed), password
hashes, and the pure planning of users, permissions and prune's scoping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from declare_amqp import TopologyError, json_schema, load, parse_unvalidated
from declare_amqp._access import plan_access, refusal_problems
from declare_amqp._model import Access
from declare_amqp.kinds.operator_policy import OperatorPolicySpec
from declare_amqp.kinds.permission import PermissionSpec
from declare_amqp.kinds.topic_permission import TopicPermissionSpec
from declare_amqp.kinds.user import UserSpec, password_matches, rabbit_hash, resolve_password

# guest/guest as RabbitMQ 3.10.8 stores it (GET /api/users/guest on a fresh broker)
GUEST_HASH = "hcegRic5wNwW6MAO0OTkjEDA0YA99SQ6hXUzdH7+PGoHpHIK"


def test_the_broker_hash_is_reproduced() -> None:
    """base64(salt + sha256(salt + password)) with the stored salt gives the stored hash."""
    assert password_matches("guest", GUEST_HASH, "rabbit_password_hashing_sha256")
    assert not password_matches("guesT", GUEST_HASH, "rabbit_password_hashing_sha256")
    assert rabbit_hash("guest", b"\x85\xc7\xa0F") == GUEST_HASH


@pytest.mark.parametrize("value", ["hunter2-x", "12345678", "{a: 1}"])
def test_a_literal_password_is_never_echoed(value: str) -> None:
    """The other keys are still checked, and no message holds the value."""
    text = f"users:\n  - name: app\n    password: {value}\n    tagz: []\n"
    with pytest.raises(TopologyError) as info:
        parse_unvalidated(text, "u.yml")
    message = str(info.value)
    assert "u.yml:4:" in message and "did you mean 'tags'" in message
    assert value not in message and "hunter2" not in message


def test_a_literal_password_is_a_warning_and_resolves_to_itself() -> None:
    """Accepted as the broker's import accepts it (issue 19): a warning at its line, the
    password kept out of repr and of the plan's details, hashed only when written."""
    topology = parse_unvalidated("users:\n  - name: app\n    password: hunter2-x\n", "u.yml")
    assert topology.access is not None
    (user,) = topology.access.of(UserSpec)
    (warning,) = topology.warnings
    assert str(warning).startswith("u.yml:3: user 'app': a literal password in a topology file")
    assert "hunter2" not in str(warning) + repr(user) + user.shown
    assert resolve_password(user) == "hunter2-x"


def test_a_literal_password_that_is_no_string_is_refused() -> None:
    with pytest.raises(TopologyError, match="'password' must be a non-empty string"):
        parse_unvalidated("users:\n  - name: app\n    password: {a: 1}\n", "u.yml")


def test_user_and_permission_mistakes_name_file_and_line(tmp_path: Path) -> None:
    text = """\
users:
  - {name: a, password_env: A, password_file: /x}
  - {name: b, hashing_algorithm: rabbit_password_hashing_sha256}
  - {name: c, password_hash: not-base64!}
permissions:
  - {user: a, configure: '(', write: '', read: ''}
"""
    path = tmp_path / "p.yml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load([str(path)])
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert "p.yml:2: user 'a': give one of password_env, password_file" in message
    assert "p.yml:3: user 'b': hashing_algorithm goes with password_hash" in message
    assert "p.yml:4: user 'c': password_hash is not a base64" in message
    assert "p.yml:6: permissions of 'a' (vhost /): 'configure' is not a valid regular" in message


def test_a_uri_with_a_password_is_a_warning() -> None:
    """Accepted since issue 19 (the broker's import takes it), never shown."""
    text = (
        "shovels:\n  - name: s\n    src_uri: amqp://u:Secr3t@h/\n    src_queue: a\n"
        "    dest_uri_env: D\n    dest_queue: b\n"
    )
    topology = parse_unvalidated(text, "s.yml")
    (warning,) = topology.warnings
    assert str(warning).startswith("s.yml:3: shovel 's': 'src_uri' holds a password")
    assert topology.access is not None
    assert "Secr3t" not in str(warning) + topology.access.group("parameters")[0].shown


def _user(name: str, tags: tuple[str, ...] = (), **kw: object) -> UserSpec:
    return UserSpec(name, tags, **kw)  # type: ignore[arg-type]


def test_password_drift_without_showing_it() -> None:
    """Same password: no change. Another: `password (changed)`; nothing in the JSON form
    holds the password or the hash."""
    desired = Access(users=(_user("guest", ("administrator",), password_env="P"),))
    actual = Access(
        users=(
            _user(
                "guest",
                ("administrator",),
                password_hash=GUEST_HASH,
                hashing_algorithm="rabbit_password_hashing_sha256",
            ),
        )
    )
    same, _ = plan_access(
        desired, actual, scope=(), prune=False, connecting_user="x", env={"P": "guest"}
    )
    assert same == []
    changed, _ = plan_access(
        desired, actual, scope=(), prune=False, connecting_user="x", env={"P": "other-pw-77"}
    )
    assert [(c.action, [d.field for d in c.differences]) for c in changed] == [
        ("update", ["password"])
    ]
    shown = json.dumps([c.to_dict() for c in changed])
    assert "other-pw-77" not in shown and GUEST_HASH not in shown and '"(changed)"' in shown


def test_prune_scoping_of_users() -> None:
    """Only users whose permissions are all in the files' vhosts are pruned; never the
    connecting user, guest, or the last administrator."""
    actual = Access(
        users=(
            _user("in-scope"),
            _user("elsewhere"),
            _user("nowhere"),
            _user("guest"),
            _user("me", ("administrator",)),
            _user("admin2", ("administrator",)),
        ),
        permissions=tuple(
            PermissionSpec(u, v)
            for u, v in (
                ("in-scope", "v"),
                ("elsewhere", "v"),
                ("elsewhere", "w"),
                ("guest", "v"),
                ("me", "v"),
                ("admin2", "v"),
            )
        ),
    )
    desired = Access(managed=frozenset({"users"}))
    changes, warnings = plan_access(desired, actual, scope=("v",), prune=True, connecting_user="me")
    assert sorted(c.name for c in changes) == ["admin2", "in-scope"]
    text = " ".join(str(w) for w in warnings)
    assert "'guest' not pruned" in text and "'me' not pruned: it is the user" in text
    # the last administrator stays
    actual2 = Access(
        users=(_user("only-admin", ("administrator",)),),
        permissions=(PermissionSpec("only-admin", "v"),),
    )
    changes, warnings = plan_access(
        desired, actual2, scope=("v",), prune=True, connecting_user="me"
    )
    assert changes == [] and "last user with the administrator tag" in str(warnings[0])


def test_the_schema_covers_the_issue_example() -> None:
    doc = yaml.safe_load(r"""
vhosts:
  - name: billing
    description: invoices and receipts
    default_queue_type: quorum
    max_connections: 200
    max_queues: 500
users:
  - name: billing-app
    tags: []
    password_env: BILLING_APP_PASSWORD
    max_connections: 20
permissions:
  - {user: billing-app, vhost: billing, configure: '^billing\.', write: '^billing\.',
     read: '^billing\.'}
topic_permissions:
  - {user: billing-app, vhost: billing, exchange: amq.topic, write: '^invoice\.', read: '.*'}
""")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"users": [{"name": "a", "password": "x"}]}, json_schema())


def test_a_limit_of_minus_one_is_the_brokers_missing_limit() -> None:
    """-1 in a file means "no limit", which the broker shows as no limit at all: that plans
    as no change, while a real limit against none (or -1 against one) is a change."""
    from declare_amqp.kinds.vhost_settings import VhostSettings

    def changes(want: Access, have: Access) -> list[str]:
        found, _ = plan_access(want, have, scope=["v"], prune=False, connecting_user="guest")
        return [f"{c.kind} {d.field}" for c in found for d in c.differences]

    none = Access(
        users=(_user("app", max_channels=None),),
        vhost_settings=(VhostSettings("v", description="", tags=()),),
    )
    unlimited = Access(
        users=(_user("app", max_channels=-1),),
        vhost_settings=(VhostSettings("v", max_queues=-1),),
    )
    limited = Access(
        users=(_user("app", max_channels=5),),
        vhost_settings=(VhostSettings("v", description="", tags=(), max_queues=5),),
    )
    assert changes(unlimited, none) == []
    assert changes(limited, none) == ["vhost max_queues", "user max_channels"]
    assert changes(unlimited, limited) == ["vhost max_queues", "user max_channels"]


def test_operator_policy_values_the_broker_refuses_are_found_when_loading(tmp_path: Path) -> None:
    """The rule of the broker's policy validators (_fit.POLICY_VALUES), also for operator
    policies; delivery-limit -1 loads (RabbitMQ 4.x takes it, the version is checked later)."""
    path = tmp_path / "op.yml"
    path.write_text(
        "operator_policies:\n"
        "  - {name: a, pattern: x, definition: {expires: 0, max-length: -1}}\n"
        "  - {name: b, pattern: x, definition: {delivery-limit: -1, message-ttl: 5}}\n"
    )
    with pytest.raises(TopologyError) as caught:
        load([str(path)])
    assert [str(p).split(": ", 1)[1] for p in caught.value.problems] == [
        "operator policy 'a' (vhost /): policy key 'expires' must be at least 1, not 0",
        "operator policy 'a' (vhost /): policy key 'max-length' must be at least 0, not -1",
    ]


def _operator(**definition: object) -> OperatorPolicySpec:
    return OperatorPolicySpec("v", "cap", ".*", dict(definition))


def test_refusal_problems_by_version() -> None:
    """What 3.10 refuses in operator policies (measured), and 4.0 takes; an unknown version
    refuses nothing (the broker's answer stands)."""
    access = Access(
        operator_policies=(
            _operator(overflow="reject-publish", **{"target-group-size": 3}),
            OperatorPolicySpec("v", "qq", ".*", {"max-length": 1}, apply_to="quorum_queues"),
            _operator(**{"delivery-limit": -1}),
        )
    )
    old = [p.message for p in refusal_problems(access, users=(), version="3.10.8")]
    assert old == [
        "'overflow' cannot be set by an operator policy on RabbitMQ 3.10.8 (3.12 and later "
        "allow it)",
        "'target-group-size' cannot be set by an operator policy on RabbitMQ 3.10.8 (3.13 and "
        "later allow it)",
        "apply_to quorum_queues needs RabbitMQ 3.12 or later (this broker is 3.10.8); use "
        "apply_to queues",
        "delivery-limit -1 (no limit) needs RabbitMQ 4.0 or later (this broker is 3.10.8); "
        "leave delivery-limit out for no limit",
    ]
    assert [p.message for p in refusal_problems(access, users=(), version="3.12.13")] == [
        "'target-group-size' cannot be set by an operator policy on RabbitMQ 3.12.13 (3.13 and "
        "later allow it)",
        "delivery-limit -1 (no limit) needs RabbitMQ 4.0 or later (this broker is 3.12.13); "
        "leave delivery-limit out for no limit",
    ]
    assert refusal_problems(access, users=(), version="4.0.5") == []
    assert refusal_problems(access, users=(), version="?") == []


def test_refusal_problems_of_missing_users() -> None:
    """A permission or topic permission of a user that will not exist; known users pass."""
    access = Access(
        permissions=(PermissionSpec("app", "v"), PermissionSpec("ghost", "v")),
        topic_permissions=(TopicPermissionSpec("ghost", "v", "amq.topic"),),
    )
    found = refusal_problems(access, users=["app"], version="4.0.5")
    assert [(p.object, p.message.split(" (")[0]) for p in found] == [
        ("permissions of 'ghost' (vhost v)", "user 'ghost' does not exist"),
        ("topic permissions of 'ghost' on 'amq.topic' (vhost v)", "user 'ghost' does not exist"),
    ]
    assert refusal_problems(access, users=["app", "ghost"], version="4.0.5") == []


def test_the_registry_lists_every_access_kind_in_the_apply_order() -> None:
    """kinds.ACCESS_KINDS and the plan's apply order (_plan.ACCESS_KINDS) name the same kinds
    in the same order, and no two kinds share a top-level key."""
    from declare_amqp._plan import ACCESS_KINDS as APPLY_ORDER
    from declare_amqp.kinds import ACCESS_KINDS

    assert tuple(k.kind for k in ACCESS_KINDS) == APPLY_ORDER
    keys = [k.key for k in ACCESS_KINDS]
    assert len(set(keys)) == len(keys), keys

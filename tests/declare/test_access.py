"""The access objects without a broker: loading (file:line, secrets never echoed), password
hashes, and the pure planning of users, permissions and prune's scoping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from declare_amqp import TopologyError, json_schema, load, parse_unvalidated
from declare_amqp._access import (
    Access,
    PermissionSpec,
    UserSpec,
    password_matches,
    plan_access,
    rabbit_hash,
)

# guest/guest as RabbitMQ 3.10.8 stores it (GET /api/users/guest on a fresh broker)
GUEST_HASH = "hcegRic5wNwW6MAO0OTkjEDA0YA99SQ6hXUzdH7+PGoHpHIK"


def test_the_broker_hash_is_reproduced() -> None:
    """base64(salt + sha256(salt + password)) with the stored salt gives the stored hash."""
    assert password_matches("guest", GUEST_HASH, "rabbit_password_hashing_sha256")
    assert not password_matches("guesT", GUEST_HASH, "rabbit_password_hashing_sha256")
    assert rabbit_hash("guest", b"\x85\xc7\xa0F") == GUEST_HASH


@pytest.mark.parametrize("value", ["hunter2-x", "12345678", "{a: 1}"])
def test_a_literal_password_is_refused_and_never_echoed(value: str) -> None:
    text = f"users:\n  - name: app\n    password: {value}\n    tagz: []\n"
    with pytest.raises(TopologyError) as info:
        parse_unvalidated(text, "u.yml")
    message = str(info.value)
    assert "u.yml:3: user 'app': a literal password is not allowed" in message
    assert "u.yml:4:" in message and "did you mean 'tags'" in message  # the rest still checked
    assert value not in message and "hunter2" not in message


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


def test_a_uri_with_a_password_is_refused() -> None:
    text = (
        "shovels:\n  - name: s\n    src_uri: amqp://u:Secr3t@h/\n    src_queue: a\n"
        "    dest_uri_env: D\n    dest_queue: b\n"
    )
    with pytest.raises(TopologyError) as info:
        parse_unvalidated(text, "s.yml")
    assert "s.yml:3: shovel 's': 'src_uri' holds a password" in str(info.value)
    assert "Secr3t" not in str(info.value)


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

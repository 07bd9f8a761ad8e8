"""The least privilege an operator gives a provisioning job: a ``policymaker`` user with
permissions on its own vhost only (not ``administrator``).

It can plan, apply, prune and export there (``GET /api/definitions/{vhost}`` is refused to it,
so the tool reads each kind of object of the vhost once instead). What needs
``administrator`` (a new vhost, users, permissions) is refused before any write, naming the
file:line and the tag. A ``management`` user can plan what it can read.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

q = urllib.parse.quote


@pytest.fixture
def limited_user(declare: Any) -> Iterator[Any]:
    """Makes users with the given tag and full permissions on the test vhost only."""
    made: list[str] = []

    def make(tag: str) -> tuple[str, str]:
        name = f"wt12-{tag}-{uuid.uuid4().hex[:8]}"
        password = "lp-" + uuid.uuid4().hex
        made.append(name)
        declare.put(f"/api/users/{name}", {"password": password, "tags": tag})
        declare.put(
            f"/api/permissions/{q(declare.vhost, safe='')}/{name}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        return name, password

    yield make
    with declare.broker.http() as http:
        for name in made:
            http.delete(f"/api/users/{name}")


def _as(declare: Any, user: str, password: str) -> list[str]:
    return [
        "--vhost",
        declare.vhost,
        "--url",
        declare.url(user=user, password=password),
        "--management-url",
        declare.broker.management_url,
    ]


def test_policymaker_plans_applies_prunes_and_exports(declare: Any, limited_user: Any) -> None:
    """The whole flow as a policymaker with permissions on its vhost only."""
    user, password = limited_user("policymaker")
    target = _as(declare, user, password)
    with declare.broker.http() as http:  # the premise: definitions are refused to it
        assert (
            http.get(
                f"/api/definitions/{q(declare.vhost, safe='')}", auth=(user, password)
            ).status_code
            == 401
        )
    path = declare.copy_example()
    plan = declare("plan", path, *target, connect=False)
    assert plan.code == 0, plan
    assert "+ policy" in plan.out and "+ queue" in plan.out
    applied = declare("apply", path, *target, connect=False)
    assert applied.code == 0, applied
    assert {"email.high", "email.default"} <= declare.names("queues")
    assert declare.names("policies")
    again = declare("plan", path, "--detailed-exitcode", *target, connect=False)
    assert again.code == 0, again

    declare.put(
        f"/api/policies/{q(declare.vhost, safe='')}/stray",
        {"pattern": "^nothing$", "definition": {"max-length": 1}},
    )
    pruned = declare("apply", path, "--prune", *target, connect=False)
    assert pruned.code == 0, pruned
    assert "stray" not in declare.names("policies")

    exported = declare("export", *target, connect=False)
    assert exported.code == 0, exported
    assert "email.high" in exported.out and "users:" not in exported.out
    assert password not in plan.text + applied.text + pruned.text + exported.text


def test_policymaker_is_refused_what_needs_administrator(declare: Any, limited_user: Any) -> None:
    """A new vhost and users need administrator: the error names each object's file:line
    and the tag, and nothing at all is written (not even the queue the file also has)."""
    user, password = limited_user("policymaker")
    target = _as(declare, user, password)
    new_vhost = f"wt12-denied-{uuid.uuid4().hex[:6]}"
    path = declare.write(
        "topology.yml",
        f"""
    queues:
      - name: would.be.made
    vhosts:
      - {new_vhost}
    """,
    )
    result = declare("apply", path, *target, connect=False)
    declare.assert_clean_failure(result)
    assert "topology.yml:4:" in result.err
    assert f"vhost '{new_vhost}'" in result.err and "'administrator' tag" in result.err
    assert "nothing was changed" in result.err
    assert declare.is_empty()
    with declare.broker.http() as http:
        assert http.get(f"/api/vhosts/{new_vhost}").status_code == 404

    path = declare.write(
        "users.yml",
        f"""
    queues:
      - name: would.be.made
    users:
      - name: {user}-app
        password_env: X
    permissions:
      - {{user: {user}-app, configure: '.*', write: '.*', read: '.*'}}
    """,
    )
    for command in ("plan", "apply"):
        result = declare(command, path, *target, connect=False, env={"X": "pw-x-12345"})
        declare.assert_clean_failure(result)
        assert "users.yml:4:" in result.err and "users.yml:7:" in result.err
        assert "'administrator' tag" in result.err
    assert declare.is_empty()


def test_management_user_plans_but_policy_needs_policymaker(
    declare: Any, limited_user: Any
) -> None:
    """A management user can plan what it can read; applying a policy is refused before any
    write, naming the policy's file:line and the policymaker tag."""
    user, password = limited_user("management")
    target = _as(declare, user, password)
    path = declare.copy_example()
    plan = declare("plan", path, *target, connect=False)
    assert plan.code == 0, plan
    assert "apply would be refused" in plan.err and "'policymaker' tag" in plan.err
    result = declare("apply", path, *target, connect=False)
    declare.assert_clean_failure(result)
    assert "'policymaker' tag" in result.err and "topology.yml:" in result.err
    assert declare.is_empty()

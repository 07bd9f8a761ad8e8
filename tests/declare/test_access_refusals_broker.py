"""Access objects the broker would refuse stop the apply before anything is written.

The access objects (users, permissions, limits, operator policies) are written after the
topology, so a refusal found only by the broker came after the exchanges and queues were
written: a partial apply. Each test here writes a file with new queues plus one access object
the broker refuses, and checks that the error names file:line and the object, and that the
queues are not there afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

QUEUES = """
exchanges:
  - name: orders
    type: topic
queues:
  - name: orders.created
    bindings: [{exchange: orders, routing_key: created}]
  - name: orders.paid
"""


def _assert_nothing_written(declare: Any, result: Any) -> None:
    declare.assert_clean_failure(result)
    assert "nothing was changed" in result.err, result
    with declare.broker.http() as http:
        quoted = declare.quote(declare.vhost)
        assert http.get(f"/api/queues/{quoted}/orders.created").status_code == 404
        assert http.get(f"/api/queues/{quoted}/orders.paid").status_code == 404
        assert http.get(f"/api/exchanges/{quoted}/orders").status_code == 404


def _refused(declare: Any, access: str, *, needle: str) -> tuple[Any, int]:
    """Apply QUEUES + ``access``; the result and the line of ``needle`` in the file."""
    path = declare.write("refused.yml", QUEUES + access)
    result = declare("apply", path)
    _assert_nothing_written(declare, result)
    return result, declare.line_of(path, needle)


def _user_exists(declare: Any, user: str) -> bool:
    with declare.broker.http() as http:
        return bool(http.get(f"/api/users/{declare.quote(user)}").status_code == 200)


def _ghost() -> str:
    return f"ghost-{uuid.uuid4().hex[:8]}"


def test_permission_for_a_user_that_does_not_exist(declare: Any) -> None:
    user = _ghost()
    result, line = _refused(
        declare,
        f"permissions:\n  - user: {user}\n    configure: '.*'\n    read: '.*'\n",
        needle=f"user: {user}",
    )
    assert f"refused.yml:{line}: permissions of '{user}' (vhost {declare.vhost}):" in result.err
    assert f"user '{user}' does not exist" in result.err


def test_topic_permission_for_a_user_that_does_not_exist(declare: Any) -> None:
    user = _ghost()
    result, line = _refused(
        declare,
        f"topic_permissions:\n  - user: {user}\n    exchange: orders\n    write: '.*'\n",
        needle=f"user: {user}",
    )
    assert f"refused.yml:{line}: topic permissions of '{user}' on 'orders'" in result.err
    assert f"user '{user}' does not exist" in result.err


def test_permission_in_a_vhost_that_does_not_exist(declare: Any) -> None:
    """Found by the reference check, which names the permission (not only a queue)."""
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    user = _ghost()
    result, line = _refused(
        declare,
        f"users:\n  - name: {user}\n    tags: []\n"
        f"permissions:\n  - user: {user}\n    vhost: {missing}\n    configure: '.*'\n",
        needle=f"- user: {user}",
    )
    assert f"refused.yml:{line}: permissions of '{user}' (vhost {missing}):" in result.err
    assert f"vhost '{missing}' does not exist on the broker" in result.err
    assert _user_exists(declare, user) is False


def test_operator_policy_in_a_vhost_that_does_not_exist(declare: Any) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    result, line = _refused(
        declare,
        f"operator_policies:\n  - name: cap\n    vhost: {missing}\n    pattern: '.*'\n"
        "    definition: {max-length: 10}\n",
        needle="name: cap",
    )
    assert f"refused.yml:{line}: operator policy 'cap' (vhost {missing}):" in result.err
    assert f"vhost '{missing}' does not exist on the broker" in result.err


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("{expires: 0}", "policy key 'expires' must be at least 1, not 0"),
        ("{message-ttl: -1}", "policy key 'message-ttl' must be at least 0, not -1"),
        ("{max-length: x}", "policy key 'max-length' must be a whole number, not 'x'"),
    ],
)
def test_operator_policy_value_the_broker_refuses(
    declare: Any, definition: str, message: str
) -> None:
    """Found when the files are loaded (``validate`` needs no broker either)."""
    result, line = _refused(
        declare,
        f"operator_policies:\n  - name: cap\n    pattern: '.*'\n    definition: {definition}\n",
        needle="name: cap",
    )
    assert f"refused.yml:{line}: operator policy 'cap' (vhost {declare.vhost}): " in result.err
    assert message in result.err


@pytest.mark.parametrize(
    ("since", "setting", "message"),
    [
        # 3.10.8: "[{<<"overflow">>,...}] are not recognised policy settings"
        (
            (3, 12),
            "definition: {max-length: 10, overflow: reject-publish}",
            "'overflow' cannot be set by an operator policy on RabbitMQ 3.",
        ),
        # 3.10.8: "apply-to 'quorum_queues' unrecognised"
        (
            (3, 12),
            "apply_to: quorum_queues\n    definition: {max-length: 10}",
            "apply_to quorum_queues needs RabbitMQ 3.12 or later",
        ),
        # 3.10.8: "-1 is not a valid delivery limit"
        (
            (4, 0),
            "definition: {delivery-limit: -1}",
            "delivery-limit -1 (no limit) needs RabbitMQ 4.0 or later",
        ),
    ],
)
def test_operator_policy_setting_this_version_refuses(
    declare: Any, since: tuple[int, ...], setting: str, message: str
) -> None:
    """What RabbitMQ before ``since`` refuses in an operator policy (later versions take it:
    see the last test)."""
    if declare.broker.version_tuple >= since:
        pytest.skip(f"RabbitMQ {declare.broker.version} takes it")
    result, line = _refused(
        declare,
        f"operator_policies:\n  - name: cap\n    pattern: '.*'\n    {setting}\n",
        needle="name: cap",
    )
    assert f"refused.yml:{line}: operator policy 'cap'" in result.err
    assert message in result.err


def test_a_user_the_same_files_create_is_no_refusal(declare: Any) -> None:
    """The check knows the users and vhosts the files make themselves."""
    user = _ghost()
    path = declare.write(
        "ok.yml",
        QUEUES + f"users:\n  - name: {user}\n    tags: []\n"
        f"permissions:\n  - user: {user}\n    read: '.*'\n"
        f"topic_permissions:\n  - user: {user}\n    exchange: orders\n    write: '.*'\n",
    )
    try:
        assert declare("apply", path).code == 0
        assert declare("plan", path, "--detailed-exitcode").code == 0
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/users/{user}")


def test_operator_policy_settings_a_newer_broker_takes_are_applied(declare: Any) -> None:
    """No false refusal: what only newer versions allow is written where they run."""
    if declare.broker.version_tuple < (4, 0):
        pytest.skip("needs RabbitMQ 4.0+ (overflow, target-group-size, apply_to quorum_queues)")
    path = declare.write(
        "new.yml",
        QUEUES + "operator_policies:\n  - name: cap\n    pattern: '.*'\n"
        "    apply_to: quorum_queues\n"
        "    definition: {overflow: reject-publish, target-group-size: 3, delivery-limit: -1}\n",
    )
    assert declare("apply", path).code == 0
    with declare.broker.http() as http:
        found = http.get(f"/api/operator-policies/{declare.quote(declare.vhost)}/cap").json()
    assert found["apply-to"] == "quorum_queues"
    assert found["definition"] == {
        "overflow": "reject-publish",
        "target-group-size": 3,
        "delivery-limit": -1,
    }
    assert declare("plan", path, "--detailed-exitcode").code == 0

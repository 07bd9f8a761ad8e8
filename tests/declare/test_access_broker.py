"""Users, permissions, topic permissions, vhost metadata and limits against the live broker.

Every test makes its own users (unique names) and deletes them afterwards; the broker is
read back over the management API, never through the tool. Passwords are checked by
logging in over AMQP, and no output of the tool may contain one.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

q = urllib.parse.quote


@pytest.fixture
def users(declare: Any) -> Iterator[list[str]]:
    """Names for test users (unique); every one is deleted after the test."""
    names = [f"wt12-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]
    yield names
    with declare.broker.http() as http:
        for name in names:
            http.delete(f"/api/users/{q(name, safe='')}")


def _user(declare: Any, name: str) -> dict[str, Any] | None:
    with declare.broker.http() as http:
        response = http.get(f"/api/users/{q(name, safe='')}")
    return response.json() if response.status_code == 200 else None


def _permissions(declare: Any, user: str) -> dict[str, Any] | None:
    with declare.broker.http() as http:
        response = http.get(f"/api/permissions/{q(declare.vhost, safe='')}/{q(user, safe='')}")
    return response.json() if response.status_code == 200 else None


def _topic_permissions(declare: Any, user: str) -> list[dict[str, Any]]:
    with declare.broker.http() as http:
        response = http.get(
            f"/api/topic-permissions/{q(declare.vhost, safe='')}/{q(user, safe='')}"
        )
    return response.json() if response.status_code == 200 else []


def _can_log_in(declare: Any, user: str, password: str) -> bool:
    params = pika.URLParameters(declare.url(user=user, password=password))
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
        return True
    except pika.exceptions.AMQPError:
        return False


def _access_file(
    declare: Any, user: str, *, env: str = "APP_PASSWORD", read: str = "^app\\.", topic: bool = True
) -> str:
    text = f"""
    users:
      - name: {user}
        tags: [monitoring]
        password_env: {env}
        max_connections: 20
    permissions:
      - user: {user}
        configure: '^app\\.'
        write: '^app\\.'
        read: '{read}'
    """
    if topic:
        text += f"""
    topic_permissions:
      - user: {user}
        exchange: amq.topic
        write: '^invoice\\.'
        read: '.*'
    """
    name: str = declare.write("access.yml", text)
    return name


def test_users_and_permissions_create_replan_change(declare: Any, users: list[str]) -> None:
    """A user (password from the environment), its permissions and topic permissions are
    created; the re-plan is empty; a changed password plans as `password (changed)` without
    showing it and is applied; changed permissions update in place."""
    user = users[0]
    first, second = "s3cret-" + uuid.uuid4().hex, "n3w-" + uuid.uuid4().hex
    path = _access_file(declare, user)
    applied = declare("apply", path, env={"APP_PASSWORD": first})
    assert applied.code == 0, applied
    found = _user(declare, user)
    assert found is not None and found["tags"] in (["monitoring"], "monitoring")
    assert found["limits"] == {"max-connections": 20}
    assert _permissions(declare, user) == {
        "user": user,
        "vhost": declare.vhost,
        "configure": "^app\\.",
        "write": "^app\\.",
        "read": "^app\\.",
    }
    assert [(t["exchange"], t["write"], t["read"]) for t in _topic_permissions(declare, user)] == [
        ("amq.topic", "^invoice\\.", ".*")
    ]
    assert _can_log_in(declare, user, first)

    again = declare("plan", path, "--detailed-exitcode", env={"APP_PASSWORD": first})
    assert again.code == 0, again
    assert "No changes" in again.out

    changed = declare("plan", path, "--detailed-exitcode", env={"APP_PASSWORD": second})
    assert changed.code == 2, changed
    assert f"~ user     {user}  password (changed)" in changed.out
    applied = declare("apply", path, env={"APP_PASSWORD": second})
    assert applied.code == 0, applied
    assert _can_log_in(declare, user, second) and not _can_log_in(declare, user, first)

    _access_file(declare, user, read=".*")
    updated = declare("plan", path, env={"APP_PASSWORD": second})
    assert f"~ permission {user}  read: ^app\\. -> .*" in updated.out, updated
    assert declare("apply", path, env={"APP_PASSWORD": second}).code == 0
    assert _permissions(declare, user)["read"] == ".*"  # type: ignore[index]
    for result in (applied, again, changed, updated):
        assert first not in result.text and second not in result.text


def test_tags_limits_and_topic_permissions_change_in_place(declare: Any, users: list[str]) -> None:
    """A user's tags and limits and a topic permission change in place (the password is kept:
    the user still logs in with it), the re-plan is empty; pruning one of two topic
    permissions of the same user deletes that one only (the API deletes all of a user's topic
    permissions in a vhost at once: the other is put back); a limit of -1 removes it."""
    user, password = users[0], "tl-" + uuid.uuid4().hex
    env = {"APP_PASSWORD": password}

    def write(tags: str, channels: int, topic: str) -> str:
        path: str = declare.write(
            "change.yml",
            f"""
    exchanges:
      - {{name: audit, type: topic}}
    users:
      - {{name: {user}, tags: [{tags}], password_env: APP_PASSWORD, max_channels: {channels}}}
    permissions:
      - {{user: {user}, configure: '', write: '.*', read: '.*'}}
    topic_permissions:
    {topic}
    """,
        )
        return path

    both = (
        f"  - {{user: {user}, exchange: amq.topic, write: '^a\\.', read: '.*'}}\n"
        f"      - {{user: {user}, exchange: audit, write: '^audit\\.', read: '.*'}}"
    )
    path = write("monitoring", 3, both)
    assert declare("apply", path, env=env).code == 0
    path = write("management, monitoring", 5, both.replace("'^a\\.'", "'^b\\.'"))
    plan = declare("plan", path, env=env)
    assert plan.code == 0, plan
    assert f'~ user     {user}  tags: ["monitoring"] -> ["management", "monitoring"]' in plan.out
    assert "max_channels: 3 -> 5" in plan.out
    assert "~ topic permission" in plan.out and "write: ^a\\. -> ^b\\." in plan.out, plan
    assert "password" not in plan.out
    assert declare("apply", path, env=env).code == 0
    found = _user(declare, user)
    assert found is not None and sorted(found["tags"]) == ["management", "monitoring"]
    assert found["limits"] == {"max-channels": 5}
    assert _can_log_in(declare, user, password)
    assert declare("plan", path, "--detailed-exitcode", env=env).code == 0

    only_audit = f"  - {{user: {user}, exchange: audit, write: '^audit\\.', read: '.*'}}"
    path = write("management, monitoring", -1, only_audit)
    pruned = declare("apply", path, "--prune", env=env)
    assert pruned.code == 0, pruned
    assert [(t["exchange"], t["write"]) for t in _topic_permissions(declare, user)] == [
        ("audit", "^audit\\.")
    ]
    assert (_user(declare, user) or {}).get("limits") in ({}, None, [])
    assert declare("plan", path, "--prune", "--detailed-exitcode", env=env).code == 0
    assert password not in plan.text + pruned.text


def test_json_plan_of_users(declare: Any, users: list[str]) -> None:
    """The JSON contract (format 1) carries users and permissions, without any password or
    hash."""
    password = "js0n-" + uuid.uuid4().hex
    path = _access_file(declare, users[0])
    result = declare("plan", path, "--format", "json", env={"APP_PASSWORD": password})
    assert result.code == 0, result
    doc = json.loads(result.out)
    assert doc["format"] == 1
    kinds = {(c["kind"], c["action"]) for c in doc["changes"]}
    assert {("user", "create"), ("permission", "create"), ("topic permission", "create")} <= kinds
    user = next(c for c in doc["changes"] if c["kind"] == "user")
    assert user["after"]["password_env"] == "APP_PASSWORD"
    assert "password_hash" not in user["after"]
    assert user["location"] == "access.yml:2"
    assert password not in result.text


def test_literal_password_is_refused_with_strict(declare: Any, users: list[str]) -> None:
    """`password:` in a file is a warning (issue 19: the broker's import accepts it);
    `--strict` refuses it with file:line, without echoing it, and makes nothing.
    (test_real_files_broker.py applies one.)"""
    path = declare.write(
        "access.yml",
        f"""
    users:
      - name: {users[0]}
        password: hunter2-literal
    """,
    )
    result = declare("apply", "--strict", path)
    declare.assert_clean_failure(result)
    assert "access.yml:3:" in result.err and "a literal password" in result.err
    assert "hunter2-literal" not in result.text
    assert _user(declare, users[0]) is None


def test_missing_password_env_names_the_variable(declare: Any, users: list[str]) -> None:
    """An unset password_env is an error naming the variable and the line; nothing written."""
    path = _access_file(declare, users[0], env="NOT_SET_ANYWHERE_12")
    result = declare("apply", path)
    declare.assert_clean_failure(result)
    assert "access.yml:2:" in result.err and "NOT_SET_ANYWHERE_12 is not set" in result.err
    assert _user(declare, users[0]) is None


def test_password_file_and_hash_and_no_password(
    declare: Any, users: list[str], tmp_path: Any
) -> None:
    """password_file (0600) and password_hash work, and a user without a password (x509)
    is created without one; all re-plan as no change."""
    secret = "f1le-" + uuid.uuid4().hex
    pw = tmp_path / "pw"
    pw.write_text(secret + "\n")
    pw.chmod(0o600)
    import base64
    import hashlib

    salt = b"\x01\x02\x03\x04"
    hashed = base64.b64encode(salt + hashlib.sha256(salt + b"hash-pw-1").digest()).decode()
    path = declare.write(
        "access.yml",
        f"""
    users:
      - {{name: {users[0]}, password_file: {pw}}}
      - {{name: {users[1]}, password_hash: '{hashed}',
          hashing_algorithm: rabbit_password_hashing_sha256}}
      - {{name: {users[2]}, tags: [management]}}
    permissions:
      - {{user: {users[0]}, configure: '', write: '', read: '.*'}}
      - {{user: {users[1]}, configure: '', write: '', read: '.*'}}
    """,
    )
    result = declare("apply", path)
    assert result.code == 0, result
    assert _can_log_in(declare, users[0], secret)
    assert _can_log_in(declare, users[1], "hash-pw-1")
    assert _user(declare, users[2])["password_hash"] == ""  # type: ignore[index]
    again = declare("plan", path, "--detailed-exitcode")
    assert again.code == 0, again
    assert "readable by group or others" not in again.err
    assert secret not in result.text + again.text
    pw.chmod(0o644)
    loose = declare("plan", path)
    assert f"password_file {pw} is readable by group or others; make it 0600" in loose.err


def test_prune_users_and_permissions(declare: Any, users: list[str]) -> None:
    """With --prune, permissions and topic permissions the files no longer list are deleted
    in their vhosts, and so is a user whose permissions were all there; the connecting user
    and guest are never deleted."""
    keep, gone = users[0], users[1]
    path = declare.write(
        "access.yml",
        f"""
    users:
      - {{name: {keep}, password_env: P1}}
      - {{name: {gone}, password_env: P1}}
    permissions:
      - {{user: {keep}, configure: '.*', write: '.*', read: '.*'}}
      - {{user: {gone}, configure: '.*', write: '.*', read: '.*'}}
    topic_permissions:
      - {{user: {keep}, exchange: amq.topic, write: '.*', read: '.*'}}
    """,
    )
    env = {"P1": "pr-" + uuid.uuid4().hex}
    assert declare("apply", path, env=env).code == 0
    declare.write(
        "access.yml",
        f"""
    users:
      - {{name: {keep}, password_env: P1}}
      - {{name: {declare.broker.user}, absent: true}}
    permissions:
      - {{user: {keep}, configure: '.*', write: '.*', read: '.*'}}
    topic_permissions: []
    """,
    )
    plan = declare("plan", path, "--prune", env=env)
    assert plan.code == 0, plan
    assert f"- user     {gone}" in plan.out
    assert f"- permission {gone}" in plan.out
    assert f"- topic permission {keep} on amq.topic" in plan.out
    assert "not deleted: it is the user declare-amqp connects as" in plan.err
    applied = declare("apply", path, "--prune", env=env)
    assert applied.code == 0, applied
    assert _user(declare, gone) is None and _user(declare, keep) is not None
    assert _topic_permissions(declare, keep) == []
    assert _user(declare, declare.broker.user) is not None
    assert _permissions(declare, declare.broker.user) is not None  # still connects
    assert declare("plan", path, "--prune", "--detailed-exitcode", env=env).code == 0


def test_export_users_and_permissions_round_trip(declare: Any, users: list[str]) -> None:
    """Export writes the vhost's metadata and limits, its users (with their hash, never a
    password) and permissions; planning the export against the same broker is a no-op."""
    password = "exp-" + uuid.uuid4().hex
    assert (
        declare("apply", _access_file(declare, users[0]), env={"APP_PASSWORD": password}).code == 0
    )
    declare.put(f"/api/vhosts/{q(declare.vhost, safe='')}", {"description": "exported one"})
    declare.put(f"/api/vhost-limits/{q(declare.vhost, safe='')}/max-queues", {"value": 9})
    exported = declare(
        "export",
        "--vhost",
        declare.vhost,
        "-o",
        "export.yml",
        connect=False,
        env={
            "AMQP_URL": declare.broker.url_for(declare.vhost),
            "RABBITMQ_MANAGEMENT_URL": declare.broker.management_url,
        },
    )
    assert exported.code == 0, exported
    text = (declare.workdir / "export.yml").read_text()
    assert f"name: {users[0]}" in text and "password_hash:" in text
    assert "description: exported one" in text and "max_queues: 9" in text
    assert password not in text
    again = declare("plan", "export.yml", "--detailed-exitcode")
    assert again.code == 0, again


def test_export_of_every_access_kind_round_trips_in_both_formats(
    declare: Any, users: list[str]
) -> None:
    """A vhost with metadata and limits, a user with limits (password from the environment)
    and one without a password, permissions, topic permissions and an operator policy:
    `export` and `export --format definitions` both write every kind (hashes, never a
    password), and each plans to nothing with --prune against the same broker; a change
    on the broker afterwards is found again by both. (Upstreams and shovels need their
    plugins: tests/tls/test_federation_shovel.py makes the same round trip with them.)"""
    password = "every-" + uuid.uuid4().hex
    path = declare.write(
        "every.yml",
        f"""
    vhosts:
      - name: {declare.vhost}
        description: every kind
        tags: [export]
        max_connections: 30
        max_queues: 20
    users:
      - {{name: {users[0]}, tags: [monitoring], password_env: APP_PASSWORD,
         max_connections: 4, max_channels: 8}}
      - {{name: {users[1]}, tags: []}}
    permissions:
      - {{user: {users[0]}, configure: '^app\\.', write: '^app\\.', read: '.*'}}
      - {{user: {users[1]}, configure: '', write: '', read: '^x509\\.'}}
    topic_permissions:
      - {{user: {users[0]}, exchange: amq.topic, write: '^app\\.', read: '.*'}}
    operator_policies:
      - {{name: cap, pattern: '^app\\.', definition: {{max-length: 10}}, priority: 3}}
    queues:
      - name: app.q
    """,
    )
    applied = declare("apply", path, env={"APP_PASSWORD": password})
    assert applied.code == 0, applied
    outputs = [applied.text]
    for name, fmt in (("every-export.yml", "yaml"), ("every-export.json", "definitions")):
        exported = declare("export", "--vhost", declare.vhost, "--format", fmt, "-o", name)
        assert exported.code == 0, exported
        text = (declare.workdir / name).read_text()
        outputs += [exported.text, text]
        for needle in (users[0], users[1], "every kind", "^x509", "max-length", "amq.topic"):
            assert needle in text, (name, needle)
        plan = declare("plan", name, "--prune", "--detailed-exitcode")
        assert plan.code == 0 and "No changes" in plan.out, (name, plan)
        outputs.append(plan.text)
    definitions = json.loads((declare.workdir / "every-export.json").read_text())
    (app,) = [u for u in definitions["users"] if u["name"] == users[0]]
    assert app["limits"] == {"max-connections": 4, "max-channels": 8}
    assert app["password_hash"] and "password" not in app
    (x509,) = [u for u in definitions["users"] if u["name"] == users[1]]
    assert x509["password_hash"] == ""
    # drift on the broker is seen through both exported files
    declare.put(f"/api/user-limits/{q(users[0], safe='')}/max-channels", {"value": 9})
    declare.put(f"/api/vhost-limits/{q(declare.vhost, safe='')}/max-queues", {"value": 21})
    for name in ("every-export.yml", "every-export.json"):
        drift = declare("plan", name, "--detailed-exitcode")
        assert drift.code == 2, (name, drift)
        assert "max_channels" in drift.out and "max_queues" in drift.out, (name, drift)
        outputs.append(drift.text)
    for text in outputs:
        assert password not in text


def test_vhost_metadata_and_limits(declare: Any) -> None:
    """description, tags and limits of an existing vhost are updated in place and re-plan
    as no change; a different default_queue_type is a conflict (it is fixed at creation)."""
    path = declare.write(
        "vhost.yml",
        f"""
    vhosts:
      - name: {declare.vhost}
        description: invoices and receipts
        tags: [billing]
        max_connections: 200
        max_queues: 500
    """,
    )
    plan = declare("plan", path, "--detailed-exitcode")
    assert plan.code == 2, plan
    assert "description" in plan.out and "max_queues" in plan.out
    assert declare("apply", path).code == 0
    with declare.broker.http() as http:
        vhost = http.get(f"/api/vhosts/{q(declare.vhost, safe='')}").json()
        limits = http.get(f"/api/vhost-limits/{q(declare.vhost, safe='')}").json()
    assert vhost["description"] == "invoices and receipts"
    assert vhost["tags"] in (["billing"], "billing")
    assert limits[0]["value"] == {"max-connections": 200, "max-queues": 500}
    assert declare("plan", path, "--detailed-exitcode").code == 0
    declare.edit(path, "max_queues: 500", "max_queues: 500\n    default_queue_type: stream")
    conflict = declare("apply", path)
    assert conflict.code == 1, conflict
    assert "default_queue_type" in conflict.out and "conflict" in conflict.out


def test_new_vhost_with_metadata(declare: Any) -> None:
    """A new vhost is created with its description, default queue type and limits in one
    apply; a queue that names no type becomes a quorum queue there."""
    name = f"wt12-new-{uuid.uuid4().hex[:8]}"
    path = declare.write(
        "vhost.yml",
        f"""
    vhosts:
      - name: {name}
        description: made with its metadata
        default_queue_type: quorum
        max_queues: 7
    queues:
      - name: typeless
        vhost: {name}
    """,
    )
    try:
        result = declare("apply", path)
        assert result.code == 0, result
        with declare.broker.http() as http:
            vhost = http.get(f"/api/vhosts/{name}").json()
            limits = http.get(f"/api/vhost-limits/{name}").json()
        assert vhost["description"] == "made with its metadata"
        assert vhost["default_queue_type"] == "quorum"
        assert limits[0]["value"] == {"max-queues": 7}
        queue = declare.queue("typeless", name)
        assert queue["arguments"].get("x-queue-type") == "quorum", queue
        assert declare("plan", path, "--detailed-exitcode").code == 0
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/vhosts/{name}")


def test_no_output_of_a_run_contains_a_password(
    declare: Any, users: list[str], tmp_path: Any
) -> None:
    """Every command of a whole run with real passwords (validate, plan and apply in text and
    JSON, a changed password, prune, export, errors, the debug mode) is grepped for them: none
    appears anywhere, also not URL-quoted."""
    passwords = ["Pw-one-" + uuid.uuid4().hex, "Pw/two+" + uuid.uuid4().hex]
    pw_file = tmp_path / "pw2"
    pw_file.write_text(passwords[1] + "\n")
    pw_file.chmod(0o600)
    path = declare.write(
        "access.yml",
        f"""
    users:
      - {{name: {users[0]}, password_env: PW_ONE, tags: [management]}}
      - {{name: {users[1]}, password_file: {pw_file}}}
    permissions:
      - {{user: {users[0]}, configure: '.*', write: '.*', read: '.*'}}
      - {{user: {users[1]}, configure: '', write: '', read: '.*'}}
    queues:
      - name: app.q
    """,
    )
    env = {"PW_ONE": passwords[0], "DECLARE_AMQP_DEBUG": "1"}
    outputs = []
    for args in (
        ("validate", path),
        ("plan", path),
        ("plan", path, "--format", "json"),
        ("apply", path, "--format", "json"),
        ("plan", path, "--prune"),
        ("export", "-o", "export.yml"),
    ):
        result = declare(*args, env=env)
        assert result.code == 0, result
        outputs.append(result.text)
    outputs.append((declare.workdir / "export.yml").read_text())
    # the password changes: the plan says so, without either value
    changed = {**env, "PW_ONE": "Pw-three-" + uuid.uuid4().hex}
    passwords.append(changed["PW_ONE"])
    for args in (("plan", path), ("plan", path, "--format", "json"), ("apply", path)):
        result = declare(*args, env=changed)
        assert result.code == 0, result
        outputs.append(result.text)
    assert "password (changed)" in outputs[-3]
    # errors: a bad regex next to the users, a user logging in with the app's password
    declare.write(
        "bad.yml",
        f"""
    users:
      - {{name: {users[0]}, password_env: PW_ONE}}
    permissions:
      - {{user: {users[0]}, configure: '(', write: '', read: ''}}
    """,
    )
    outputs.append(declare("apply", "bad.yml", env=changed).text)
    as_app = declare(
        "plan",
        path,
        "--url",
        declare.url(user=users[0], password=passwords[2]),
        "--management-url",
        declare.broker.management_url,
        connect=False,
        env=changed,
    )
    assert as_app.code == 1
    outputs.append(as_app.text)
    text = "\n".join(outputs)
    assert users[0] in text  # the outputs are about these users
    for password in passwords:
        for form in (password, q(password, safe=""), q(password)):
            assert form not in text, f"a password was printed: {form[:6]}..."


def test_operator_policies(declare: Any) -> None:
    """Operator policies are created, re-plan as no change, update in place, refuse keys the
    broker does not allow there (file:line, before any write), and are pruned."""
    path = declare.write(
        "op.yml",
        """
    operator_policies:
      - name: cap
        pattern: '.*'
        definition: {max-length: 1000, message-ttl: 60000}
    """,
    )
    assert declare("apply", path).code == 0
    with declare.broker.http() as http:
        found = http.get(f"/api/operator-policies/{q(declare.vhost, safe='')}").json()
    assert [(p["name"], p["definition"]) for p in found] == [
        ("cap", {"max-length": 1000, "message-ttl": 60000})
    ]
    assert declare("plan", path, "--detailed-exitcode").code == 0
    declare.edit(path, "max-length: 1000", "max-length: 2000")
    plan = declare("plan", path)
    assert "~ operator policy cap  definition:" in plan.out, plan
    assert declare("apply", path).code == 0

    declare.edit(path, "max-length: 2000", "max-priority: 5")
    refused = declare("apply", path)
    declare.assert_clean_failure(refused)
    assert (
        "op.yml:2:" in refused.err and "'max-priority' cannot be set by an operator" in refused.err
    )
    declare.write(path, "operator_policies: []\n")
    assert declare("apply", path, "--prune", "--vhost", declare.vhost).code == 0
    with declare.broker.http() as http:
        assert http.get(f"/api/operator-policies/{q(declare.vhost, safe='')}").json() == []


def test_federation_without_its_plugin_names_the_plugin(declare: Any) -> None:
    """On a broker without rabbitmq_federation / rabbitmq_shovel (the shared local one), the
    error names the plugin, with file:line, and nothing is written."""
    path = declare.write(
        "fed.yml",
        """
    queues:
      - name: not.made
    federation_upstreams:
      - {name: up, uri_env: UP_URI}
    shovels:
      - {name: mv, src_uri_env: UP_URI, src_queue: a, dest_uri_env: UP_URI, dest_queue: b}
    """,
    )
    result = declare("apply", path, env={"UP_URI": "amqp://u:Sekr1t@127.0.0.1/"})
    with declare.broker.http() as http:
        # (4.x's /api/nodes lists no applications; the plugin's exchange type shows it)
        types = {x["name"] for x in http.get("/api/overview").json()["exchange_types"]}
    if "x-federation-upstream" in types:
        pytest.skip(
            "this broker runs the federation plugin (the 4.x container: "
            "tests/tls/test_federation_shovel.py covers it there)"
        )
    declare.assert_clean_failure(result)
    assert "fed.yml:4:" in result.err and "rabbitmq_federation plugin is not enabled" in result.err
    assert "fed.yml:6:" in result.err and "rabbitmq_shovel plugin" in result.err
    assert "Sekr1t" not in result.text
    assert declare.is_empty()

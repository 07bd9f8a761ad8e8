"""The net under apply: a write the broker refuses part-way makes apply undo what this run
wrote ("rolled back: the broker is as it was"), or list by name what it could not undo.

Refusals injected mid-apply, each with its own input:
- the broker changes between plan and apply (another client declares a queue of the file with
  other arguments), through the library, so the plan is made before the change;
- a user whose configure permission does not cover every queue and who cannot read its own
  permissions (a policymaker), through the command line;
- a queue that prune deletes takes a message between plan and apply, so its delete is refused
  a phase after the access objects were written (users, permissions, topic permissions, vhost
  settings, operator policies, and upstreams and shovels where the plugins run): the broker's
  access objects, compared through the management API, are as they were before.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from declare_amqp import Session, load
from declare_amqp._address import resolve_address

TOPOLOGY = """
exchanges:
  - name: e1
    type: direct
queues:
  - name: q-ok
    bindings:
      - exchange: e1
        binding_key: ok
  - name: q-late
    max_length: 100
    bindings:
      - exchange: e1
        binding_key: late
policies:
  - name: p-new
    pattern: "^q-ok$"
    apply_to: queues
    definition: {message-ttl: 60000}
  - name: p-old
    pattern: "^nothing$"
    apply_to: queues
    definition: {max-length: 20}
"""


def _state(declare: Any) -> dict[str, Any]:
    """What the broker holds in the test vhost, comparable before and after."""
    d = declare.definitions()
    return {
        "exchanges": sorted(x["name"] for x in d["exchanges"]),
        "queues": sorted((q["name"], sorted(q["arguments"].items())) for q in d["queues"]),
        "bindings": sorted(declare.bindings()),
        "policies": sorted(
            (p["name"], sorted(p["definition"].items())) for p in d.get("policies", [])
        ),
    }


def test_a_refusal_between_plan_and_apply_is_rolled_back(declare: Any) -> None:
    declare.put(
        f"/api/policies/{declare.quote(declare.vhost)}/p-old",
        {"pattern": "^nothing$", "definition": {"max-length": 10}, "apply-to": "queues"},
    )
    f = declare.write("topology.yml", TOPOLOGY)
    address = resolve_address(
        [declare.broker.url_for(declare.vhost)], [declare.broker.management_url]
    )
    with Session(address) as session:
        desired = load([str(declare.workdir / f)], default_vhost=declare.vhost)
        plan = session.plan(desired)
        assert len(plan.writes) == 7  # e1, p-new, p-old (update), 2 queues, 2 bindings
        # another client declares q-late first, with other arguments: the broker refuses ours
        with pika.BlockingConnection(
            pika.URLParameters(declare.broker.url_for(declare.vhost))
        ) as c:
            c.channel().queue_declare("q-late", durable=True, arguments={"x-max-length": 5})
        before = _state(declare)
        result = session.apply(desired, plan)
    assert not result.ok
    assert [f.change.name for f in result.failures] == ["q-late"], result.failures
    assert result.rollback is not None and result.rollback.complete, result.rollback
    assert _state(declare) == before  # p-old back to 10, e1, q-ok, p-new, bindings gone
    assert ("p-old", [("max-length", 10)]) in before["policies"]
    assert result.to_dict()["rolled_back"] is True


def _as(declare: Any, user: str, password: str, *args: str, port: int | None = None) -> Any:
    """``declare-amqp ARGS`` as ``user`` (on ``port`` instead of the broker's, if given)."""
    url = declare.url(user=user, password=password, port=port)
    return declare(
        *args, "--url", url, "--management-url", declare.broker.management_url, connect=False
    )


@contextlib.contextmanager
def _user(declare: Any, tags: str, configure: str) -> Iterator[tuple[str, str]]:
    """A user with ``tags`` who may configure what ``configure`` matches in the test vhost
    (and write and read everything); deleted afterwards."""
    name, password = f"h19-{tags[:5]}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    declare.put(f"/api/users/{name}", {"password": password, "tags": tags})
    declare.put(
        f"/api/permissions/{declare.quote(declare.vhost)}/{name}",
        {"configure": configure, "write": ".*", "read": ".*"},
    )
    try:
        yield name, password
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/users/{name}")


@pytest.fixture
def policymaker(declare: Any) -> Iterator[tuple[str, str]]:
    """A policymaker who may configure e1 and q-ok only (not q-late), in the test vhost."""
    with _user(declare, "policymaker", "^(e1|q-ok)$") as user:
        yield user


def test_a_permission_refusal_mid_apply_is_rolled_back(
    declare: Any, policymaker: tuple[str, str]
) -> None:
    user, password = policymaker
    f = declare.write("topology.yml", TOPOLOGY)
    before = _state(declare)
    result = _as(declare, user, password, "apply", f)
    assert result.code == 1, result
    assert "q-late" in result.err and "403" in result.err, result
    assert "rolled back: the broker is as it was" in result.err, result
    assert "note: the permission check was skipped" in result.out, result
    assert password not in result.text
    assert _state(declare) == before
    # and a rerun by an administrator converges as usual
    assert declare("apply", f).code == 0
    assert declare.names("queues") == {"q-ok", "q-late"}


def test_a_rerun_after_sigkill_mid_apply_converges(declare: Any) -> None:
    """SIGKILL cannot roll back: the apply is killed with part of the topology written, and
    the next apply finishes it (plan afterwards: nothing to do)."""
    import signal

    from waiting import wait_until_blocking

    count = 1500
    text = "exchanges:\n  - name: fan\n    type: topic\nqueues:\n" + "".join(
        f"  - name: q{i:04}\n    bindings:\n      - exchange: fan\n        binding_key: k{i}\n"
        for i in range(count)
    )
    f = declare.write("big.yml", text)
    # JSON prints nothing before the apply ends: the text plan (3,001 lines) would fill the
    # pipe, which this test reads only after the kill
    proc = declare.start("apply", "--format", "json", f)

    def some_written() -> bool:
        assert proc.poll() is None, "the apply ended before it could be killed"
        return bool(declare.names("queues"))

    wait_until_blocking(some_written, 120, "the first queues written")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    partial = len(declare.names("queues"))
    assert 0 < partial < count, f"killed too late to test a partial apply ({partial} queues)"
    rerun = declare("apply", f)
    assert rerun.code == 0, rerun
    assert len(declare.names("queues")) == count
    assert len(declare.bindings()) == count
    assert declare("plan", "--detailed-exitcode", f).code == 0


def test_an_administrator_s_permissions_are_checked_at_plan_time(declare: Any) -> None:
    """An administrator may read its permissions: a queue its configure permission misses is
    refused by plan and apply with file, line and object, before the first write."""
    with _user(declare, "administrator", "^(e1|q-ok)$") as (name, password):
        f = declare.write("topology.yml", TOPOLOGY)
        for command in ("plan", "apply"):
            result = _as(declare, name, password, command, f)
            declare.assert_clean_failure(result)
            line = declare.line_of(f, "name: q-late")
            assert f"topology.yml:{line}: queue 'q-late'" in result.err, result
            assert f"user '{name}' may not create it" in result.err, result
            assert "configure on queue 'q-late'" in result.err, result
        assert declare.is_empty()
        assert declare.definitions().get("policies", []) == []


def test_the_broker_identity_check_works_for_a_policymaker(
    declare: Any, policymaker: tuple[str, str]
) -> None:
    """A non-administrator sees no listeners in the overview; before, the check that the
    management API belongs to the --url broker was skipped and `plan --url ...:PORT/` printed
    a plan for a broker it never reached, exit 0. Now the AMQP port's greeting must name the
    management API's cluster (and does, for the real port)."""
    user, password = policymaker
    f = declare.write("topology.yml", "queues:\n  - name: fine\n")
    wrong = _as(declare, user, password, "plan", f, port=declare.closed_port())
    declare.assert_clean_failure(wrong)
    assert "but no broker of that cluster answers" in wrong.err, wrong
    assert password not in wrong.text
    right = _as(declare, user, password, "plan", f)
    assert right.code == 0, right


# ------------------------------------------------------------------ access objects


def _tags(value: Any) -> list[str]:
    """A user's or vhost's tags as the broker lists them (a list, or "a,b" on older ones)."""
    if isinstance(value, str):
        value = [t for t in value.split(",") if t]
    return sorted(value or [])


def _access_state(declare: Any, users: set[str]) -> dict[str, Any]:
    """What the management API shows of ``users`` and of the access objects of the test
    vhost: users with their stored hash, algorithm and tags, user limits, permissions, topic
    permissions, the vhost's metadata and limits, operator policies and parameters."""
    v = declare.quote(declare.vhost)
    with declare.broker.http() as http:

        def get(path: str) -> Any:
            response = http.get(path)
            response.raise_for_status()
            return response.json()

        vhost = get(f"/api/vhosts/{v}")
        return {
            "users": sorted(
                (u["name"], u.get("password_hash"), u.get("hashing_algorithm"), _tags(u["tags"]))
                for u in get("/api/users")
                if u["name"] in users
            ),
            "user_limits": sorted(
                (u["user"], sorted(u["value"].items()))
                for u in get("/api/user-limits")
                if u["user"] in users
            ),
            "permissions": sorted(sorted(p.items()) for p in get(f"/api/vhosts/{v}/permissions")),
            "topic_permissions": sorted(
                sorted(p.items()) for p in get(f"/api/vhosts/{v}/topic-permissions")
            ),
            "vhost": (vhost.get("description"), _tags(vhost.get("tags"))),
            "vhost_limits": get(f"/api/vhost-limits/{v}"),
            "operator_policies": sorted(
                sorted((k, repr(x)) for k, x in p.items())
                for p in get(f"/api/operator-policies/{v}")
            ),
            "parameters": sorted(
                repr(sorted(p.items()))
                for p in get("/api/parameters")
                if p["vhost"] == declare.vhost
            ),
        }


@contextlib.contextmanager
def _users(declare: Any, *names: str) -> Iterator[None]:
    """Deletes ``names`` afterwards (whatever the test left)."""
    try:
        yield
    finally:
        with declare.broker.http() as http:
            for name in names:
                http.delete(f"/api/users/{name}")


ACCESS = """
vhosts:
  - name: {vhost}
    description: written, then rolled back
    max_queues: 50
users:
  - name: {new}
    password_hash: {new_hash}
    tags: [management]
  - name: {old}
    password_hash: {old_hash}
    tags: [policymaker]
    max_connections: 7
permissions:
  - user: {new}
    configure: ".*"
  - user: {old}
    configure: "^only$"
    write: "^only$"
    read: "^only$"
topic_permissions:
  - user: {new}
    exchange: amq.topic
    write: "^a"
    read: "^b"
operator_policies:
  - name: op-new
    pattern: "^q"
    definition: {{max-length: 1000}}
queues:
  - name: q-ok
"""


PARAMETERS = """
federation_upstreams:
  - {name: up-new, uri_env: ROLLBACK_UP_URI}
shovels:
  - {name: sh-new, src_uri_env: ROLLBACK_UP_URI, src_queue: a,
     dest_uri_env: ROLLBACK_UP_URI, dest_queue: b}
"""
UP_URI = "amqp://rollback:Sekr1t-uri@127.0.0.1:5672/"


def _runs_federation_and_shovels(declare: Any) -> bool:
    """Whether the broker runs rabbitmq_federation and rabbitmq_shovel (the 4.x container
    does; the shared local 3.10 broker does not)."""
    with declare.broker.http() as http:
        shovels = http.get("/api/shovels").status_code == 200
    return shovels and "x-federation-upstream" in declare.exchange_types()


def _refused_after_the_access_writes(
    declare: Any, text: str
) -> tuple[Any, dict[str, Any], Any, Any]:
    """Plan ``text`` with prune (the file's vhost holds ``q-stale``, empty at plan time), then
    publish into q-stale so the broker refuses its delete, a phase after the access objects
    are written; apply. Returns (the plan, the broker's topology before, the result, a
    callable reading the topology)."""
    with pika.BlockingConnection(pika.URLParameters(declare.broker.url_for(declare.vhost))) as c:
        c.channel().queue_declare("q-stale", durable=True)
    f = declare.write("access.yml", text)
    address = resolve_address(
        [declare.broker.url_for(declare.vhost)], [declare.broker.management_url]
    )
    with Session(address) as session:
        desired = load([str(declare.workdir / f)], default_vhost=declare.vhost)
        plan = session.plan(desired, prune=True)
        with pika.BlockingConnection(
            pika.URLParameters(declare.broker.url_for(declare.vhost))
        ) as c:
            c.channel().basic_publish("", "q-stale", b"keep me")
        before = _state(declare)
        result = session.apply(desired, plan)
    return plan, before, result, _state


def test_access_writes_are_undone_when_a_later_write_is_refused(
    declare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that creates a user, a permission, a topic permission, an operator policy and
    vhost limits (and, where the plugins run, a federation upstream and a shovel), and updates
    an existing user (hash, tags, a limit), an existing permission and the vhost's
    description, is refused after those writes: the broker's users, permissions, limits,
    operator policies and parameters are afterwards exactly what the management API showed
    before, and the summary says so."""
    from declare_amqp.kinds.user import rabbit_hash

    plugins = _runs_federation_and_shovels(declare)
    monkeypatch.setenv("ROLLBACK_UP_URI", UP_URI)

    tag = uuid.uuid4().hex[:8]
    new, old = f"rollback-new-{tag}", f"rollback-old-{tag}"
    with _users(declare, new, old):
        declare.put(f"/api/users/{old}", {"password": uuid.uuid4().hex, "tags": "monitoring"})
        declare.put(
            f"/api/permissions/{declare.quote(declare.vhost)}/{old}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        access_before = _access_state(declare, {new, old})
        text = ACCESS.format(
            vhost=declare.vhost,
            new=new,
            old=old,
            new_hash=rabbit_hash("new-password", b"salt"),
            old_hash=rabbit_hash("changed-password", b"pepr"),
        ) + (PARAMETERS if plugins else "")
        plan, before, result, state = _refused_after_the_access_writes(declare, text)
        written = sorted((c.action.value, str(c.kind), c.name) for c in plan.writes)
        assert written == sorted(
            [
                ("update", "vhost", declare.vhost),
                ("create", "user", new),
                ("update", "user", old),
                ("create", "permission", new),
                ("update", "permission", old),
                ("create", "topic permission", f"{new} on amq.topic"),
                ("create", "operator policy", "op-new"),
                ("create", "queue", "q-ok"),
                ("delete", "queue", "q-stale"),
                *(
                    [("create", "federation upstream", "up-new"), ("create", "shovel", "sh-new")]
                    if plugins
                    else []
                ),
            ]
        ), written
        assert not result.ok
        assert [f.change.name for f in result.failures] == ["q-stale"], result.failures
        rollback = result.rollback
        assert rollback is not None and rollback.complete, rollback
        assert rollback.summary().startswith("rolled back: the broker is as it was"), rollback
        assert len(rollback.undone) == (10 if plugins else 8), rollback
        assert "Sekr1t" not in repr(rollback) + repr(result.to_dict())
        assert _access_state(declare, {new, old}) == access_before
        assert state(declare) == before
        assert [u[0] for u in access_before["users"]] == [old]  # new was made, then undone


def test_an_access_write_that_cannot_be_undone_is_listed_by_name(
    declare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same refused run, with the broker refusing the operator policy's delete during the
    rollback (injected into the client): everything else is undone, and the summary names
    that operator policy and why it stays. Where federation runs, the run also updates an
    existing upstream's URI: it is written back as the broker held it (read just before the
    write), and no URI is shown."""
    from declare_amqp._errors import BrokerError
    from declare_amqp._management import ManagementClient

    plugins = _runs_federation_and_shovels(declare)
    monkeypatch.setenv("ROLLBACK_UP_URI", UP_URI)

    def refuse(self: Any, vhost: str, name: str) -> None:
        raise BrokerError(f"deleting operator policy '{name}': 503 Service Unavailable")

    monkeypatch.setattr(ManagementClient, "delete_operator_policy", refuse)
    tag = uuid.uuid4().hex[:8]
    new, old = f"rollback-new-{tag}", f"rollback-old-{tag}"
    with _users(declare, new, old):
        declare.put(f"/api/users/{old}", {"password": uuid.uuid4().hex, "tags": "monitoring"})
        if plugins:
            declare.put(
                f"/api/parameters/federation-upstream/{declare.quote(declare.vhost)}/up-old",
                {"value": {"uri": "amqp://old:Sekr1t-old@127.0.0.1:5672/"}},
            )
        access_before = _access_state(declare, {new, old})
        text = ACCESS.format(
            vhost=declare.vhost, new=new, old=old, new_hash="", old_hash=""
        ).replace("    password_hash: \n", "")
        if plugins:
            text += "federation_upstreams:\n  - {name: up-old, uri_env: ROLLBACK_UP_URI}\n"
        _, before, result, state = _refused_after_the_access_writes(declare, text)
        rollback = result.rollback
        assert rollback is not None and not rollback.complete, rollback
        summary = rollback.summary()
        assert "could not be undone" in summary, summary
        assert "Sekr1t" not in summary
        assert "Sekr1t" not in repr(rollback) + repr(result.to_dict())
        listed = sorted(rollback.not_undone)
        assert len(listed) == 1, rollback
        assert "operator policy 'op-new'" in listed[0], rollback
        assert "503 Service Unavailable" in listed[0], rollback
        if plugins:
            undone = [(str(c.kind), c.action.value, c.name) for c in rollback.undone]
            assert ("federation upstream", "update", "up-old") in undone, rollback
        after = _access_state(declare, {new, old})
        # op-new stays, as the summary says (3.x lists it among the parameters too); up-old
        # has the value it had before the run, URI and password included
        assert len(after.pop("operator_policies")) == 1
        kept = [p for p in after.pop("parameters") if "op-new" not in p]
        access_before.pop("operator_policies")
        assert kept == [p for p in access_before.pop("parameters") if "op-new" not in p]
        assert after == access_before
        assert state(declare) == before

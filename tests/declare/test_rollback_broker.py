"""The net under apply: a write the broker refuses part-way makes apply undo what this run
wrote ("rolled back: the broker is as it was"), or list by name what it could not undo.

Two refusals injected mid-apply, each with its own input:
- the broker changes between plan and apply (another client declares a queue of the file with
  other arguments), through the library, so the plan is made before the change;
- a user whose configure permission does not cover every queue and who cannot read its own
  permissions (a policymaker), through the command line.
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

"""The permission table of ``_permissions`` (no broker): what each write needs, the broker's
matching rules (unanchored, empty matches nothing, the default exchange as amq.default)."""

from __future__ import annotations

from declare_amqp._errors import Location
from declare_amqp._model import BindingSpec, ExchangeSpec, QueueSpec
from declare_amqp._permissions import Permissions, permission_problems
from declare_amqp._plan import CREATE, DELETE, Change

AT = Location("t.yml", 3)


def _create(spec: ExchangeSpec | QueueSpec | BindingSpec) -> Change:
    kind = {ExchangeSpec: "exchange", QueueSpec: "queue", BindingSpec: "binding"}[type(spec)]
    return Change(CREATE, kind, spec.vhost, spec.name, desired=spec)


def test_matching_rules() -> None:
    p = Permissions(configure="^app\\.", write="", read=".*")
    assert p.allows("configure", "app.q") and not p.allows("configure", "xapp.q")
    assert Permissions(configure="q").allows("configure", "my-q-1")  # unanchored
    assert not p.allows("write", "anything")  # the empty pattern matches nothing
    assert Permissions(read="^amq\\.default$").allows("read", "")


def test_each_write_needs_what_the_broker_checks() -> None:
    perms = {"v": Permissions(configure="^(e1|q1)$", write="^q1$", read="^e1$")}
    ok = [
        _create(ExchangeSpec(vhost="v", name="e1", type="direct")),
        _create(QueueSpec(vhost="v", name="q1")),
        _create(BindingSpec(vhost="v", source="e1", destination="q1")),
    ]
    assert permission_problems("u", ok, perms) == []
    refused = [
        _create(QueueSpec(vhost="v", name="q2", location=AT)),
        _create(QueueSpec(vhost="v", name="q1", arguments={"x-dead-letter-exchange": "dlx"})),
        _create(
            ExchangeSpec(
                vhost="v", name="e1", type="direct", arguments={"alternate-exchange": "ae"}
            )
        ),
        _create(BindingSpec(vhost="v", source="e2", destination="q1")),
        Change(DELETE, "queue", "v", "q3", actual=QueueSpec(vhost="v", name="q3")),
    ]
    shown = [str(p) for p in permission_problems("u", refused, perms)]
    assert shown[0].startswith("t.yml:3: queue 'q2' (vhost v): user 'u' may not create it")
    assert "configure on queue 'q2'" in shown[0] and "configure '^(e1|q1)$'" in shown[0]
    assert "write on exchange 'dlx'" in shown[1] and "read on queue 'q1'" in shown[1]
    assert "write on exchange 'ae'" in shown[2]
    assert "read on exchange 'e2'" in shown[3]
    assert "may not delete it" in shown[4]
    assert len(shown) == 5


def test_a_vhost_this_run_creates_is_not_checked() -> None:
    change = _create(QueueSpec(vhost="new", name="q"))
    assert permission_problems("u", [change], {}, new_vhosts=["new"]) == []
    assert len(permission_problems("u", [change], {})) == 1

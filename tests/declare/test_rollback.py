"""The rollback's undo of access objects, request by request, on a management API that only
records (no broker): each kind's ``undo`` hook deletes what a run created and writes back what
the broker held before an update; what cannot be written back is listed by name with its
reason; access objects are undone newest first and a vhost they stay in is not deleted.
The real brokers (3.10 and the 4.0 container) are in ``test_rollback_broker.py``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fake_http import FakeTransport, Request, Response, body_of, json_response

from declare_amqp import resolve_address
from declare_amqp._errors import DeclareAmqpError
from declare_amqp._management import ManagementClient
from declare_amqp._model import VhostSpec
from declare_amqp._plan import CREATE, DELETE, UPDATE, Change, Kind
from declare_amqp._rollback import roll_back
from declare_amqp.kinds import kind_of
from declare_amqp.kinds.operator_policy import OperatorPolicySpec
from declare_amqp.kinds.parameters import ParameterSpec
from declare_amqp.kinds.permission import PermissionSpec
from declare_amqp.kinds.user import UserSpec, rabbit_hash
from declare_amqp.kinds.vhost_settings import VHOST_SETTINGS, VhostSettings

OLD_HASH = rabbit_hash("old-password", b"salt", "rabbit_password_hashing_sha512")
NEW_HASH = rabbit_hash("new-password", b"pepr")

Requests = list[tuple[str, str, Any]]


def _client(requests: Requests) -> ManagementClient:
    """A management client whose broker records every request and answers 204."""

    def answer(request: Request) -> Response:
        if request.path == "/api/overview":
            return json_response(200, {"rabbitmq_version": "4.0.5", "listeners": []})
        body = body_of(request)
        requests.append((request.method, request.path, body))
        return Response(204)

    address = resolve_address(["amqp://guest:guest@broker.test:5672"], env={})
    return ManagementClient(address, transport=FakeTransport(answer))


def _undo(c: Change) -> Requests:
    requests: Requests = []
    with _client(requests) as management:
        kind_of(c.kind).undo(management, c)
    return requests


def test_an_updated_user_gets_back_its_hash_algorithm_tags_and_limits() -> None:
    before = UserSpec(
        "app",
        tags=("monitoring",),
        password_hash=OLD_HASH,
        hashing_algorithm="rabbit_password_hashing_sha512",
    )
    after = UserSpec("app", tags=("policymaker",), password_hash=NEW_HASH, max_connections=7)
    requests = _undo(Change(UPDATE, Kind.USER, "", "app", after, before))
    assert requests == [
        (
            "POST",
            "/api/definitions",
            {
                "users": [
                    {
                        "name": "app",
                        "password_hash": OLD_HASH,
                        "hashing_algorithm": "rabbit_password_hashing_sha512",
                        "tags": "monitoring",
                    }
                ]
            },
        ),
        ("DELETE", "/api/user-limits/app/max-connections", None),  # it had none
    ]


def test_a_created_user_and_permission_are_deleted() -> None:
    user = Change(CREATE, Kind.USER, "", "app", UserSpec("app", password_hash=NEW_HASH))
    grant = Change(CREATE, Kind.PERMISSION, "v", "app", PermissionSpec("app", "v", ".*"))
    assert _undo(user) == [("DELETE", "/api/users/app", None)]
    assert _undo(grant) == [("DELETE", "/api/permissions/v/app", None)]


def test_an_updated_permission_is_imported_back() -> None:
    before, after = PermissionSpec("app", "v", ".*", ".*", ".*"), PermissionSpec("app", "v", "^x$")
    requests = _undo(Change(UPDATE, Kind.PERMISSION, "v", "app", after, before))
    assert requests == [
        (
            "POST",
            "/api/definitions",
            {
                "permissions": [
                    {"vhost": "v", "user": "app", "configure": ".*", "write": ".*", "read": ".*"}
                ]
            },
        )
    ]


def test_an_updated_operator_policy_gets_its_definition_back() -> None:
    before = OperatorPolicySpec("v", "cap", "^q", {"max-length": 10}, "queues")
    after = OperatorPolicySpec("v", "cap", "^q", {"max-length": 99}, "queues")
    ((method, path, body),) = _undo(Change(UPDATE, Kind.OPERATOR_POLICY, "v", "cap", after, before))
    assert (method, path) == ("PUT", "/api/operator-policies/v/cap")
    assert body["definition"] == {"max-length": 10}


def test_a_vhost_that_had_no_limits_gets_no_limits_record_back() -> None:
    before = VhostSettings("v", description="", tags=())
    after = VhostSettings("v", description="new", tags=(), max_queues=50)
    diffs = tuple(VHOST_SETTINGS.differences(after, before))
    requests = _undo(Change(UPDATE, Kind.VHOST, "v", "v", after, before, diffs))
    assert requests == [
        ("PUT", "/api/vhosts/v", {"description": "", "tags": ""}),
        ("DELETE", "/api/vhost-limits/v/max-queues", None),
        ("DELETE", "/api/parameters/vhost-limits/v/limits", None),
    ]


def test_an_updated_upstream_is_written_back_as_the_broker_held_it() -> None:
    """The write reads the broker's value before it overwrites it; the undo PUTs that value
    back whole (its URI with its password: it never leaves memory). An update the client did
    not write cannot be undone, and says why."""
    before = ParameterSpec("federation upstream", "v", "up", uri_digests={"uri": "0" * 64})
    after = ParameterSpec("federation upstream", "v", "up", uri_refs={"uri": "$UP"})
    update = Change(UPDATE, Kind.FEDERATION_UPSTREAM, "v", "up", after, before)
    with pytest.raises(DeclareAmqpError, match="was not read before the write"):
        _undo(update)

    held = {"uri": "amqp://old:Sekr1t-old@origin.test", "prefetch-count": 100}
    requests: Requests = []

    def answer(request: Request) -> Response:
        if request.path == "/api/overview":
            return json_response(200, {"rabbitmq_version": "4.0.5", "listeners": []})
        body = body_of(request)
        requests.append((request.method, request.path, body))
        if request.method == "GET":
            return json_response(200, {"name": "up", "vhost": "v", "value": held})
        return Response(204)

    address = resolve_address(["amqp://guest:guest@broker.test:5672"], env={})
    upstream = kind_of(Kind.FEDERATION_UPSTREAM)
    with ManagementClient(address, transport=FakeTransport(answer)) as management:
        upstream.write(management, update, {"UP": "amqp://new:n3w@origin.test"})
        upstream.undo(management, update)
        with pytest.raises(DeclareAmqpError, match="was not read before the write"):
            upstream.undo(management, update)  # written back once, not twice
    path = "/api/parameters/federation-upstream/v/up"
    assert [(m, p) for m, p, _ in requests] == [("GET", path), ("PUT", path), ("PUT", path)]
    assert requests[1][2]["value"]["uri"] == "amqp://new:n3w@origin.test"
    assert requests[2][2] == {
        "component": "federation-upstream",
        "vhost": "v",
        "name": "up",
        "value": held,
    }
    created = Change(CREATE, Kind.SHOVEL, "v", "mv", ParameterSpec("shovel", "v", "mv"))
    assert _undo(created) == [("DELETE", "/api/parameters/shovel/v/mv", None)]


def test_a_delete_is_not_undone() -> None:
    gone = Change(DELETE, Kind.USER, "", "app", actual=UserSpec("app"))
    with pytest.raises(DeclareAmqpError, match="only a create or an update"):
        _undo(gone)


def test_access_is_undone_newest_first_and_a_vhost_something_stays_in_is_kept() -> None:
    """A run created vhost v, a user, its permission there and an operator policy, and
    updated an upstream in v: the three creates are undone newest first, the upstream is
    listed by name with its reason, and v is not deleted (the upstream stays in it)."""
    done = [
        Change(CREATE, Kind.VHOST, "v", "v", VhostSpec("v")),
        Change(CREATE, Kind.USER, "", "app", UserSpec("app", password_hash=NEW_HASH)),
        Change(CREATE, Kind.PERMISSION, "v", "app", PermissionSpec("app", "v", ".*")),
        Change(
            UPDATE,
            Kind.FEDERATION_UPSTREAM,
            "v",
            "up",
            ParameterSpec("federation upstream", "v", "up", uri_refs={"uri": "$UP"}),
            ParameterSpec("federation upstream", "v", "up"),
        ),
        Change(CREATE, Kind.OPERATOR_POLICY, "v", "cap", OperatorPolicySpec("v", "cap", "^q", {})),
    ]
    requests: Requests = []
    address = resolve_address(["amqp://guest:guest@broker.test:5672"], env={})
    with _client(requests) as management:
        rollback = asyncio.run(roll_back(address, management, done, 1))
    assert [(m, p) for m, p, _ in requests] == [
        ("DELETE", "/api/operator-policies/v/cap"),
        ("DELETE", "/api/permissions/v/app"),
        ("DELETE", "/api/users/app"),
    ]
    assert [c.name for c in rollback.undone] == ["cap", "app", "app"]
    assert not rollback.complete
    assert rollback.not_undone == (
        "federation upstream 'up' (vhost v): could not be undone: updated in place; its "
        "previous value was not read before the write, and the plan keeps its URIs only as "
        "digests, so it cannot be written back",
        "vhost 'v': not deleted: something this apply put in it could not be undone",
    )
    assert "could not be undone: federation upstream 'up'" in rollback.summary()


def test_a_refused_write_back_of_a_shovel_shows_none_of_its_uris() -> None:
    """The broker holds a shovel's URIs under hyphenated keys (``src-uri``); when it refuses
    the undo's PUT and echoes the value, the error names the shovel without its passwords."""
    before = ParameterSpec("shovel", "v", "mv", uri_digests={"src_uri": "0" * 64})
    after = ParameterSpec("shovel", "v", "mv", uri_refs={"src_uri": "$SRC", "dest_uri": "$DST"})
    update = Change(UPDATE, Kind.SHOVEL, "v", "mv", after, before)
    held = {
        "src-uri": "amqp://old:Sekr1t-src@origin.test",
        "dest-uri": ["amqp://old:Sekr1t-dst@a.test", "amqp://old:Sekr1t-dst2@b.test"],
        "src-queue": "a",
        "dest-queue": "b",
    }
    puts = 0

    def answer(request: Request) -> Response:
        nonlocal puts
        if request.path == "/api/overview":
            return json_response(200, {"rabbitmq_version": "4.0.5", "listeners": []})
        if request.method == "GET":
            return json_response(200, {"name": "mv", "vhost": "v", "value": held})
        puts += 1
        if puts == 1:
            return Response(204)
        return json_response(400, {"error": "bad_request", "reason": json.dumps(held)})

    address = resolve_address(["amqp://guest:guest@broker.test:5672"], env={})
    shovel = kind_of(Kind.SHOVEL)
    env = {"SRC": "amqp://new:n3w@origin.test", "DST": "amqp://new:n3w@dest.test"}
    with ManagementClient(address, transport=FakeTransport(answer)) as management:
        shovel.write(management, update, env)
        with pytest.raises(DeclareAmqpError) as refused:
            shovel.undo(management, update)
    text = str(refused.value)
    assert "shovel 'mv'" in text, text
    assert "Sekr1t" not in text, text

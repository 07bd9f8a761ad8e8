"""The management client's error paths, without a broker: httpx.MockTransport answers.

Each test pins which ``_errors`` type (and message) one answer of the management API, or
one failure of the network, becomes, and that the password never appears in it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from declare_amqp import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnreachable,
    ManagementUnavailable,
    PolicySpec,
    resolve_address,
)
from declare_amqp._management import ManagementClient
from declare_amqp.tls import TlsError

PASSWORD = "s3cret-pw"
ADDRESS = resolve_address([f"amqp://alice:{PASSWORD}@broker.test:5672"], env={})

Handler = Callable[[httpx.Request], httpx.Response]

OVERVIEW = {
    "rabbitmq_version": "3.10.8",
    "listeners": [{"protocol": "amqp", "port": 5672}],
    "exchange_types": [{"name": "direct"}, {"name": "topic"}],
}


def _client(handler: Handler) -> ManagementClient:
    return ManagementClient(ADDRESS, transport=httpx.MockTransport(handler))


def _broker(routes: dict[tuple[str, str], httpx.Response]) -> Handler:
    """Answers ``/api/overview`` like a broker, and ``routes`` as given (404 otherwise)."""

    def handle(request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.raw_path.decode())
        if key in routes:
            return routes[key]
        if key == ("GET", "/api/overview"):
            return httpx.Response(200, json=OVERVIEW)
        return httpx.Response(404, json={"error": "not_found", "reason": "Not Found"})

    return handle


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


def test_401_on_the_first_request_is_authentication_failed_without_the_password() -> None:
    """A 401 from /api/overview: wrong user or password, named by user, password hidden."""
    client = _client(lambda request: httpx.Response(401, json={"error": "not_authorised"}))
    with pytest.raises(AuthenticationFailed) as caught:
        client.read(["/"])
    assert "refused user 'alice'" in str(caught.value)
    assert "http://broker.test:15672" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_401_on_a_later_request_is_authentication_failed() -> None:
    client = _client(_broker({("GET", "/api/vhosts?columns=name"): httpx.Response(401)}))
    with pytest.raises(AuthenticationFailed, match="refused user 'alice'"):
        client.vhosts()


def test_unreachable_port_is_management_unavailable_naming_the_url() -> None:
    """Nothing listens (a wrong port): the management API does not answer; the message
    says how to enable it or fall back to AMQP only."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ManagementUnavailable) as caught:
        _client(refuse).read(["/"])
    text = str(caught.value)
    assert "http://broker.test:15672: ConnectError" in text
    assert "--amqp-only" in text
    assert PASSWORD not in text


def test_an_error_status_on_the_overview_is_management_unavailable() -> None:
    client = _client(lambda request: httpx.Response(503, text="starting"))
    with pytest.raises(ManagementUnavailable, match="HTTP 503"):
        client.read(["/"])


def test_a_broker_that_goes_away_after_answering_is_broker_unreachable() -> None:
    """The first request answered, a later one fails on the network: BrokerUnreachable,
    naming the request, with the password taken out of httpx's text."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/overview":
            return httpx.Response(200, json=OVERVIEW)
        raise httpx.ReadError(f"lost amqp://alice:{PASSWORD}@broker.test", request=request)

    with pytest.raises(BrokerUnreachable) as caught:
        _client(handle).vhosts()
    assert "GET /api/vhosts?columns=name failed" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ReadError)


def test_400_vhost_not_found_reads_as_a_missing_vhost() -> None:
    """RabbitMQ 3.10 answers 400 {"reason": "vhost_not_found"} for a vhost that does not
    exist: that is "nothing there yet", not an error."""
    client = _client(
        _broker(
            {
                ("GET", "/api/definitions/new"): _json(
                    400, {"error": "bad_request", "reason": "vhost_not_found"}
                )
            }
        )
    )
    assert client.definitions("new") is None
    state = client.read(["new"])
    assert state.topology.vhosts == () and state.topology.queues == ()
    assert state.version == "3.10.8"


def test_404_reads_as_a_missing_vhost() -> None:
    assert _client(_broker({})).definitions("gone") is None


def test_another_400_is_a_broker_error_with_the_readable_reason() -> None:
    """A refused write: the broker's reason, HTML entities and Erlang binaries made plain."""
    reason = 'Validation failed\n\n[{&lt;&lt;"ha-mode"&gt;&gt;,&lt;&lt;"all"&gt;&gt;}] bad\n'
    client = _client(_broker({("PUT", "/api/policies/%2F/p"): _json(400, {"reason": reason})}))
    with pytest.raises(BrokerError) as caught:
        client.put_policy(PolicySpec("/", "p", ".*", {"ha-mode": "all"}))
    assert str(caught.value) == (
        "writing policy 'p' in vhost '/': HTTP 400: Validation failed: [{\"ha-mode\",\"all\"}] bad"
    )
    assert type(caught.value) is BrokerError


def test_a_reason_that_is_not_json_is_shown_as_text() -> None:
    client = _client(_broker({("GET", "/api/definitions/v"): httpx.Response(500, text="boom")}))
    with pytest.raises(BrokerError, match="reading vhost 'v': HTTP 500: boom"):
        client.definitions("v")


def test_401_on_definitions_falls_back_to_reading_kind_by_kind() -> None:
    """A user without the administrator tag: /api/definitions answers 401, the objects are
    read one kind at a time instead."""
    routes = {
        ("GET", "/api/definitions/v"): httpx.Response(401),
        ("GET", "/api/exchanges/v"): _json(200, [{"name": "e", "type": "topic"}]),
        ("GET", "/api/queues/v?columns=name,type,durable,auto_delete,arguments"): _json(
            200, [{"name": "q", "durable": True, "arguments": {}}]
        ),
        ("GET", "/api/bindings/v"): _json(200, []),
        ("GET", "/api/policies/v"): _json(200, []),
    }
    found = _client(_broker(routes)).definitions("v")
    assert found is not None
    assert [x["name"] for x in found["exchanges"]] == ["e"]
    assert [q["name"] for q in found["queues"]] == ["q"]


def test_401_when_reading_kind_by_kind_is_authentication_failed() -> None:
    routes = {
        ("GET", "/api/definitions/v"): httpx.Response(401),
        ("GET", "/api/exchanges/v"): httpx.Response(401),
    }
    with pytest.raises(AuthenticationFailed, match="may not read vhost 'v'"):
        _client(_broker(routes)).definitions("v")


def test_management_api_of_another_broker_is_refused() -> None:
    """The API answers, but its broker listens for AMQP elsewhere: a BrokerError (planning
    against it would compare the files with the wrong broker)."""
    other = {**OVERVIEW, "listeners": [{"protocol": "amqp", "port": 5673}]}
    client = _client(lambda request: _json(200, other))
    with pytest.raises(BrokerError, match=r"AMQP listeners are on port\(s\) 5673, not 5672"):
        client.read(["/"])


def test_a_failed_tls_check_is_a_tls_error_at_once() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        failed = ssl.SSLCertVerificationError(1, "certificate verify failed")
        failed.verify_message = "self-signed certificate"
        raise httpx.ConnectError("TLS failed", request=request) from failed

    with pytest.raises(TlsError, match="TLS certificate verification failed at https?://"):
        _client(handle).read(["/"])


def test_overview_sets_version_and_exchange_types() -> None:
    routes = {
        ("GET", "/api/definitions/v"): _json(200, {"queues": [{"name": "q"}]}),
        ("GET", "/api/vhosts?columns=name,default_queue_type"): _json(
            200, [{"name": "v", "default_queue_type": "quorum"}]
        ),
    }
    client = _client(_broker(routes))
    state = client.read(["v"])
    assert [q.name for q in state.topology.queues] == ["q"]
    assert state.default_queue_types == {"v": "quorum"}
    assert state.version == "3.10.8"
    assert state.exchange_types == ("direct", "topic")
    assert client.node is not None and client.node.management_url == "http://broker.test:15672"

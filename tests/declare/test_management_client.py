"""The management client's error paths, without a broker: a fake transport answers.

Each test pins which ``_errors`` type (and message) one answer of the management API, or
one failure of the network, becomes, and that the password never appears in it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from fake_http import FakeTransport, Request, Response, text_response
from fake_http import json_response as _json

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

Handler = Callable[[Request], Response]

OVERVIEW = {
    "rabbitmq_version": "3.10.8",
    "listeners": [{"protocol": "amqp", "port": 5672}],
    "exchange_types": [{"name": "direct"}, {"name": "topic"}],
}


def _client(handler: Handler) -> ManagementClient:
    return ManagementClient(ADDRESS, transport=FakeTransport(handler))


def _broker(routes: dict[tuple[str, str], Response]) -> Handler:
    """Answers ``/api/overview`` like a broker, and ``routes`` as given (404 otherwise)."""

    def handle(request: Request) -> Response:
        key = (request.method, request.target)
        if key in routes:
            return routes[key]
        if key == ("GET", "/api/overview"):
            return _json(200, OVERVIEW)
        return _json(404, {"error": "not_found", "reason": "Not Found"})

    return handle


def test_401_on_the_first_request_is_authentication_failed_without_the_password() -> None:
    """A 401 from /api/overview: wrong user or password, named by user, password hidden."""
    client = _client(lambda request: _json(401, {"error": "not_authorised"}))
    with pytest.raises(AuthenticationFailed) as caught:
        client.read(["/"])
    assert "refused user 'alice'" in str(caught.value)
    assert "http://broker.test:15672" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_401_on_a_later_request_is_authentication_failed() -> None:
    client = _client(_broker({("GET", "/api/vhosts?columns=name"): Response(401)}))
    with pytest.raises(AuthenticationFailed, match="refused user 'alice'"):
        client.vhosts()


def test_unreachable_port_is_management_unavailable_naming_the_url() -> None:
    """Nothing listens (a wrong port): the management API does not answer; the message
    says how to enable it or fall back to AMQP only."""

    def refuse(request: Request) -> Response:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ManagementUnavailable) as caught:
        _client(refuse).read(["/"])
    text = str(caught.value)
    assert (
        "http://broker.test:15672: ConnectionRefusedError: [Errno 111] Connection refused" in text
    )
    assert "--amqp-only" in text
    assert PASSWORD not in text


def test_an_error_status_on_the_overview_is_management_unavailable() -> None:
    client = _client(lambda request: text_response(503, "starting"))
    with pytest.raises(ManagementUnavailable, match="HTTP 503"):
        client.read(["/"])


def test_a_broker_that_goes_away_after_answering_is_broker_unreachable() -> None:
    """The first request answered, a later one fails on the network: BrokerUnreachable,
    naming the request, with the password taken out of the network error's text."""

    def handle(request: Request) -> Response:
        if request.path == "/api/overview":
            return _json(200, OVERVIEW)
        raise ConnectionResetError(f"lost amqp://alice:{PASSWORD}@broker.test")

    with pytest.raises(BrokerUnreachable) as caught:
        _client(handle).vhosts()
    assert "GET /api/vhosts?columns=name failed" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionResetError)


EXCHANGES = (
    "/api/exchanges/v?disable_stats=true&columns=name,type,durable,auto_delete,internal,arguments"
)
QUEUES = "/api/queues/v?disable_stats=true&columns=name,type,durable,auto_delete,arguments"
BINDINGS = "/api/bindings/v?columns=source,destination,destination_type,routing_key,arguments"
POLICIES = "/api/policies/v"


def _kinds(**answers: Response) -> dict[tuple[str, str], Response]:
    """Answers to the four per-kind reads of vhost ``v`` (empty lists unless given) and to
    the list of vhosts."""
    paths = {"exchanges": EXCHANGES, "queues": QUEUES, "bindings": BINDINGS, "policies": POLICIES}
    routes = {("GET", path): answers.get(kind, _json(200, [])) for kind, path in paths.items()}
    routes[("GET", "/api/vhosts?columns=name,default_queue_type")] = _json(200, [])
    return routes


def test_400_vhost_not_found_reads_as_a_missing_vhost() -> None:
    """RabbitMQ 3.10 answers 400 {"reason": "vhost_not_found"} to some reads of a vhost that
    does not exist: that is "nothing there yet", not an error."""
    routes = _kinds(queues=_json(400, {"error": "bad_request", "reason": "vhost_not_found"}))
    client = _client(_broker(routes))
    assert client.definitions("v") is None
    state = client.read(["v"])
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
    client = _client(_broker(_kinds(bindings=text_response(500, "boom"))))
    with pytest.raises(BrokerError, match="reading the bindings of vhost 'v': HTTP 500: boom"):
        client.definitions("v")


def test_each_kind_is_read_with_its_own_request_and_fields() -> None:
    """Exchanges, queues, bindings and policies each from their own endpoint, statistics
    off, only the fields the model needs: what a user without the administrator tag may
    read too (``GET /api/definitions`` needs that tag and is never asked)."""
    asked: list[str] = []
    routes = _kinds(
        exchanges=_json(200, [{"name": "", "type": "direct"}, {"name": "e", "type": "topic"}]),
        queues=_json(200, [{"name": "q", "durable": True, "arguments": {}, "type": "quorum"}]),
        bindings=_json(
            200,
            [
                {"source": "", "destination": "q", "destination_type": "queue"},
                {"source": "e", "destination": "q", "destination_type": "queue"},
            ],
        ),
    )
    answer = _broker(routes)

    def handle(request: Request) -> Response:
        asked.append(request.target)
        return answer(request)

    state = _client(handle).read(["v"])
    assert not any(path.startswith("/api/definitions") for path in asked)
    assert {EXCHANGES, QUEUES, BINDINGS, POLICIES} <= set(asked)
    assert [x.name for x in state.topology.exchanges] == ["e"]  # the default one is the broker's
    assert [(q.name, q.type) for q in state.topology.queues] == [("q", "quorum")]
    assert [(b.source, b.destination) for b in state.topology.bindings] == [("e", "q")]


def test_stats_come_with_the_queues_in_one_request() -> None:
    """A prune needs each queue's messages and consumers: asked in the queues' own request."""
    routes = _kinds()
    del routes[("GET", QUEUES)]
    with_counts = "/api/queues/v?columns=name,type,durable,auto_delete,arguments,messages,consumers"
    routes[("GET", with_counts)] = _json(
        200, [{"name": "q", "arguments": {}, "messages": 3, "consumers": None}]
    )
    state = _client(_broker(routes)).read(["v"], with_stats=True)
    (stats,) = state.stats.items()
    assert stats[0] == ("v", "q")
    assert (stats[1].messages, stats[1].consumers) == (3, 0)


def test_401_when_reading_a_kind_is_authentication_failed() -> None:
    routes = _kinds(exchanges=Response(401))
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
    def handle(request: Request) -> Response:
        failed = ssl.SSLCertVerificationError(1, "certificate verify failed")
        failed.verify_message = "self-signed certificate"
        raise failed

    with pytest.raises(TlsError, match="TLS certificate verification failed at https?://"):
        _client(handle).read(["/"])


def test_overview_sets_version_and_exchange_types() -> None:
    routes = {
        **_kinds(queues=_json(200, [{"name": "q"}])),
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


def test_the_identity_check_reads_cluster_name_as_pikas_codec_does() -> None:
    """The broker-identity check steps over connection.start's field table itself (no pika
    import in a plan): every value type RabbitMQ sends is skipped to reach cluster_name,
    the same value pika's decoder finds; a truncated table raises struct.error."""
    import struct

    from pika import data as amqp_data

    from declare_amqp._management import _table_field

    properties = {
        "capabilities": {"publisher_confirms": True, "consumer_priorities": True},
        "a_short": 7,
        "a_long": 2**40,
        "a_list": [1, "two", b"three"],
        "a_decimal": __import__("decimal").Decimal("1.5"),
        "a_none": None,
        "cluster_name": "rabbit@somewhere",
        "product": "RabbitMQ",
    }
    pieces: list[bytes] = []
    amqp_data.encode_table(pieces, properties)
    table = b"".join(pieces)
    data = b"\x01\x00\x00\x00\x00\x00\x00" + b"\x00\x0a\x00\x0a\x00\x09" + table
    assert _table_field(data, 13, b"cluster_name") == b"rabbit@somewhere"
    assert _table_field(data, 13, b"product") == b"RabbitMQ"
    assert _table_field(data, 13, b"missing") is None
    with pytest.raises((struct.error, IndexError)):
        _table_field(data[:12], 13, b"cluster_name")

"""Timeouts are reported as timeouts (no broker): a management API that answers too slowly
is not "does not answer ... enable the plugin", and a request that times out later says so;
an AMQP method that gets no answer fails after OPERATION_TIMEOUT instead of waiting for the
heartbeat to run out; a management API that shows no listeners (a non-administrator) is
checked against the AMQP port's greeting."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from fake_http import FakeTransport, Request, Response, json_response

from declare_amqp import (
    BrokerError,
    BrokerUnreachable,
    ManagementUnavailable,
    _amqp,
    resolve_address,
)
from declare_amqp._management import ManagementClient

ADDRESS = resolve_address(["amqp://alice:pw-123@broker.test:5672"], env={})


def _raising(exc: Exception) -> FakeTransport:
    def handle(request: Request) -> Response:
        raise exc

    return FakeTransport(handle)


def test_a_slow_management_api_is_a_timeout_not_a_missing_plugin() -> None:
    client = ManagementClient(ADDRESS, transport=_raising(TimeoutError("timed out")))
    with pytest.raises(BrokerUnreachable) as caught:
        client.read(["/"])
    assert not isinstance(caught.value, ManagementUnavailable)
    assert "timed out after 30 s" in str(caught.value)
    assert "rabbitmq-plugins enable" not in str(caught.value)


def test_a_refused_connection_is_still_the_missing_plugin() -> None:
    client = ManagementClient(
        ADDRESS, transport=_raising(ConnectionRefusedError(111, "Connection refused"))
    )
    with pytest.raises(ManagementUnavailable, match="rabbitmq-plugins enable"):
        client.read(["/"])


def test_a_later_request_that_times_out_says_so() -> None:
    def handle(request: Request) -> Response:
        if request.path == "/api/overview":
            return json_response(
                200,
                {
                    "rabbitmq_version": "3.10.8",
                    "listeners": [{"protocol": "amqp", "port": 5672}],
                },
            )
        raise TimeoutError("timed out")

    client = ManagementClient(ADDRESS, transport=FakeTransport(handle))
    with pytest.raises(
        BrokerUnreachable, match=r"GET /api/(exchanges|queues|bindings|policies)/%2F\S* timed out"
    ):
        client.read(["/"])


def test_no_listeners_shown_and_no_broker_on_the_amqp_port_is_refused() -> None:
    """Before: a non-administrator (no listeners in the overview) skipped the check, so
    `plan --url amqp://...:1/` printed a plan for a broker it never reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    address = resolve_address([f"amqp://pm:pw@127.0.0.1:{closed}/"], env={})

    def handle(request: Request) -> Response:
        return json_response(200, {"rabbitmq_version": "3.10.8", "cluster_name": "rabbit@x"})

    client = ManagementClient(address, transport=FakeTransport(handle))
    with pytest.raises(BrokerError, match=r"belongs to cluster 'rabbit@x', but no broker"):
        client.read(["/"])


def test_an_amqp_method_without_an_answer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel never calls back (a stalled link): the call fails with a timeout."""
    monkeypatch.setattr(_amqp, "OPERATION_TIMEOUT", 0.2)

    class Silent:
        def add_on_close_callback(self, callback: Any) -> None:
            pass

        def queue_declare(self, callback: Any, **kwargs: Any) -> None:
            pass  # no -Ok ever

    channel = _amqp._Channel(Silent())  # type: ignore[arg-type]

    async def scenario() -> None:
        await channel.call("queue_declare", queue="q")

    with pytest.raises(_amqp.ApplyError, match=r"did not answer queue_declare within 0.2 s"):
        asyncio.run(scenario())

"""The AMQP module without a broker: the one pika exception map and the one method table.

The map decides, for every pika exception, whether the whole apply stops (and with which
``_errors`` type) or one operation was refused; the pipelined and the one-by-one paths use
the same map, so a connection lost part-way is an ApplyError on both.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import types

import pika.exceptions
import pytest

from declare_amqp import (
    ApplyError,
    AuthenticationFailed,
    BindingSpec,
    BrokerError,
    BrokerUnreachable,
    ExchangeSpec,
    QueueSpec,
    resolve_address,
)
from declare_amqp._amqp import (
    AmqpSession,
    _delete_method,
    _method,
    pika_error,
)
from declare_amqp.socket_writes import JOIN_LIMIT, coalesce_writes, join_buffers

WHERE = "amqp://broker.test:5672"


def _map(exc: BaseException, doing: str | None, closed: bool = False) -> object:
    return pika_error(
        exc, where=WHERE, user="alice", vhost="v", doing=doing, connection_closed=closed
    )


@pytest.mark.parametrize("doing", [None, "queue 'q'"])
def test_refused_credentials_are_authentication_failed(doing: str | None) -> None:
    for exc in (
        pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"),
        pika.exceptions.AuthenticationError("PLAIN"),
    ):
        mapped = _map(exc, doing)
        assert isinstance(mapped, AuthenticationFailed)
        assert str(mapped) == f"{WHERE} refused user 'alice' (wrong user or password)"


def test_denied_vhost_is_a_broker_error_naming_user_and_vhost() -> None:
    mapped = _map(pika.exceptions.ProbableAccessDeniedError("NOT_ALLOWED"), None)
    assert type(mapped) is BrokerError
    assert "denied user 'alice' access to vhost 'v'" in str(mapped)


def test_a_node_that_does_not_answer_while_connecting_is_not_yet_an_error() -> None:
    """None: the caller tries the next node (and raises BrokerUnreachable after the last)."""
    assert _map(pika.exceptions.AMQPConnectionError("refused"), None) is None
    assert _map(ConnectionRefusedError(111, "refused"), None) is None


def test_a_channel_the_broker_closed_is_one_refused_operation() -> None:
    """The connection is still open: one declare was refused (an AmqpFailure), not the
    apply."""
    exc = pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg")
    assert _map(exc, "queue 'q'", closed=False) is None


@pytest.mark.parametrize(
    "exc",
    [
        pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED"),
        pika.exceptions.StreamLostError("Stream connection lost"),
        pika.exceptions.ChannelClosedByBroker(320, "CONNECTION_FORCED"),
        pika.exceptions.ChannelWrongStateError("Channel is closed."),
    ],
)
def test_a_connection_lost_part_way_is_an_apply_error(exc: BaseException) -> None:
    """Whatever pika raises once the connection is gone, on either path: ApplyError (the
    write failed part-way), never BrokerUnreachable."""
    for doing in ("queue 'q'", "250 declarations"):
        mapped = _map(exc, doing, closed=True)
        assert type(mapped) is ApplyError
        assert str(mapped).startswith(f"the connection to {WHERE} closed while applying {doing}")


def test_a_channel_pika_cannot_use_any_more_is_an_apply_error() -> None:
    mapped = _map(pika.exceptions.ChannelWrongStateError("Channel is closed."), "queue 'q'")
    assert type(mapped) is ApplyError
    assert str(mapped).startswith(f"the channel to {WHERE} closed while applying queue 'q'")


def test_no_node_answering_is_broker_unreachable_without_the_password() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = resolve_address([f"amqp://alice:pw-123456@127.0.0.1:{port}"], env={})
    with pytest.raises(BrokerUnreachable) as caught:
        asyncio.run(AmqpSession(address, "v").open())
    assert f"no broker node answered on AMQP: amqp://127.0.0.1:{port}" in str(caught.value)
    assert "pw-123456" not in str(caught.value)


def test_one_table_maps_each_spec_to_its_method() -> None:
    x = ExchangeSpec("v", "e", "topic", arguments={"alternate-exchange": "ae"})
    assert _method(x) == (
        "exchange_declare",
        {
            "exchange": "e",
            "exchange_type": "topic",
            "passive": False,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {"alternate-exchange": "ae"},
        },
    )
    assert _method(x, passive=True)[1]["passive"] is True
    classic = QueueSpec("v", "c")
    assert _method(classic) == (
        "queue_declare",
        {"queue": "c", "passive": False, "durable": True, "auto_delete": False, "arguments": None},
    )
    quorum = QueueSpec("v", "q", type="quorum", arguments={"x-delivery-limit": 5})
    assert _method(quorum)[1]["arguments"] == {"x-delivery-limit": 5, "x-queue-type": "quorum"}
    to_queue = BindingSpec("v", "e", "q", routing_key="k")
    assert _method(to_queue) == (
        "queue_bind",
        {"queue": "q", "exchange": "e", "routing_key": "k", "arguments": None},
    )
    to_exchange = BindingSpec("v", "e", "e2", destination_type="exchange")
    assert _method(to_exchange)[0] == "exchange_bind"
    assert _delete_method(to_queue, force=False) == ("queue_unbind", _method(to_queue)[1])
    assert _delete_method(to_exchange, force=False) == ("exchange_unbind", _method(to_exchange)[1])
    assert _delete_method(classic, force=False) == (
        "queue_delete",
        {"queue": "c", "if_unused": True, "if_empty": True},
    )
    assert _delete_method(classic, force=True)[1]["if_empty"] is False
    assert _delete_method(x, force=False) == ("exchange_delete", {"exchange": "e"})


# ------------------------------------------------------------ frames joined before sending


def test_buffered_frames_are_joined_in_order_up_to_the_limit() -> None:
    """Small frames become chunks of at most JOIN_LIMIT bytes, the same bytes in order; a
    frame above the limit stays whole."""
    frames = [bytes([n % 251]) * (100 + n) for n in range(3000)]
    big = b"B" * (JOIN_LIMIT + 5)
    buffers = collections.deque([*frames[:1500], big, *frames[1500:]])
    join_buffers(buffers)
    assert b"".join(buffers) == b"".join([*frames[:1500], big, *frames[1500:]])
    assert len(buffers) < 3000 / 10
    assert big in buffers
    assert all(len(chunk) <= JOIN_LIMIT for chunk in buffers if chunk is not big)


class _Transport:
    """pika's transport as coalesce_writes sees it: a deque of buffers and _produce."""

    def __init__(self) -> None:
        self._tx_buffers: collections.deque[bytes] = collections.deque()
        self.sent: list[bytes] = []

    def _produce(self) -> None:
        while self._tx_buffers:
            self.sent.append(self._tx_buffers.popleft())


def test_a_connection_sends_its_buffered_frames_joined() -> None:
    """After coalesce_writes, one writable event sends the queued frames as one chunk."""
    connection = types.SimpleNamespace(_transport=_Transport())
    assert coalesce_writes(connection) is True  # type: ignore[arg-type]
    transport = connection._transport
    transport._tx_buffers.extend([b"frame-1", b"frame-2", b"frame-3"])
    transport._produce()
    assert transport.sent == [b"frame-1frame-2frame-3"]


def test_an_unexpected_transport_is_left_to_pika() -> None:
    """Private API changed shape: nothing is replaced (False), pika sends as it does."""
    assert coalesce_writes(types.SimpleNamespace(_transport=None)) is False  # type: ignore[arg-type]
    odd = types.SimpleNamespace(_tx_buffers=[], _produce=lambda: None)
    assert coalesce_writes(types.SimpleNamespace(_transport=odd)) is False  # type: ignore[arg-type]


def test_pikas_transports_have_the_shape_coalesce_writes_expects() -> None:
    """The installed pika still buffers frames in a deque and sends them from _produce (else
    the join above is silently skipped, and this test says so)."""
    import inspect

    from pika.adapters.utils import io_services_utils as io

    for cls in (io._AsyncPlaintextTransport, io._AsyncSSLTransport):
        assert callable(getattr(cls, "_produce", None)), cls
    assert "self._tx_buffers: collections.deque" in inspect.getsource(io._AsyncTransportBase)

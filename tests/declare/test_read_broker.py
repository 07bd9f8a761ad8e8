"""Reading a vhost kind by kind gives what the broker's definitions say (issue 22).

``ManagementClient.read`` lists exchanges, queues, bindings and policies each from its own
endpoint, with ``columns`` and ``disable_stats`` (much cheaper than ``GET
/api/definitions/{vhost}`` on a large vhost). These tests pin, on every broker version the
suite runs against, that those reads carry every field the model needs: the same model as
the definitions of the same vhost, for every kind of queue, exchange, binding and policy.
"""

from __future__ import annotations

from typing import Any

import pika
from declare_support import RICH
from waiting import wait_until_blocking

from declare_amqp import resolve_address
from declare_amqp._broker_json import from_definitions
from declare_amqp._management import ManagementClient


def _client(declare: Any) -> ManagementClient:
    address = resolve_address(
        [declare.broker.url_for(declare.vhost)], [declare.broker.management_url], env={}
    )
    return ManagementClient(address)


def test_kind_by_kind_read_is_the_definitions_model(declare: Any) -> None:
    """Quorum, stream and classic queues with arguments, an internal exchange, headers
    binding arguments, an exchange-to-exchange binding and policies: the model read kind by
    kind equals the one from ``GET /api/definitions/{vhost}``; a server-named queue and its
    binding are left out of both."""
    assert declare("apply", declare.write("topology.yml", RICH)).code == 0
    connection = pika.BlockingConnection(pika.URLParameters(declare.url()))
    try:
        channel = connection.channel()
        server_named = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(server_named, "ingress", "x.#")
        with declare.broker.http() as http:
            response = http.get(f"/api/definitions/{declare.quote(declare.vhost)}")
            response.raise_for_status()
            expected = from_definitions(declare.vhost, response.json())
        with _client(declare) as client:
            state = client.read([declare.vhost])
    finally:
        connection.close()
    got = state.topology
    assert sorted(got.queues, key=lambda q: q.name) == sorted(expected.queues, key=lambda q: q.name)
    assert {q.type for q in got.queues} == {"quorum", "stream", "classic"}
    assert sorted(got.exchanges, key=lambda x: x.name) == sorted(
        expected.exchanges, key=lambda x: x.name
    )
    assert sorted(got.bindings, key=repr) == sorted(expected.bindings, key=repr)
    assert len(got.bindings) == 5
    assert sorted(got.policies, key=lambda p: p.name) == sorted(
        expected.policies, key=lambda p: p.name
    )
    assert [p.name for p in sorted(got.policies, key=lambda p: p.name)] == ["limits", "ttl"]
    assert all(not q.name.startswith("amq.") for q in got.queues)


def test_read_with_stats_counts_the_queues_messages(declare: Any) -> None:
    """The counts a prune checks come with the queue listing: a published message shows
    (the management API samples them, so the read is retried until it does)."""
    assert (
        declare("apply", declare.write("t.yml", "queues: [{name: held}, {name: idle}]")).code == 0
    )
    connection = pika.BlockingConnection(pika.URLParameters(declare.url()))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "held", b"x")
    finally:
        connection.close()
    stats: dict[tuple[str, str], Any] = {}
    with _client(declare) as client:

        def counted() -> bool:
            stats.update(client.read([declare.vhost], with_stats=True).stats)
            return bool(stats[(declare.vhost, "held")].messages == 1)

        wait_until_blocking(counted, 30, "the management API to count the message", 0.2)
    assert stats[(declare.vhost, "held")].messages == 1
    assert stats[(declare.vhost, "idle")].messages == 0
    assert set(stats) == {(declare.vhost, "held"), (declare.vhost, "idle")}


def test_a_missing_vhost_reads_as_empty(declare: Any) -> None:
    with _client(declare) as client:
        state = client.read(["h22-no-such-vhost-" + declare.vhost])
    assert state.topology.vhosts == () and state.topology.queues == ()

"""Topologies and comparisons shared by the declare-amqp integration tests.

``tests/conftest.py`` puts this folder on ``sys.path``, so test modules import it by name.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

# Every environment variable declare-amqp reads (and the TLS defaults of Python's ssl module):
# tests that run the command drop them all and pass everything on the command line, so that
# the caller's environment cannot change what a test sees.
TOOL_ENV = (
    "AMQP_URL",
    "AMQP_HOST",
    "AMQP_USER",
    "AMQP_PASS",
    "AMQP_VHOST",
    "RABBITMQ_MANAGEMENT_URL",
    "DECLARE_AMQP_DEBUG",
    "AMQP_TLS_CA_FILE",
    "AMQP_TLS_CERT_FILE",
    "AMQP_TLS_KEY_FILE",
    "AMQP_AUTH_MECHANISM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)

# A password that cannot appear by accident; '@' and '/' force URL quoting.
PASSWORD = "Zq9-s3cr3t@x/y"
QUOTED_PASSWORD = urllib.parse.quote(PASSWORD, safe="")
SECRET = "Zq9-s3cr3t"  # in every form of the password, quoted or not

# Every kind of object: exchange-to-exchange and headers bindings with arguments, quorum and
# stream queues, custom arguments and policies.
RICH = """
exchanges:
  - {name: ingress, type: topic, alternate_exchange: unrouted}
  - {name: unrouted, type: fanout}
  - {name: fan, type: fanout, internal: true}
  - name: hdr
    type: headers
    arguments: {x-owner: team-a}
queues:
  - name: work.quorum
    type: quorum
    delivery_limit: 5
    dead_letter_exchange: unrouted
  - name: log.stream
    type: stream
    max_age: 7D
  - name: prio
    max_priority: 10
    message_ttl: 60000
    arguments: {x-owner: team-b}
    bindings:
      - exchange: hdr
        arguments: {x-match: all, kind: invoice}
  - name: fallback
    bindings: [{exchange: unrouted}]
bindings:
  - {source: ingress, destination: fan, destination_type: exchange, routing_key: "events.#"}
  - {source: fan, destination: work.quorum}
  - {source: fan, destination: log.stream}
policies:
  - name: limits
    pattern: '^work\\.'
    apply_to: queues
    definition: {max-length: 1000, overflow: reject-publish}
    priority: 2
  - {name: ttl, pattern: '^prio$', apply_to: queues, definition: {message-ttl: 60000}}
"""


def comparable(definitions: dict[str, Any]) -> dict[str, Any]:
    """Definitions without what legitimately differs between two vhosts holding the same
    objects: the vhost name, and an explicit x-queue-type: classic (the tool never writes
    it, see rabbitmq-common#341)."""
    for policy in definitions["policies"]:
        policy.pop("vhost", None)
    for queue in definitions["queues"]:
        if queue["arguments"].get("x-queue-type") == "classic":
            del queue["arguments"]["x-queue-type"]
    return definitions

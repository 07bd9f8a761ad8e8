"""The TLS node for this folder: started once per session (about 10 s), stopped after.

Skipped (failed under ``CI``) when RabbitMQ or openssl is not installed on this machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tls_broker  # noqa: E402


@pytest.fixture(scope="session")
def tls() -> Iterator[tls_broker.TlsBroker]:
    """A RabbitMQ node with amqps and https listeners and its certificates."""
    if not (tls_broker.SBIN / "rabbitmq-server").exists() or shutil.which("openssl") is None:
        reason = "the TLS tests start a local RabbitMQ node and need rabbitmq-server and openssl"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    broker = tls_broker.start()
    try:
        with broker.http() as http:  # the x509 user logs in with its certificate only
            http.put(f"/api/users/{tls_broker.CLIENT_USER}",
                     json={"password_hash": "", "tags": ""}).raise_for_status()
            http.put(f"/api/permissions/%2F/{tls_broker.CLIENT_USER}",
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        yield broker
    finally:
        tls_broker.stop(broker)

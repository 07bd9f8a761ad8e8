"""The startup check of a worker built from a topology uses the same TLS settings as its links."""

from __future__ import annotations

import pytest

from priority_worker import ConfigurationError
from priority_worker._topology import ExpectedQueue, ExpectedTopology


def test_the_startup_check_applies_the_amqp_tls_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """An amqps:// check with AMQP_TLS_CA_FILE naming a missing file fails on that file, before
    any connection is tried (without the settings it would try the system trust store)."""
    missing = f"{tmp_path}/no-such-ca.pem"
    monkeypatch.setenv("AMQP_TLS_CA_FILE", missing)
    expected = ExpectedTopology(vhost="/", queues=(ExpectedQueue("email.high"),))
    with pytest.raises(ConfigurationError) as caught:
        expected.verify(["amqps://app:s3cret-pw@127.0.0.1:1/"])
    message = str(caught.value)
    assert "no-such-ca.pem" in message
    assert "s3cret-pw" not in message

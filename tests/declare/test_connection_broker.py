"""Broker addresses against a live broker: a management API that belongs to another node is
refused (the address rules without a broker are in test_connection.py)."""

from __future__ import annotations

import subprocess
import sys


def test_management_api_of_another_broker_is_refused(broker: object) -> None:
    """--url naming a node on other ports must not be planned against the broker whose
    management API answers on the default port (that would compare the files with the wrong
    broker). Port 5699 has no broker; the local management API lists only its own listeners."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "declare_amqp",
            "plan",
            "topology.example.yml",
            "--url",
            "amqp://guest:guest@127.0.0.1:5699/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "belongs to a broker whose AMQP listeners" in result.stderr
    assert "--management-url" in result.stderr

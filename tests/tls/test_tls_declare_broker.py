"""declare-amqp over amqps:// and https:// against a TLS node: verified against the test CA,
refused (exit 1, one line naming the check, nothing written) with a wrong CA or a host name
the certificate does not list, the system trust store through SSL_CERT_FILE, and a client
certificate with EXTERNAL login."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from declare_support import TOOL_ENV
from tls_broker import TlsBroker

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    clean = {k: v for k, v in os.environ.items() if k not in TOOL_ENV}
    clean.update(NO_COLOR="1", COLUMNS="300", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "declare_amqp", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture
def topology(tmp_path: Path) -> tuple[Path, str]:
    name = f"tls.{uuid.uuid4().hex[:8]}"
    (tmp_path / "t.yml").write_text(f"queues:\n  - name: {name}\n")
    return tmp_path, name


def _queues(tls: TlsBroker) -> set[str]:
    with tls.http() as http:
        return {q["name"] for q in http.get("/api/queues/%2F?columns=name").json()}


def _one_line_error(result: Any) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines: list[str] = [
        x for x in result.stderr.strip().splitlines() if not x.startswith("warning:")
    ]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_amqps_and_https_verified_against_the_ca(tls: TlsBroker, topology: Any) -> None:
    """--tls-ca-file: plan and apply over amqps:// and https://; the re-plan is empty."""
    cwd, name = topology
    target = [
        "--url",
        tls.amqps_url(),
        "--management-url",
        tls.https_url(),
        "--tls-ca-file",
        str(tls.ca),
    ]
    result = _run(cwd, "apply", "t.yml", *target)
    assert result.returncode == 0, result
    assert tls.amqps_display in result.stdout
    assert name in _queues(tls)
    again = _run(cwd, "plan", "t.yml", "--detailed-exitcode", *target)
    assert again.returncode == 0, again


def test_ca_from_the_environment_and_the_system_trust_store(tls: TlsBroker, topology: Any) -> None:
    """AMQP_TLS_CA_FILE works like the flag; without either, SSL_CERT_FILE (the system trust
    store's override) is honoured."""
    cwd, name = topology
    target = ["--url", tls.amqps_url(), "--management-url", tls.https_url()]
    by_env = _run(cwd, "plan", "t.yml", *target, env={"AMQP_TLS_CA_FILE": str(tls.ca)})
    assert by_env.returncode == 0, by_env
    by_store = _run(cwd, "apply", "t.yml", *target, env={"SSL_CERT_FILE": str(tls.ca)})
    assert by_store.returncode == 0, by_store
    assert name in _queues(tls)


@pytest.mark.parametrize("amqp_only", [False, True], ids=["https", "amqps"])
def test_wrong_ca_is_refused(tls: TlsBroker, topology: Any, amqp_only: bool) -> None:
    """A CA that did not sign the broker's certificate (and the default trust store, which
    lacks the test CA): one line naming the verification, exit 1, nothing written."""
    cwd, name = topology
    target = ["--url", tls.amqps_url(), "--management-url", tls.https_url()]
    extra = ["--amqp-only"] if amqp_only else []
    for ca in (["--tls-ca-file", str(tls.other_ca)], []):
        line = _one_line_error(_run(cwd, "apply", "t.yml", *extra, *target, *ca))
        assert "TLS certificate verification failed" in line
        where = tls.amqps_display if amqp_only else tls.https_url()
        assert where in line
    assert name not in _queues(tls)


@pytest.mark.parametrize("amqp_only", [False, True], ids=["https", "amqps"])
def test_wrong_host_name_is_refused(tls: TlsBroker, topology: Any, amqp_only: bool) -> None:
    """The certificate names localhost only: 127.0.0.1 fails the host name check."""
    cwd, name = topology
    target = [
        "--url",
        tls.amqps_url(host="127.0.0.1"),
        "--management-url",
        tls.https_url(host="127.0.0.1"),
        "--tls-ca-file",
        str(tls.ca),
    ]
    extra = ["--amqp-only"] if amqp_only else []
    line = _one_line_error(_run(cwd, "apply", "t.yml", *extra, *target))
    assert "TLS host name check failed" in line and "127.0.0.1" in line
    assert name not in _queues(tls)


def test_client_certificate_with_external_login(tls: TlsBroker, topology: Any) -> None:
    """--tls-cert-file/--tls-key-file with --auth-mechanism external: declares over amqps as
    the certificate's user (no password anywhere)."""
    cwd, name = topology
    result = _run(
        cwd,
        "apply",
        "--amqp-only",
        "t.yml",
        "--url",
        tls.amqps_display + "/",
        "--tls-ca-file",
        str(tls.ca),
        "--tls-cert-file",
        str(tls.client_cert),
        "--tls-key-file",
        str(tls.client_key),
        "--auth-mechanism",
        "external",
    )
    assert result.returncode == 0, result
    assert name in _queues(tls)
    without = _run(
        cwd,
        "apply",
        "--amqp-only",
        "t.yml",
        "--url",
        tls.amqps_display + "/",
        "--tls-ca-file",
        str(tls.ca),
        "--auth-mechanism",
        "external",
    )
    assert without.returncode == 1 and "client certificate" in without.stderr


def test_migrate_over_amqps_keeps_every_message(tls: TlsBroker, tmp_path: Path) -> None:
    """apply --migrate over amqps:// and https:// (the mover's own connection verifies the
    broker against the CA too): classic -> quorum, every message there afterwards."""
    import pika

    name = f"tls.move.{uuid.uuid4().hex[:8]}"
    target = ["--url", tls.amqps_url(), "--management-url", tls.https_url()]
    target += ["--tls-ca-file", str(tls.ca)]
    (tmp_path / "t.yml").write_text(f"queues:\n  - name: {name}\n")
    assert _run(tmp_path, "apply", "t.yml", *target).returncode == 0
    conn = pika.BlockingConnection(pika.URLParameters(tls.amqp_url()))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(300):
            ch.basic_publish("", name, f"{i}".encode(), pika.BasicProperties(message_id=f"m-{i}"))
        (tmp_path / "t.yml").write_text(f"queues:\n  - name: {name}\n    type: quorum\n")
        result = _run(tmp_path, "apply", "--migrate", "t.yml", *target)
        assert result.returncode == 0, result
        assert ch.queue_declare(name, passive=True).method.message_count == 300
        seen = set()
        for method, props, _ in ch.consume(name, inactivity_timeout=5):
            if method is None:
                break
            seen.add(props.message_id)
            ch.basic_ack(method.delivery_tag)
        assert seen == {f"m-{i}" for i in range(300)}
        ch.cancel()
    finally:
        conn.close()
    with tls.http() as http:
        queue = http.get(f"/api/queues/%2F/{name}").json()
        assert queue["type"] == "quorum"
        http.delete(f"/api/queues/%2F/{name}")

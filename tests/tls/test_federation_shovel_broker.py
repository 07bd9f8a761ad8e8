"""Federation upstreams and shovels on the test's own node (its plugins are enabled there,
never on the machine's shared broker): create, no-op re-plan, change, prune; their URIs
(with a real password) never appear in any output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
from tls_broker import AMQP_PORT, HTTP_PORT, TlsBroker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shovel_user(tls_node: TlsBroker) -> Any:
    """A user for the URIs, with a password that must never be printed."""
    name, password = f"wt12-shovel-{uuid.uuid4().hex[:6]}", "Sh0vel+" + uuid.uuid4().hex
    vhost = f"fed-{uuid.uuid4().hex[:6]}"
    with tls_node.http() as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(f"/api/users/{name}", json={"password": password, "tags": ""})
        for v in (vhost, "%2F"):
            http.put(
                f"/api/permissions/{v}/{name}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
            http.put(
                f"/api/permissions/{v}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
            )
    yield name, password, vhost
    with tls_node.http() as http:
        http.delete(f"/api/users/{name}")
        http.delete(f"/api/vhosts/{vhost}")


def _run(cwd: Path, vhost: str, *args: str, env: dict[str, str]) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "RABBITMQ_"))}
    clean.update(NO_COLOR="1", COLUMNS="300", PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "declare_amqp",
            *args,
            "--url",
            f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/{vhost}",
            "--management-url",
            f"http://127.0.0.1:{HTTP_PORT}",
        ],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_federation_upstream_and_shovel(
    tls_node: TlsBroker, shovel_user: Any, tmp_path: Path
) -> None:
    user, password, vhost = shovel_user
    uri = f"amqp://{user}:{password}@127.0.0.1:{AMQP_PORT}/{vhost}"
    (tmp_path / "dest-uri").write_text(uri + "\n")
    (tmp_path / "t.yml").write_text(f"""\
queues:
  - name: shovel.src
  - name: shovel.dest
federation_upstreams:
  - name: origin
    uri_env: ORIGIN_URI
    max_hops: 1
    ack_mode: on-confirm
shovels:
  - name: move
    src_uri_env: ORIGIN_URI
    src_queue: shovel.src
    dest_uri_file: {tmp_path / "dest-uri"}
    dest_queue: shovel.dest
""")
    env = {"ORIGIN_URI": uri}
    outputs = []
    plan = _run(tmp_path, vhost, "plan", "t.yml", env=env)
    assert plan.returncode == 0, plan
    assert "+ federation upstream origin" in plan.stdout and "+ shovel   move" in plan.stdout
    outputs.append(plan.stdout + plan.stderr)
    applied = _run(tmp_path, vhost, "apply", "t.yml", "--format", "json", env=env)
    assert applied.returncode == 0, applied
    outputs.append(applied.stdout + applied.stderr)
    with tls_node.http() as http:
        ups = http.get(f"/api/parameters/federation-upstream/{vhost}").json()
        shovels = http.get(f"/api/parameters/shovel/{vhost}").json()
    assert [(u["name"], u["value"]["uri"], u["value"]["max-hops"]) for u in ups] == [
        ("origin", uri, 1)
    ]
    assert shovels[0]["value"]["src-queue"] == "shovel.src"
    # the shovel really moves messages
    connection = pika.BlockingConnection(
        pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/{vhost}")
    )
    channel = connection.channel()
    channel.basic_publish("", "shovel.src", b"moved")
    deadline = time.monotonic() + 20
    body = None
    while body is None and time.monotonic() < deadline:
        _, _, body = channel.basic_get("shovel.dest", auto_ack=True)
        time.sleep(0.2)
    connection.close()
    assert body == b"moved"

    again = _run(tmp_path, vhost, "plan", "t.yml", "--detailed-exitcode", env=env)
    assert again.returncode == 0, again
    outputs.append(again.stdout + again.stderr)
    changed = _run(
        tmp_path,
        vhost,
        "plan",
        "t.yml",
        "--format",
        "json",
        env={"ORIGIN_URI": uri.replace(password, password + "x")},
    )
    assert changed.returncode == 0, changed
    assert '"uri": "(changed)"' in changed.stdout
    outputs.append(changed.stdout + changed.stderr)

    (tmp_path / "t.yml").write_text(
        "queues:\n  - name: shovel.src\n  - name: shovel.dest\n"
        "federation_upstreams: []\nshovels: []\n"
    )
    pruned = _run(tmp_path, vhost, "apply", "t.yml", "--prune", env=env)
    assert pruned.returncode == 0, pruned
    assert "- federation upstream origin" in pruned.stdout and "- shovel   move" in pruned.stdout
    outputs.append(pruned.stdout + pruned.stderr)
    with tls_node.http() as http:
        assert http.get(f"/api/parameters/shovel/{vhost}").json() == []
    for text in outputs:
        assert password not in text and uri not in text


def test_literal_uri_with_password_is_refused(tls_node: TlsBroker, tmp_path: Path) -> None:
    (tmp_path / "t.yml").write_text(
        "federation_upstreams:\n  - name: u\n    uri: amqp://app:Leak3d@elsewhere/\n"
    )
    result = _run(tmp_path, "%2F", "plan", "t.yml", env={})
    assert result.returncode == 1
    assert "t.yml:3:" in result.stderr and "uri_env" in result.stderr
    assert "Leak3d" not in result.stdout + result.stderr

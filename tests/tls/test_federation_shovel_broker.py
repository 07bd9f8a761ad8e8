"""Federation upstreams and shovels on a broker with their plugins (the test's own node in
the local run, never the machine's shared broker; the 4.x container in the container run):
create, no-op re-plan, change, prune, and both export formats of every access kind planning
to nothing; their URIs (with a real password) never appear in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml

FederationBroker = Any  # tests/tls/conftest.py's FederationBroker (conftest is not importable)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shovel_user(federation_broker: FederationBroker) -> Any:
    """A user for the URIs, with a password that must never be printed."""
    name, password = f"wt12-shovel-{uuid.uuid4().hex[:6]}", "Sh0vel+" + uuid.uuid4().hex
    vhost = f"fed-{uuid.uuid4().hex[:6]}"
    with federation_broker.http() as http:
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
    with federation_broker.http() as http:
        http.delete(f"/api/users/{name}")
        http.delete(f"/api/vhosts/{vhost}")


def _run(target: FederationBroker, cwd: Path, vhost: str, *args: str, env: dict[str, str]) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "RABBITMQ_"))}
    clean.update(NO_COLOR="1", COLUMNS="300", PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "declare_amqp",
            *args,
            "--url",
            target.amqp_url(vhost),
            "--management-url",
            target.management_url,
        ],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _export(target: FederationBroker, cwd: Path, vhost: str, name: str, fmt: str) -> Any:
    """``export --vhost VHOST --format FMT -o NAME`` with no variables set; must succeed."""
    exported = _run(
        target, cwd, vhost, "export", "--vhost", vhost, "--format", fmt, "-o", name, env={}
    )
    assert exported.returncode == 0, exported
    return exported


def _plan_finds_nothing(
    target: FederationBroker, cwd: Path, vhost: str, name: str, env: dict[str, str]
) -> str:
    """``plan NAME --prune --detailed-exitcode`` with ``env`` finds no change; its output."""
    plan = _run(target, cwd, vhost, "plan", name, "--prune", "--detailed-exitcode", env=env)
    assert plan.returncode == 0 and "No changes" in plan.stdout, (name, plan)
    return str(plan.stdout + plan.stderr)


def test_federation_upstream_and_shovel(
    federation_broker: FederationBroker, shovel_user: Any, tmp_path: Path
) -> None:
    user, password, vhost = shovel_user
    uri = federation_broker.self_uri(user, password, vhost)
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
    plan = _run(federation_broker, tmp_path, vhost, "plan", "t.yml", env=env)
    assert plan.returncode == 0, plan
    assert "+ federation upstream origin" in plan.stdout and "+ shovel   move" in plan.stdout
    outputs.append(plan.stdout + plan.stderr)
    applied = _run(
        federation_broker, tmp_path, vhost, "apply", "t.yml", "--format", "json", env=env
    )
    assert applied.returncode == 0, applied
    outputs.append(applied.stdout + applied.stderr)
    with federation_broker.http() as http:
        ups = http.get(f"/api/parameters/federation-upstream/{vhost}").json()
        shovels = http.get(f"/api/parameters/shovel/{vhost}").json()
    assert [(u["name"], u["value"]["uri"], u["value"]["max-hops"]) for u in ups] == [
        ("origin", uri, 1)
    ]
    assert shovels[0]["value"]["src-queue"] == "shovel.src"
    # the shovel really moves messages
    connection = pika.BlockingConnection(pika.URLParameters(federation_broker.amqp_url(vhost)))
    channel = connection.channel()
    channel.basic_publish("", "shovel.src", b"moved")
    deadline = time.monotonic() + 20
    body = None
    while body is None and time.monotonic() < deadline:
        _, _, body = channel.basic_get("shovel.dest", auto_ack=True)
        time.sleep(0.2)
    connection.close()
    assert body == b"moved"

    again = _run(
        federation_broker, tmp_path, vhost, "plan", "t.yml", "--detailed-exitcode", env=env
    )
    assert again.returncode == 0, again
    outputs.append(again.stdout + again.stderr)
    changed = _run(
        federation_broker,
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
    pruned = _run(federation_broker, tmp_path, vhost, "apply", "t.yml", "--prune", env=env)
    assert pruned.returncode == 0, pruned
    assert "- federation upstream origin" in pruned.stdout and "- shovel   move" in pruned.stdout
    outputs.append(pruned.stdout + pruned.stderr)
    with federation_broker.http() as http:
        assert http.get(f"/api/parameters/shovel/{vhost}").json() == []
    for text in outputs:
        assert password not in text and uri not in text


def test_literal_uri_with_password_is_refused_with_strict(
    federation_broker: FederationBroker, tmp_path: Path
) -> None:
    """A URI holding a password is a warning (issue 19: the broker's import accepts it) that
    names the line and uri_env; --strict refuses it. Neither prints the password."""
    (tmp_path / "t.yml").write_text(
        "federation_upstreams:\n  - name: u\n    uri: amqp://app:Leak3d@elsewhere/\n"
    )
    warned = _run(federation_broker, tmp_path, "%2F", "plan", "t.yml", env={})
    assert warned.returncode == 0, warned.stderr
    assert "t.yml:3:" in warned.stderr and "uri_env" in warned.stderr
    strict = _run(federation_broker, tmp_path, "%2F", "plan", "--strict", "t.yml", env={})
    assert strict.returncode == 1
    assert "t.yml:3:" in strict.stderr and "uri_env" in strict.stderr
    for result in (warned, strict):
        assert "Leak3d" not in result.stdout + result.stderr


def test_export_of_every_kind_plans_to_nothing(
    federation_broker: FederationBroker, shovel_user: Any, tmp_path: Path
) -> None:
    """A vhost holding every kind (metadata and limits, a user with limits, permissions,
    topic permissions, an operator policy, upstreams and a shovel, one URI with a password
    and one without): its export in YAML and in the definitions format plans to nothing with
    --prune once the variables the export names are set; the export's warnings name them,
    and no output or exported file holds a password."""
    user, password, vhost = shovel_user
    uri = federation_broker.self_uri(user, password, vhost)
    plain_uri = f"amqp://127.0.0.1:{federation_broker.self_port}/{vhost}"
    app, app_password = f"wt12-app-{uuid.uuid4().hex[:6]}", "App+" + uuid.uuid4().hex
    (tmp_path / "t.yml").write_text(f"""\
vhosts:
  - name: {vhost}
    description: every kind
    tags: [export, test]
    max_connections: 50
    max_queues: 40
users:
  - name: {app}
    tags: [monitoring]
    password_env: APP_PASSWORD
    max_connections: 5
    max_channels: 7
permissions:
  - {{user: {app}, configure: '^app\\.', write: '^app\\.', read: '.*'}}
topic_permissions:
  - {{user: {app}, exchange: amq.topic, write: '^app\\.', read: '.*'}}
operator_policies:
  - {{name: cap, pattern: '^app\\.', definition: {{max-length: 100}}, priority: 2}}
queues:
  - name: shovel.src
  - name: shovel.dest
federation_upstreams:
  - {{name: origin, uri_env: ORIGIN_URI, max_hops: 1, ack_mode: on-confirm}}
  - {{name: open, uri: '{plain_uri}', prefetch_count: 50}}
shovels:
  - name: move
    src_uri_env: ORIGIN_URI
    src_queue: shovel.src
    dest_uri: '{plain_uri}'
    dest_queue: shovel.dest
""")
    env = {"ORIGIN_URI": uri, "APP_PASSWORD": app_password}
    outputs = []
    try:
        applied = _run(federation_broker, tmp_path, vhost, "apply", "t.yml", env=env)
        assert applied.returncode == 0, applied
        outputs.append(applied.stdout + applied.stderr)

        references = {
            "FEDERATION_UPSTREAM_ORIGIN_URI": uri,
            "SHOVEL_MOVE_SRC_URI": uri,
        }
        for name, fmt in (("export.yml", "yaml"), ("export.json", "definitions")):
            exported = _export(federation_broker, tmp_path, vhost, name, fmt)
            outputs += [exported.stdout + exported.stderr, (tmp_path / name).read_text()]
            for variable in references:
                assert f"environment variable {variable}" not in exported.stderr  # named as:
                assert f"uri_env: {variable}; set that environment variable" in exported.stderr
            outputs.append(
                _plan_finds_nothing(federation_broker, tmp_path, vhost, name, references)
            )

        doc = yaml.safe_load((tmp_path / "export.yml").read_text())
        assert [u["name"] for u in doc["federation_upstreams"]] == ["open", "origin"]
        assert doc["federation_upstreams"][0]["uri"] == plain_uri
        assert doc["federation_upstreams"][1]["uri_env"] == "FEDERATION_UPSTREAM_ORIGIN_URI"
        assert doc["shovels"][0]["src_uri_env"] == "SHOVEL_MOVE_SRC_URI"
        (exported_app,) = [u for u in doc["users"] if u["name"] == app]
        assert exported_app["max_channels"] == 7 and "password_hash" in exported_app
        assert doc["operator_policies"][0]["name"] == "cap" and doc["topic_permissions"]
        assert doc["vhosts"][0]["max_queues"] == 40
        definitions = json.loads((tmp_path / "export.json").read_text())
        assert app in {u["name"] for u in definitions["users"]}
        assert {p["component"] for p in definitions["parameters"]} == {
            "vhost-limits",
            "operator_policy",
            "federation-upstream",
            "shovel",
        }
    finally:
        with federation_broker.http() as http:
            http.delete(f"/api/users/{app}")
    for text in outputs:
        assert password not in text and app_password not in text


def test_several_uris_apply_replan_and_export(
    federation_broker: FederationBroker, shovel_user: Any, tmp_path: Path
) -> None:
    """An upstream with two URIs (one with a password, one without) and a shovel whose
    destination is a literal list: the broker holds the lists in the files' order (a list of
    one as a string); the re-plan is empty, another order is a hidden change; both exports
    write the lists (one variable per URI of the upstream) and plan to nothing with the
    variables set; no output holds the password."""
    user, password, vhost = shovel_user
    uri = federation_broker.self_uri(user, password, vhost)
    plain_uri = f"amqp://127.0.0.1:{federation_broker.self_port}/{vhost}"
    plain_uri_2 = f"amqp://localhost:{federation_broker.self_port}/{vhost}"
    (tmp_path / "t.yml").write_text(f"""\
queues:
  - name: spread.src
  - name: spread.dest
federation_upstreams:
  - name: failover
    uri_env: [ORIGIN_URI, PLAIN_URI]
    max_hops: 1
  - name: single
    uri_env: [ORIGIN_URI]
shovels:
  - name: spread
    src_uri_env: ORIGIN_URI
    src_queue: spread.src
    dest_uri: ['{plain_uri}', '{plain_uri_2}']
    dest_queue: spread.dest
""")
    env = {"ORIGIN_URI": uri, "PLAIN_URI": plain_uri}
    outputs = []
    applied = _run(federation_broker, tmp_path, vhost, "apply", "t.yml", env=env)
    assert applied.returncode == 0, applied
    outputs.append(applied.stdout + applied.stderr)
    with federation_broker.http() as http:
        ups = http.get(f"/api/parameters/federation-upstream/{vhost}").json()
        (shovel,) = http.get(f"/api/parameters/shovel/{vhost}").json()
    assert {u["name"]: u["value"]["uri"] for u in ups} == {
        "failover": [uri, plain_uri],
        "single": uri,
    }
    assert shovel["value"]["dest-uri"] == [plain_uri, plain_uri_2]
    assert shovel["value"]["src-uri"] == uri

    again = _run(
        federation_broker, tmp_path, vhost, "plan", "t.yml", "--detailed-exitcode", env=env
    )
    assert again.returncode == 0 and "No changes" in again.stdout, again
    outputs.append(again.stdout + again.stderr)
    swapped = _run(
        federation_broker,
        tmp_path,
        vhost,
        "plan",
        "t.yml",
        "--detailed-exitcode",
        env={"ORIGIN_URI": plain_uri, "PLAIN_URI": uri},
    )
    assert swapped.returncode == 2, swapped
    assert "uri: (hidden) -> (changed)" in swapped.stdout
    outputs.append(swapped.stdout + swapped.stderr)
    missing = _run(federation_broker, tmp_path, vhost, "apply", "t.yml", env={"ORIGIN_URI": uri})
    assert missing.returncode == 1, missing
    assert "the environment variable PLAIN_URI (URI 2 of 2) is not set" in missing.stderr
    outputs.append(missing.stdout + missing.stderr)

    references = {
        "FEDERATION_UPSTREAM_FAILOVER_URI_1": uri,
        "FEDERATION_UPSTREAM_FAILOVER_URI_2": plain_uri,
        "FEDERATION_UPSTREAM_SINGLE_URI": uri,
        "SHOVEL_SPREAD_SRC_URI": uri,
    }
    for name, fmt in (("export.yml", "yaml"), ("export.json", "definitions")):
        exported = _export(federation_broker, tmp_path, vhost, name, fmt)
        assert "several URIs" not in exported.stderr
        for i in (1, 2):
            assert (
                f"names URI {i} of 2 uri_env: FEDERATION_UPSTREAM_FAILOVER_URI_{i}; set that "
                "environment variable"
            ) in exported.stderr
        outputs += [exported.stdout + exported.stderr, (tmp_path / name).read_text()]
        outputs.append(_plan_finds_nothing(federation_broker, tmp_path, vhost, name, references))
    doc = yaml.safe_load((tmp_path / "export.yml").read_text())
    upstreams = {u["name"]: u for u in doc["federation_upstreams"]}
    assert upstreams["failover"]["uri_env"] == [
        "FEDERATION_UPSTREAM_FAILOVER_URI_1",
        "FEDERATION_UPSTREAM_FAILOVER_URI_2",
    ]
    assert upstreams["single"]["uri_env"] == "FEDERATION_UPSTREAM_SINGLE_URI"
    assert doc["shovels"][0]["dest_uri"] == [plain_uri, plain_uri_2]
    definitions = json.loads((tmp_path / "export.json").read_text())
    values = {p["name"]: p["value"] for p in definitions["parameters"] if "name" in p}
    assert values["failover"]["uri-env"] == upstreams["failover"]["uri_env"]
    assert values["spread"]["dest-uri"] == [plain_uri, plain_uri_2]
    for text in outputs:
        assert password not in text and uri not in text

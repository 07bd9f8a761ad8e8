"""Access objects in definitions JSON and in exports, without a broker.

A definitions file's users, permissions, topic permissions, vhost metadata and limits, user
limits, operator policies, federation upstreams and shovels load into the same ``Access``
model as the YAML keys, with ``file:line`` problems and no secret in any message; both
export formats write every kind (URIs with a password only as references) and load back to
the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from declare_amqp import TopologyError, load
from declare_amqp._access import plan_access
from declare_amqp._definitions import parse_definitions, to_definitions
from declare_amqp._export import to_document, to_yaml
from declare_amqp._model import Access, Topology
from declare_amqp.kinds.federation_upstream import FEDERATION_UPSTREAM as FEDERATION
from declare_amqp.kinds.parameters import export_warnings, exportable
from declare_amqp.kinds.shovel import SHOVEL
from declare_amqp.kinds.user import UserSpec, rabbit_hash

APP_HASH = rabbit_hash("app-password", b"salt")


def _single_4x(dest_uri_file: str) -> dict[str, Any]:
    """GET /api/definitions/{vhost} of RabbitMQ 4.0 (vhost metadata and limits at the top),
    with users added as ``export --format definitions`` writes them."""
    return {
        "rabbit_version": "4.0.5",
        "rabbitmq_definition_format": "single_virtual_host",
        "original_vhost_name": "billing",
        "explanation": "Definitions of virtual host 'billing'",
        "metadata": {"description": "invoices", "tags": ["b", "a"], "default_queue_type": "quorum"},
        "description": "invoices",
        "default_queue_type": "quorum",
        "limits": {"max-queues": 500},
        "users": [
            {
                "name": "billing-app",
                "password_hash": APP_HASH,
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": "monitoring,management",
                "limits": {"max-channels": 9},
            },
            {"name": "x509-app", "password_hash": "", "tags": [], "limits": {}},
        ],
        "permissions": [
            {
                "user": "billing-app",
                "configure": "^billing\\.",
                "write": "^billing\\.",
                "read": ".*",
            }
        ],
        "topic_permissions": [
            {"user": "billing-app", "exchange": "amq.topic", "write": "^invoice\\.", "read": ".*"}
        ],
        "parameters": [
            {"value": {"max-connections": 200}, "component": "vhost-limits", "name": "limits"},
            {
                "value": {
                    "pattern": ".*",
                    "definition": {"max-length": 1000},
                    "priority": 1,
                    "apply-to": "queues",
                },
                "component": "operator_policy",
                "name": "cap",
            },
            {
                "value": {"uri-env": "ORIGIN_URI", "max-hops": 1, "ack-mode": "on-confirm"},
                "component": "federation-upstream",
                "name": "origin",
            },
            {
                "value": {
                    "src-uri": "amqp://",
                    "src-queue": "a",
                    "src-protocol": "amqp091",
                    "dest-uri-file": dest_uri_file,
                    "dest-queue": "b",
                    "dest-protocol": "amqp091",
                },
                "component": "shovel",
                "name": "move",
            },
            {"value": {"port": 1883}, "component": "mqtt_port_to_vhost_mapping", "name": "m"},
        ],
        "policies": [],
        "queues": [],
        "exchanges": [],
        "bindings": [],
    }


def _access(t: Topology) -> Access:
    assert t.access is not None
    return t.access


def test_single_vhost_shape_reads_every_access_kind() -> None:
    """Every kind lands in the file's vhost, spelt as the YAML keys; 4.x's top-level vhost
    metadata and limits and the vhost-limits parameter merge; an unknown parameter
    component is named in a warning; each object keeps its line."""
    text = json.dumps(_single_4x("/etc/app/dest-uri"), indent=2)
    t, problems = parse_definitions(text, "billing.json", vhost="billing")
    assert problems == [], [str(p) for p in problems]
    a = _access(t)
    app, x509 = sorted(a.group("users"), key=lambda u: u.name)
    assert app.tags == ("management", "monitoring") and app.max_channels == 9
    assert app.password_hash == APP_HASH and app.hashing_algorithm.endswith("sha256")
    assert x509.password_hash is None and not x509.has_password
    (p,) = a.group("permissions")
    assert (p.vhost, p.user, p.configure, p.read) == ("billing", "billing-app", "^billing\\.", ".*")
    (tp,) = a.group("topic_permissions")
    assert (tp.vhost, tp.exchange, tp.write) == ("billing", "amq.topic", "^invoice\\.")
    (v,) = a.group("vhost_settings")
    assert (v.name, v.description, v.tags, v.default_queue_type) == (
        "billing",
        "invoices",
        ("a", "b"),
        "quorum",
    )
    assert (v.max_connections, v.max_queues) == (200, 500)
    (o,) = a.group("operator_policies")
    assert (o.vhost, o.name, o.definition, o.priority, o.apply_to) == (
        "billing",
        "cap",
        {"max-length": 1000},
        1,
        "queues",
    )
    upstream, shovel = sorted(a.group("parameters"), key=lambda d: d.kind)
    assert upstream.kind == FEDERATION.kind and upstream.uri_refs == {"uri": "$ORIGIN_URI"}
    assert upstream.settings == {"max_hops": 1, "ack_mode": "on-confirm"}
    assert shovel.kind == SHOVEL.kind and shovel.literal_uris == {"src_uri": "amqp://"}
    assert shovel.uri_refs["dest_uri"] == "/etc/app/dest-uri"
    assert shovel.settings == {"src_queue": "a", "dest_queue": "b"}
    assert a.managed >= {"users", "permissions", "topic_permissions", "operator_policies"}
    assert a.managed >= {"federation_upstreams", "shovels"}
    lines = text.splitlines()
    assert '"name": "origin"' in "\n".join(lines[upstream.location.line - 1 :][:12])
    assert [str(w) for w in t.warnings] == [
        str(w) for w in t.warnings if "mqtt_port_to_vhost_mapping/m" in str(w)
    ] and t.warnings


def test_problems_of_access_objects_name_file_and_line(tmp_path: Path) -> None:
    """A wrong limit, an unknown operator-policy target and a bad regex: each is a problem at
    its object's line, and no password is echoed (a literal password and a URI holding one are
    warnings since issue 19, as the broker's import accepts them)."""
    doc = {
        "users": [
            {"name": "leaky", "password": "Pl41n-Secret", "tags": []},
            {"name": "limited", "password_hash": "", "tags": [], "limits": {"max-channels": -5}},
        ],
        "permissions": [{"user": "leaky", "vhost": "/", "configure": "(", "write": "", "read": ""}],
        "parameters": [
            {
                "vhost": "/",
                "component": "operator_policy",
                "name": "op",
                "value": {"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "all"},
            },
            {
                "vhost": "/",
                "component": "federation-upstream",
                "name": "up",
                "value": {"uri": "amqp://u:Upstr3am-Secret@far/"},
            },
        ],
        "vhosts": [{"name": "/"}],
    }
    path = tmp_path / "bad.json"
    text = json.dumps(doc, indent=2)
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load([str(path)])
    shown = [str(p) for p in info.value.problems]
    joined = "\n".join(shown)
    assert "Secret" not in joined
    lines = text.splitlines()

    def line_of(needle: str) -> int:
        # the object starts on the line before the first key json.dumps writes
        return next(i for i, line in enumerate(lines, 1) if needle in line) - 1

    expected = {
        line_of('"name": "limited"'): "'max-channels' must be at least -1",
        line_of('"user": "leaky"'): "'configure' is not a valid regular expression",
        line_of('"component": "operator_policy"') - 1: "'apply-to' must be one of",
    }
    for line, message in expected.items():
        assert any(s.startswith(f"{path}:{line}: ") and message in s for s in shown), (
            line,
            message,
            shown,
        )


def test_both_export_formats_of_every_kind_load_back_to_the_same_model(tmp_path: Path) -> None:
    """to_definitions (both shapes) and to_document write every access kind; loading what
    they wrote gives the same model, so a plan of it against the source plans nothing."""
    dest = tmp_path / "dest-uri"
    dest.write_text("amqp://elsewhere\n")
    t, problems = parse_definitions(json.dumps(_single_4x(str(dest))), "a.json", vhost="billing")
    assert problems == []
    source = _access(t)
    written = {
        "single.json": json.dumps(to_definitions(t, ["billing"], "4.0.5"), indent=2),
        "cluster.json": json.dumps(to_definitions(t, ["billing", "other"]), indent=2),
        "export.yml": to_yaml(t, ["billing"]),
        "several.yml": to_yaml(t, ["billing", "other"]),
    }
    for name, text in written.items():
        (tmp_path / name).write_text(text)
        back = _access(load([str(tmp_path / name)], vhost=None, default_vhost="billing"))
        for kind in (
            "users",
            "permissions",
            "topic_permissions",
            "operator_policies",
            "vhost_settings",
            "parameters",
        ):
            got, want = back.group(kind), source.group(kind)
            assert len(got) == len(want) and all(x in want for x in got), (name, kind, got)
        changes, _ = plan_access(
            back,
            source,
            scope=["billing"],
            prune=True,
            connecting_user="guest",
            env={"ORIGIN_URI": "amqp://u:p@origin/"},
        )
        assert [c for c in changes if c.kind not in ("federation upstream", "shovel")] == []
    doc = json.loads(written["single.json"])
    assert doc["users"][0]["password_hash"] == APP_HASH and "password" not in doc["users"][0]
    assert {p["component"] for p in doc["parameters"]} == {
        "vhost-limits",
        "operator_policy",
        "federation-upstream",
        "shovel",
    }
    assert "uri-env" in json.dumps(doc) and "ORIGIN_URI" in json.dumps(doc)
    assert yaml.safe_load(written["export.yml"])["federation_upstreams"] == [
        {"name": "origin", "uri_env": "ORIGIN_URI", "max_hops": 1, "ack_mode": "on-confirm"}
    ]


def test_export_names_a_variable_for_each_uri_with_a_password(tmp_path: Path) -> None:
    """A broker's URI with a password becomes ``*_env`` naming a variable (per kind, name
    and URI key; the vhost joins when two vhosts share a name) and a warning says to set
    it; one without a password stays literal. A list of several URIs is written as a list:
    literally without a password, else one variable per URI, numbered in the broker's
    order; both formats, loaded with those variables set, plan to nothing."""
    secret = "amqp://app:S3cret@far/x"
    other_secret = "amqp://app:0ther-S3cret@near/x"
    raw = [
        (FEDERATION, "a", "origin", {"uri": secret, "max-hops": 2}),
        (FEDERATION, "b", "origin", {"uri": [secret]}),
        (FEDERATION, "a", "many", {"uri": ["amqp://one", "amqp://two"]}),
        (FEDERATION, "a", "failover", {"uri": [secret, "amqp://plain", other_secret]}),
        (
            SHOVEL,
            "a",
            "move it",
            {
                "src-uri": "amqp://",
                "src-queue": "q",
                "dest-uri": secret,
                "dest-queue": "r",
                "src-protocol": "amqp091",
                "dest-protocol": "amqp091",
                "dest-publish-properties": {"delivery_mode": 2},
            },
        ),
    ]
    specs, problems = exportable(raw)
    by = {(s.kind, s.vhost, s.name): s for s in specs}
    assert by[("federation upstream", "a", "origin")].uri_refs == {
        "uri": "$FEDERATION_UPSTREAM_ORIGIN_URI"
    }
    assert by[("federation upstream", "b", "origin")].uri_refs == {
        "uri": "$FEDERATION_UPSTREAM_B_ORIGIN_URI"
    }
    move = by[("shovel", "a", "move it")]
    assert move.literal_uris == {"src_uri": "amqp://"}
    assert move.uri_refs["dest_uri"] == "$SHOVEL_MOVE_IT_DEST_URI"
    assert move.settings == {"src_queue": "q", "dest_queue": "r"}
    assert by[("federation upstream", "a", "many")].literal_uris == {
        "uri": ("amqp://one", "amqp://two")
    }
    failover = [f"FEDERATION_UPSTREAM_FAILOVER_URI_{i}" for i in (1, 2, 3)]
    assert by[("federation upstream", "a", "failover")].uri_refs == {
        "uri": tuple("$" + v for v in failover)
    }
    assert problems == []
    warnings = [str(w) for w in export_warnings(specs)]
    assert sum("set that environment variable" in w for w in warnings) == 6
    for i, variable in enumerate(failover, 1):
        assert (
            "federation upstream 'failover' (vhost a): uri lists URIs with a password, so the "
            f"export names URI {i} of 3 uri_env: {variable}; set that environment variable"
        ) in "\n".join(warnings)
    assert any("SHOVEL_MOVE_IT_DEST_URI" in w for w in warnings)
    assert any("not exported: dest-publish-properties" in w for w in warnings)
    topology = Topology(access=Access(parameters=tuple(specs)))
    text = to_yaml(topology, ["a", "b"]) + json.dumps(to_definitions(topology, ["a", "b"]))
    assert "S3cret" not in text + "\n".join(warnings)
    assert "amqp://plain" not in text  # a list is written one way: here all by variable
    assert "#   SHOVEL_MOVE_IT_DEST_URI (dest_uri of shovel 'move it' (vhost a))" in text
    assert (
        "#   FEDERATION_UPSTREAM_FAILOVER_URI_2 (uri 2 of 3 of federation upstream 'failover' "
        "(vhost a))"
    ) in text
    document = to_document(topology, ["a", "b"])
    assert document["shovels"][0]["dest_uri_env"] == "SHOVEL_MOVE_IT_DEST_URI"
    upstreams = {u["name"]: u for u in document["federation_upstreams"]}
    assert upstreams["many"]["uri"] == ["amqp://one", "amqp://two"]
    assert upstreams["failover"]["uri_env"] == failover
    definitions = to_definitions(topology, ["a", "b"])
    values = {p["name"]: p["value"] for p in definitions["parameters"]}
    assert values["many"]["uri"] == ["amqp://one", "amqp://two"]
    assert values["failover"]["uri-env"] == failover and "uri" not in values["failover"]

    env = {
        "FEDERATION_UPSTREAM_ORIGIN_URI": secret,
        "FEDERATION_UPSTREAM_B_ORIGIN_URI": secret,
        failover[0]: secret,
        failover[1]: "amqp://plain",
        failover[2]: other_secret,
        "SHOVEL_MOVE_IT_DEST_URI": secret,
    }
    for name, written in (
        ("export.yml", to_yaml(topology, ["a", "b"])),
        ("export.json", json.dumps(to_definitions(topology, ["a", "b"]), indent=2)),
    ):
        (tmp_path / name).write_text(written)
        back = _access(load([str(tmp_path / name)], vhost=None, default_vhost="a"))
        assert len(back.group("parameters")) == len(specs), name

        def changes_with(variables: dict[str, str], back: Access = back) -> list[Any]:
            found, _ = plan_access(
                back,
                Access(parameters=tuple(specs)),
                scope=["a", "b"],
                prune=True,
                connecting_user="guest",
                env=variables,
            )
            return found

        assert changes_with(env) == [], name
        changes = changes_with({**env, failover[0]: other_secret, failover[2]: secret})
        assert [(c.name, [d.field for d in c.differences]) for c in changes] == [
            ("failover", ["uri"])
        ], name


def test_users_in_a_definitions_file_plan_against_the_broker_hash() -> None:
    """A user read from a definitions file with the broker's own hash plans as no change;
    a different hash as a password change (neither shown)."""
    doc = {"users": [{"name": "app", "password_hash": APP_HASH, "tags": ["monitoring"]}]}
    t, problems = parse_definitions(json.dumps(doc), "u.json")
    assert problems == []
    live = Access(
        users=(
            UserSpec(
                "app",
                ("monitoring",),
                password_hash=APP_HASH,
                hashing_algorithm="rabbit_password_hashing_sha256",
            ),
        )
    )
    same, _ = plan_access(_access(t), live, scope=["/"], prune=False, connecting_user="guest")
    assert same == []
    other = Access(
        users=(
            UserSpec(
                "app",
                ("monitoring",),
                password_hash=rabbit_hash("x", b"salt"),
                hashing_algorithm="rabbit_password_hashing_sha256",
            ),
        )
    )
    (change,) = plan_access(_access(t), other, scope=["/"], prune=False, connecting_user="guest")[0]
    assert [(d.field, d.before, d.after) for d in change.differences] == [
        ("password", "(hidden)", "(changed)")
    ]

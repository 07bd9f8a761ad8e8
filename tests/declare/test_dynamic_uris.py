"""Federation upstreams and shovels with several URIs (failover lists), without a broker.

``uri`` / ``uri_env`` / ``uri_file`` (and a shovel's ``src_*``, ``dest_*``) take a list:
loaded with ``file:line`` refusals (an empty list, a password or a non-string in an item),
planned against the broker's list by digest (order included, no URI in any output), written
as a list (a list of one as the string it always was), and a missing variable or file of
an item is named before any write.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fake_http import FakeTransport, Request, Response, body_of, json_response
from rich.console import Console

from declare_amqp import TopologyError, json_schema, load, parse_unvalidated, resolve_address
from declare_amqp._management import ManagementClient
from declare_amqp._plan import Change, Plan
from declare_amqp._render import plan_json, print_plan
from declare_amqp.kinds import COMPONENTS, kind_of
from declare_amqp.kinds._base import PlanContext
from declare_amqp.kinds.federation_upstream import FEDERATION_UPSTREAM as FEDERATION
from declare_amqp.kinds.parameters import ParameterSpec


def plan_dynamic(
    desired: list[ParameterSpec],
    actual: list[ParameterSpec],
    managed: Any,
    scope: list[str],
    prune: bool,
    env: dict[str, str],
) -> list[Change]:
    """Each runtime-parameter kind's plan of its part of ``desired`` and ``actual``."""
    ctx = PlanContext(scope, prune, "", frozenset(managed), env=env)
    return [
        c
        for comp in COMPONENTS
        for c in comp.plan(
            [d for d in desired if d.kind == comp.kind],
            [a for a in actual if a.kind == comp.kind],
            ctx,
        )[0]
    ]


def apply_dynamic(management: ManagementClient, change: Change, env: dict[str, str]) -> None:
    """Write one change as apply does: through its kind."""
    kind_of(change.kind).write(management, change, env)


def read_broker(
    management: ManagementClient, kinds: list[str], vhosts: list[str]
) -> list[ParameterSpec]:
    """The broker's objects of ``kinds`` in ``vhosts``."""
    return [s for k in kinds for s in kind_of(k).read_broker(management, vhosts, False)]


SECRET_A = "amqp://app:Fail0ver-A-Secret@one.example/v"
SECRET_B = "amqp://app:Fail0ver-B-Secret@two.example/v"


def _parameters(text: str, name: str = "t.yml") -> list[ParameterSpec]:
    topology = parse_unvalidated(text, name)
    assert topology.access is not None
    return list(topology.access.of(ParameterSpec))


def _problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "t.yml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load([str(path)])
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


def test_each_uri_key_takes_a_list_and_a_list_of_one_is_a_string() -> None:
    specs = _parameters("""\
federation_upstreams:
  - name: literal
    uri: [amqp://one.example/v, amqp://two.example/v]
  - name: by-env
    uri_env: [ORIGIN_A, ORIGIN_B]
  - name: by-file
    uri_file: [/etc/a-uri, /etc/b-uri]
  - name: one-in-a-list
    uri_env: [ORIGIN_A]
  - name: plain
    uri_env: ORIGIN_A
shovels:
  - name: move
    src_uri: [amqp://one.example/v]
    src_queue: q
    dest_uri_env: [DEST_A, DEST_B]
    dest_queue: r
""")
    by = {s.name: s for s in specs}
    assert by["literal"].literal_uris == {"uri": ("amqp://one.example/v", "amqp://two.example/v")}
    assert by["by-env"].uri_refs == {"uri": ("$ORIGIN_A", "$ORIGIN_B")}
    assert by["by-file"].uri_refs == {"uri": ("/etc/a-uri", "/etc/b-uri")}
    assert by["one-in-a-list"].uri_refs == by["plain"].uri_refs == {"uri": "$ORIGIN_A"}
    assert by["move"].literal_uris == {"src_uri": "amqp://one.example/v"}
    assert by["move"].uri_refs["dest_uri"] == ("$DEST_A", "$DEST_B")
    assert by["move"].settings == {"src_queue": "q", "dest_queue": "r"}
    assert "uri from [$ORIGIN_A, $ORIGIN_B]" in by["by-env"].shown


def test_list_mistakes_are_refused_with_file_and_line_and_no_secret(tmp_path: Path) -> None:
    problems = _problems(
        f"""\
federation_upstreams:
  - name: empty
    uri: []
  - name: empty-env
    uri_env: []
  - name: leaky
    uri:
      - amqp://one.example/v
      - {SECRET_A}
  - name: odd
    uri:
      - amqp://one.example/v
      - {{password: Not-Sh0wn}}
  - name: not-a-name
    uri_env: [A, 5]
  - name: both
    uri: [amqp://one.example/v]
    uri_env: [A]
shovels:
  - name: mv
    src_uri_file: []
    src_queue: q
    dest_uri: amqp://two.example/v
    dest_queue: r
  - name: mv2
    src_uri_env: A
    src_queue: q
    dest_uri: [{SECRET_B}]
    dest_queue: r
""",
        tmp_path,
    )
    joined = "\n".join(problems)
    for expected in (
        "t.yml:3: federation upstream 'empty': 'uri' must not be an empty list",
        "t.yml:5: federation upstream 'empty-env': 'uri_env' must not be an empty list",
        "t.yml:13: federation upstream 'odd': 'uri' item 2 must be a URI string (not shown)",
        "t.yml:15: federation upstream 'not-a-name': 'uri_env' item 2 must be a string, not 5",
        "t.yml:16: federation upstream 'both': give one of uri, uri_env, not several",
        "t.yml:21: shovel 'mv': 'src_uri_file' must not be an empty list",
    ):
        assert expected in joined, (expected, problems)
    assert "Secret" not in joined and "Not-Sh0wn" not in joined
    # a URI holding a password is accepted with a warning since issue 19 (the broker's import
    # takes it): not among the problems, and never echoed
    assert "holds a password" not in joined


def test_a_uri_with_a_password_is_a_warning_that_never_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(
        f"""\
federation_upstreams:
  - name: leaky
    uri:
      - amqp://one.example/v
      - {SECRET_A}
shovels:
  - name: mv2
    src_uri_env: A
    src_queue: q
    dest_uri: [{SECRET_B}]
    dest_queue: r
"""
    )
    topology = load([str(path)])
    shown = [str(w).replace(str(tmp_path) + "/", "") for w in topology.warnings]
    assert any(
        w.startswith("t.yml:5: federation upstream 'leaky': 'uri' item 2 holds a password")
        and "--strict refuses it" in w
        for w in shown
    ), shown
    assert any(
        w.startswith("t.yml:10: shovel 'mv2': 'dest_uri' item 1 holds a password") for w in shown
    )
    assert topology.access is not None
    leaky = next(p for p in topology.access.of(ParameterSpec) if p.name == "leaky")
    assert "with a password, not shown" in leaky.shown
    text = "\n".join(shown) + leaky.shown + repr(topology.access)
    assert "Secret" not in text


def test_the_schema_takes_a_list_of_strings_and_refuses_an_empty_one() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    uri = schema["$defs"]["federation_upstream"]["properties"]["uri_env"]
    assert uri["type"] == ["string", "array"] and uri["items"] == {"type": "string"}
    assert uri["minItems"] == 1
    assert schema["$defs"]["shovel"]["properties"]["dest_uri_file"]["minItems"] == 1
    good = {"federation_upstreams": [{"name": "u", "uri_env": ["A", "B"]}]}
    jsonschema.validate(good, schema)
    for bad in ([], ["A", 5]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"federation_upstreams": [{"name": "u", "uri": bad}]}, schema)


def _broker_spec(uri: Any) -> ParameterSpec:
    """The upstream 'origin' as read_broker keeps it (only a digest of its URIs)."""
    value = {"uri": uri, "max-hops": 1}

    def handle(request: Request) -> Response:
        if request.path == "/api/parameters/federation-upstream/v":
            return json_response(200, [{"name": "origin", "value": value}])
        return json_response(404, {"error": "not_found"})

    with _client(handle) as management:
        (spec,) = read_broker(management, [FEDERATION.kind], ["v"])
    return spec


def _client(handle: Any) -> ManagementClient:
    """A management client whose broker answers the overview, and ``handle`` the rest."""
    overview = {"rabbitmq_version": "4.0.5", "listeners": [], "exchange_types": []}

    def answer(request: Request) -> Response:
        if request.path == "/api/overview":
            return json_response(200, overview)
        response: Response = handle(request)
        return response

    address = resolve_address(["amqp://guest:guest@broker.test:5672"], env={})
    return ManagementClient(address, transport=FakeTransport(answer))


def _rendered(changes: list[Any]) -> str:
    """The plan as text (as `plan` prints it) and as its JSON contract."""
    out = io.StringIO()
    print_plan(Console(file=out, width=300), Plan(tuple(changes), vhosts=("v",)), "broker.test")
    return out.getvalue() + plan_json(Plan(tuple(changes)))


DESIRED = """\
vhost: v
federation_upstreams:
  - {name: origin, uri_env: [ORIGIN_A, ORIGIN_B], max_hops: 1}
"""


def test_a_list_plans_against_the_brokers_list_in_order_without_showing_a_uri() -> None:
    (want,) = _parameters(DESIRED)
    env = {"ORIGIN_A": SECRET_A, "ORIGIN_B": SECRET_B}

    def plan(broker_uri: Any) -> list[Any]:
        return plan_dynamic([want], [_broker_spec(broker_uri)], (), ["v"], False, env)

    assert plan([SECRET_A, SECRET_B]) == []
    changed = {
        "one item different": [SECRET_A, SECRET_B.replace("two", "three")],
        "another order": [SECRET_B, SECRET_A],
        "one of them": SECRET_A,
        "a list of one": [SECRET_A],
    }
    for why, broker_uri in changed.items():
        changes = plan(broker_uri)
        assert [(d.field, d.before, d.after) for c in changes for d in c.differences] == [
            ("uri", "(hidden)", "(changed)")
        ], why
        shown = _rendered(changes)
        assert "uri: (hidden) -> (changed)" in shown and '"uri": "(changed)"' in shown
        assert "Secret" not in shown and "one.example" not in shown, why
    # a list of one in the file is its string: it matches the broker's string or list of one
    (single,) = _parameters(
        "vhost: v\nfederation_upstreams:\n  - {name: origin, uri_env: [A], max_hops: 1}\n"
    )
    for broker_uri in (SECRET_A, [SECRET_A]):
        have = _broker_spec(broker_uri)
        assert plan_dynamic([single], [have], (), ["v"], False, {"A": SECRET_A}) == []


def test_a_missing_variable_or_file_of_an_item_is_named_before_any_write(tmp_path: Path) -> None:
    (want,) = _parameters(DESIRED, str(tmp_path / "t.yml"))
    with pytest.raises(TopologyError) as info:
        plan_dynamic([want], [], (), ["v"], False, {"ORIGIN_A": SECRET_A})
    assert str(info.value.problems[0]) == (
        f"{tmp_path}/t.yml:3: federation upstream 'origin' (vhost v): uri_env: the environment "
        "variable ORIGIN_B (URI 2 of 2) is not set (or empty)"
    )
    first = tmp_path / "a-uri"
    first.write_text(SECRET_A + "\n")
    (by_file,) = _parameters(
        f"vhost: v\nshovels:\n  - name: mv\n    src_uri_env: A\n    src_queue: q\n"
        f"    dest_uri_file: [{first}, {tmp_path / 'missing'}]\n    dest_queue: r\n"
    )
    with pytest.raises(TopologyError) as info:
        plan_dynamic([by_file], [], (), ["v"], False, {"A": SECRET_A})
    message = str(info.value)
    assert f"dest_uri_file: cannot read {tmp_path / 'missing'} (URI 2 of 2)" in message
    assert "shovel 'mv'" in message and "Secret" not in message


def test_apply_writes_several_uris_as_a_list_and_one_as_a_string() -> None:
    written: list[dict[str, Any]] = []

    def handle(request: Request) -> Response:
        written.append(body_of(request)["value"])
        return Response(201)

    specs = _parameters("""\
vhost: v
federation_upstreams:
  - {name: several, uri_env: [ORIGIN_A, ORIGIN_B]}
  - {name: one, uri_env: [ORIGIN_A]}
shovels:
  - {name: mv, src_uri: [amqp://one.example/v, amqp://two.example/v], src_queue: q,
     dest_uri_env: ORIGIN_B, dest_queue: r}
""")
    env = {"ORIGIN_A": SECRET_A, "ORIGIN_B": SECRET_B}
    with _client(handle) as management:
        for change in plan_dynamic(specs, [], (), ["v"], False, env):
            apply_dynamic(management, change, env)
    assert [v.get("uri", v.get("src-uri")) for v in written] == [
        [SECRET_A, SECRET_B],
        SECRET_A,
        ["amqp://one.example/v", "amqp://two.example/v"],
    ]
    assert written[2]["dest-uri"] == SECRET_B


def test_a_refused_write_redacts_every_uri_of_the_list() -> None:
    from declare_amqp import BrokerError

    def handle(request: Request) -> Response:
        body = (request.body or b"").decode()
        return json_response(400, {"error": "bad_request", "reason": f"refused {body}"})

    (spec,) = _parameters(DESIRED)
    env = {"ORIGIN_A": SECRET_A, "ORIGIN_B": SECRET_B}
    with _client(handle) as management:
        (change,) = plan_dynamic([spec], [], (), ["v"], False, env)
        with pytest.raises(BrokerError) as info:
            apply_dynamic(management, change, env)
    assert "Secret" not in str(info.value) and "writing federation upstream" in str(info.value)


def test_a_create_of_lists_shows_their_references_never_the_uris() -> None:
    specs = _parameters(
        "vhost: v\nfederation_upstreams:\n"
        "  - {name: u, uri: [amqp://one.example/v, amqp://two.example/v]}\n"
        "  - {name: w, uri_env: [ORIGIN_A, ORIGIN_B]}\n"
    )
    env = {"ORIGIN_A": SECRET_A, "ORIGIN_B": SECRET_B}
    changes = plan_dynamic(specs, [], (), ["v"], False, env)
    assert [c.action.value for c in changes] == ["create", "create"]
    shown = _rendered(changes)
    assert '"$ORIGIN_A"' in shown
    assert "Secret" not in shown and "one.example" not in shown


def test_prune_keeps_a_migrations_shovel_and_deletes_a_stray_one() -> None:
    """A shovel ``apply --migrate --mover shovel`` wrote (a killed run leaves it finishing
    its round) is the migration's: prune keeps it, as it keeps the holding queue."""
    shovel = (
        "  - {{name: '{}', src_uri: 'amqp://', src_queue: a, dest_uri: 'amqp://', dest_queue: b}}\n"
    )
    desired = _parameters("vhost: v\nshovels:\n" + shovel.format("kept"))
    broker = _parameters(
        "vhost: v\nshovels:\n"
        + "".join(shovel.format(n) for n in ("kept", "declare-amqp.migrate q", "stray"))
    )
    changes = plan_dynamic(desired, broker, ("shovels",), ["v"], True, {})
    assert [c.name for c in changes if c.action == "delete"] == ["stray"]

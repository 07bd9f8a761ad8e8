"""``declare-amqp route`` / ``explain`` from files and the ``expect`` section in ``validate``:
the command line over the simulator, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from declare_amqp._cli import main
from declare_amqp._inspect import parse_header

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "topology.example.yml")

HEADERS_TOPOLOGY = """\
vhost: v
exchanges:
  - {name: by-size, type: headers}
queues:
  - name: big
    bindings:
      - exchange: by-size
        arguments: {x-match: all, size: 1}
  - name: text
    bindings:
      - exchange: by-size
        arguments: {x-match: all, size: "1"}
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--no-color", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_route_text_shows_queues_path_and_dead_letters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "route", EXAMPLE, "--exchange", "email", "--routing-key", "x.y")
    assert code == 0
    assert "queues: email.default" in out
    assert "email -> email-undeliverable: no binding matched, alternate exchange" in out
    assert (
        "dead-lettered from email.default: exchange 'email.dlx', routing key 'x.y' -> email.dead"
        in out
    )


def test_route_json_has_the_issue_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "route",
        EXAMPLE,
        "--exchange",
        "email",
        "--routing-key",
        "email.high",
        "--format",
        "json",
    )
    result = json.loads(out)
    assert code == 0
    assert result["queues"] == ["email.high"]
    assert result["path"][0] == {
        "exchange": "email",
        "binding_key": "email.high",
        "destination": "email.high",
        "destination_type": "queue",
        "via": "binding",
    }
    assert result["dead_letter"] == {
        "email.high": {
            "exchange": "email.dlx",
            "routing_key": "email.high",
            "queues": ["email.dead"],
        }
    }


@pytest.mark.parametrize(
    ("header", "queue"), [("size=1", "big"), ('size="1"', "text"), ("size=one", None)]
)
def test_header_values_are_json_when_they_parse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, header: str, queue: str | None
) -> None:
    f = tmp_path / "h.yml"
    f.write_text(HEADERS_TOPOLOGY)
    code, out, _ = _run(
        capsys, "route", str(f), "--exchange", "by-size", "--header", header, "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["queues"] == ([queue] if queue else [])


def test_parse_header() -> None:
    assert parse_header("size=1") == ("size", 1)
    assert parse_header("flag=true") == ("flag", True)
    assert parse_header("name=a=b") == ("name", "a=b")
    assert parse_header("void=null") == ("void", None)


def test_messages_file_one_result_per_line_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        {"exchange": "email", "routing_key": "email.high"},
        {"exchange": "email", "routing_key": "nobody"},
        {"exchange": "", "routing_key": "email.dead"},
        {"exchange": "missing"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    code, out, _ = _run(capsys, "route", EXAMPLE, "--messages", str(m), "--format", "json")
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["queues"] for r in results] == [["email.high"], ["email.default"], ["email.dead"], []]
    assert "404" in results[3]["refused"]
    code, out, _ = _run(capsys, "route", EXAMPLE, "--messages", str(m))
    assert out.splitlines()[0].startswith("email [email.high] -> email.high")


def test_messages_file_errors_name_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    m = tmp_path / "m.jsonl"
    m.write_text('{"exchange": "email"}\nnot json\n\n{"routing_key": "k"}\n')
    code, _, err = _run(capsys, "route", EXAMPLE, "--messages", str(m))
    assert code == 1
    assert f"{m}:2: not JSON" in err
    assert f"{m}:4: each line must be an object" in err


def test_explain_json_from_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "p.yml"
    f.write_text(
        "vhost: v\nqueues:\n  - {name: orders, message_ttl: 60000}\n"
        "policies:\n"
        "  - {name: ttl, pattern: '^orders$', apply_to: queues, priority: 2,\n"
        "     definition: {message-ttl: 30000, max-length: 100}}\n"
        "  - {name: broad, pattern: '.*', priority: 1, definition: {max-length: 5}}\n"
        "operator_policies:\n"
        "  - {name: cap, pattern: '.*', apply_to: queues, definition: {max-length: 50}}\n"
    )
    code, out, _ = _run(capsys, "explain", "queue", "orders", str(f), "--format", "json")
    e = json.loads(out)
    assert code == 0
    assert (e["policy"], e["operator_policy"]) == ("ttl", "cap")
    assert e["effective_policy_definition"] == {"max-length": 50, "message-ttl": 30000}
    assert e["effective"]["message-ttl"]["value"] == 30000
    assert e["effective"]["message-ttl"]["source"] == "policy"
    assert e["effective"]["max-length"]["source"] == "operator_policy"
    code, out, _ = _run(capsys, "explain", "queue", "orders", str(f))
    assert "policy: ttl" in out and "also considered: broad" in out
    code, _, err = _run(capsys, "explain", "queue", "nope", str(f))
    assert code == 1 and "queue 'nope' is not in vhost 'v'" in err


EXPECTING = """\
vhost: v
exchanges:
  - {name: orders, type: topic}
queues:
  - name: eu
    bindings:
      - {exchange: orders, routing_key: "eu.#"}
expect:
  - {exchange: orders, routing_key: eu.created, reaches: [eu]}
  - {exchange: orders, routing_key: us.created, reaches: []}
  - {exchange: orders, routing_key: eu, reaches: [eu]}
  - {exchange: elsewhere, routing_key: x, reaches: []}
"""


def test_validate_checks_expectations_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "t.yml"
    f.write_text(EXPECTING)
    code, out, _ = _run(capsys, "validate", str(f))
    assert code == 0, out
    assert "expect: 3 of 4 expectations hold" in out
    assert f"{f}:12: expect: a message to exchange 'elsewhere'" in out  # noted, not checked
    f.write_text(
        EXPECTING.replace(
            "reaches: []}\n  - {exchange: orders, routing_key: eu,",
            "reaches: [eu]}\n  - {exchange: orders, routing_key: eu,",
        )
    )
    code, out, err = _run(capsys, "validate", str(f))
    assert code == 1
    assert f"{f}:10: expect: a message to exchange 'orders' with routing key 'us.created'" in err
    assert "expected eu, but it reaches no queue (unroutable)" in err
    assert "valid" not in out


def test_expect_entries_are_checked_for_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "t.yml"
    f.write_text("expect:\n  - {exchange: x, reach: [q]}\n")
    code, _, err = _run(capsys, "validate", str(f))
    assert code == 1 and f"{f}:2" in err and "reaches" in err


def test_broker_version_must_be_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "validate", EXAMPLE, "--broker-version", "latest")
    assert code == 1 and "--broker-version 'latest'" in err


OLD_TOPOLOGY = """\
vhost: v
queues:
  - {name: lazy, queue_mode: lazy, durable: false}
  - {name: work, type: quorum}
policies:
  - {name: ha, pattern: '^lazy$', definition: {ha-mode: all}}
consumers:
  - name: worker
    queues: [{queue: work, prefetch: 5}]
"""


def test_validate_reports_what_a_version_breaks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--broker-version: what the release removes, denies or refuses is an error with its
    file:line, the release and what to do instead; an older release accepts the same file."""
    f = tmp_path / "old.yml"
    f.write_text(OLD_TOPOLOGY)
    code, _, err = _run(capsys, "validate", str(f), "--broker-version", "4.3.0")
    assert code == 1
    assert (
        f"{f}:3: queue 'lazy' (vhost v): queue_mode (x-queue-mode) is refused from RabbitMQ 4.3"
        in err
    )
    assert "remove it" in err
    assert f"{f}:3: queue 'lazy' (vhost v): transient (durable: false)" in err
    assert (
        f"{f}:6: policy 'ha' (vhost v): ha-mode: classic queue mirroring was removed in "
        "RabbitMQ 4.0" in err
    )
    code, _, err = _run(capsys, "validate", str(f), "--broker-version", "3.13.7")
    assert code == 0, err
    code, _, err = _run(capsys, "validate", str(f), "--broker-version", "4.0.5")
    assert code == 1 and "x-queue-mode" not in err and "ha-mode" in err


def test_validate_warns_consumers_about_passive_declares(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "w.yml"
    f.write_text(
        "vhost: v\nqueues:\n  - {name: work, type: quorum}\n"
        "consumers:\n  - name: worker\n    queues: [{queue: work, prefetch: 5}]\n"
    )
    code, _, err = _run(capsys, "validate", str(f), "--broker-version", "4.2.6")
    assert code == 0
    assert (
        f"{f}:5: consumer 'worker' (vhost v): priority-worker checks its queues with passive "
        "declares" in err
    )
    assert "configure permission" in err
    code, _, err = _run(capsys, "validate", str(f), "--broker-version", "4.2.7")
    assert "passive" not in err


def test_explain_names_what_the_version_or_type_ignores(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "old.yml"
    f.write_text(OLD_TOPOLOGY)
    code, out, _ = _run(
        capsys, "explain", "queue", "lazy", str(f), "--broker-version", "4.3.0", "--format", "json"
    )
    ignored = {(i["key"], i["source"]) for i in json.loads(out)["ignored"]}
    assert code == 0
    assert {
        ("x-queue-mode", "argument"),
        ("durable: false", "queue"),
        ("ha-mode", "policy"),
    } <= ignored
    code, out, _ = _run(capsys, "explain", "queue", "work", str(f), "--format", "json")
    assert json.loads(out)["effective"]["delivery-limit"]["source"] == "default"
    code, out, _ = _run(
        capsys, "explain", "queue", "work", str(f), "--broker-version", "3.13", "--format", "json"
    )
    assert "delivery-limit" not in json.loads(out)["effective"]

"""Bad input and an unhappy broker: a one-paragraph message, exit 1, no traceback, nothing
written, and never a password in any output.

Input errors must name ``file:line``; each bad file also holds a valid queue, so "nothing
written" means something.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from declare_support import PASSWORD, QUOTED_PASSWORD, SECRET

BAD_FILES = {
    # name: (text, line the message must name, words it must contain)
    "malformed-yaml": (
        """\
queues:
  - name: fine
    durable: true
   bad: indentation
""",
        4,
        ("not valid YAML",),
    ),
    "unknown-key": (
        """\
queues:
  - name: fine
exchanges:
  - name: events
    type: topic
    durabel: true
""",
        6,
        ("unknown key 'durabel'", "did you mean 'durable'"),
    ),
    "wrong-type": (
        """\
queues:
  - name: fine
  - name: prio
    max_priority: high
""",
        4,
        ("max_priority", "whole number", "high"),
    ),
    "wrong-type-boolean": (
        """\
queues:
  - name: fine
    durable: "yes"
""",
        3,
        ("durable", "true or false"),
    ),
    "missing-binding-source": (
        """\
queues:
  - name: fine
    bindings:
      - exchange: nowhere
""",
        4,
        ("nowhere", "does not exist on the broker"),
    ),
    # A missing dead-letter or alternate exchange is accepted by the broker: a warning, and
    # an error only with --strict (test_warnings_broker.py).
    "reserved-name": (
        """\
queues:
  - name: fine
exchanges:
  - name: amq.custom
    type: topic
""",
        4,
        ("amq.", "reserved"),
    ),
    "duplicate-key": (
        """\
queues:
  - name: fine
  - name: one
    name: two
""",
        4,
        ("appears twice", "line 3"),
    ),
    "unknown-policy-key": (
        """\
queues:
  - name: fine
policies:
  - name: limits
    pattern: ".*"
    definition:
      max-lenght: 5
""",
        4,
        ("max-lenght", "did you mean 'max-length'"),
    ),
    "argument-the-queue-type-forbids": (
        """\
queues:
  - name: fine
  - name: votes
    type: quorum
    max_priority: 5
""",
        3,
        ("max_priority", "quorum"),
    ),
    "misspelt-choice": (
        """\
queues:
  - name: fine
  - name: votes
    type: quorom
""",
        4,
        ("quorom", "did you mean 'quorum'"),
    ),
}


# apply for every case; plan (which must refuse the same way) for one loader error and one
# reference error, to keep the run short.
BAD_INPUT_RUNS = [("apply", case) for case in sorted(BAD_FILES)] + [
    ("plan", "unknown-key"),
    ("plan", "missing-binding-source"),
]


@pytest.mark.parametrize(
    ("command", "case"),
    BAD_INPUT_RUNS,
    ids=[f"{command}-{case}" for command, case in BAD_INPUT_RUNS],
)
def test_bad_input_is_one_paragraph_with_file_line_and_writes_nothing(
    declare: Any, case: str, command: str
) -> None:
    """Each kind of bad input: exit 1, file:line and the reason in one paragraph, no
    traceback, and the valid queue of the same file is not created."""
    text, line, words = BAD_FILES[case]
    f = declare.write("bad.yml", text)
    declare.assert_refused(declare(command, f), "bad.yml", line, words)


def test_malformed_yaml_names_the_line_where_the_problem_starts(declare: Any) -> None:
    """A quote left open is reported at the line where it was opened, not past the end
    of the file."""
    f = declare.write(
        "bad.yml", 'queues:\n  - name: fine\n  - name: "unclosed\n    durable: true\n'
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "bad.yml:3" in result.err or "line 3" in result.err, result
    assert declare.is_empty()


def test_vhost_that_exists_nowhere_is_an_input_error(declare: Any) -> None:
    """A file whose vhost is neither on the broker nor listed under `vhosts`: exit 1 with
    file:line and a hint to list it; nothing is created."""
    missing = f"test-missing-{uuid.uuid4().hex[:8]}"
    f = declare.write(
        "bad.yml",
        f"""
        vhost: {missing}
        queues:
          - name: fine
    """,
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "bad.yml:3" in result.err and "vhosts" in result.err, result
    with declare.broker.http() as http:
        assert http.get(f"/api/vhosts/{missing}").status_code == 404


def test_exchange_type_of_a_plugin_that_is_not_enabled(declare: Any) -> None:
    """A plugin exchange type the broker lacks is reported with file:line before anything
    is written (the management API lists the broker's exchange types)."""
    if "x-delayed-message" in declare.exchange_types():
        pytest.skip("this broker has the delayed-message plugin enabled")
    f = declare.write(
        "bad.yml",
        """
        queues:
          - name: fine
        exchanges:
          - name: plain
            type: direct
          - name: later
            type: x-delayed-message
            arguments: {x-delayed-type: direct}
    """,
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "bad.yml:6" in result.err and "x-delayed-message" in result.err, result
    assert declare.is_empty()


def test_queue_version_out_of_range_is_an_input_error(declare: Any) -> None:
    """queue_version 3 is refused with file:line before anything is written."""
    f = declare.write(
        "bad.yml",
        """
        queues:
          - name: fine
          - name: v3
            queue_version: 3
    """,
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "bad.yml:4" in result.err and "queue_version" in result.err, result
    assert declare.is_empty()


def test_stream_max_age_in_a_bad_format_is_an_input_error(declare: Any) -> None:
    """A retention like "forever" is refused with file:line before anything is written."""
    f = declare.write(
        "bad.yml",
        """
        queues:
          - name: fine
          - name: events
            type: stream
            max_age: forever
    """,
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "bad.yml:5" in result.err and "max_age" in result.err, result
    assert declare.is_empty()


def test_validate_needs_no_broker(declare: Any) -> None:
    """validate exits 0 for the example and 1 (with file:line) for a bad file, without
    any broker address."""
    good = declare.copy_example()
    ok = declare("validate", good, connect=False)
    assert ok.code == 0, ok
    bad = declare.write("bad.yml", BAD_FILES["unknown-key"][0])
    result = declare("validate", bad, connect=False)
    declare.assert_clean_failure(result)
    assert "bad.yml:6" in result.err, result


def test_bad_input_in_json_format_is_a_json_document(declare: Any) -> None:
    """With --format json an input error is still valid JSON on stdout, listing each
    problem with its file:line."""
    f = declare.write("bad.yml", BAD_FILES["wrong-type"][0])
    result = declare("plan", f, "--format", "json")
    assert result.code == 1, result
    doc = json.loads(result.out)
    assert doc["error"] == "invalid"
    assert any(p.startswith("bad.yml:4") for p in doc["problems"]), doc


# ------------------------------------------------------------------ the broker side


def _no_password(result: Any) -> None:
    assert SECRET not in result.text, result


def test_unreachable_broker(declare: Any) -> None:
    """Nothing listens where the URLs point: exit 1, one paragraph that says which
    address did not answer, no traceback, no password."""
    amqp, http = declare.closed_port(), declare.closed_port()
    f = declare.copy_example()
    result = declare(
        "apply",
        f,
        "--url",
        declare.url(port=amqp, password=PASSWORD),
        "--management-url",
        f"http://127.0.0.1:{http}",
        connect=False,
    )
    declare.assert_clean_failure(result)
    assert f"127.0.0.1:{http}" in result.err, result
    assert "does not answer" in result.err or "unreachable" in result.err, result
    _no_password(result)


def test_unreachable_amqp_only_mode(declare: Any) -> None:
    """--amqp-only with nothing listening on the AMQP port: exit 1, says so, no password."""
    port = declare.closed_port()
    f = declare.write("q.yml", "queues:\n  - name: fine\n")
    result = declare(
        "apply", f, "--amqp-only", "--url", declare.url(port=port, password=PASSWORD), connect=False
    )
    declare.assert_clean_failure(result)
    assert f"127.0.0.1:{port}" in result.err and "AMQP" in result.err, result
    _no_password(result)


@pytest.mark.parametrize("command", ["apply", "plan", "export"])
def test_wrong_credentials(declare: Any, command: str) -> None:
    """A wrong password: exit 1, one paragraph naming the user (never the password),
    nothing written."""
    f = declare.copy_example()
    url = declare.url(password=PASSWORD)
    assert QUOTED_PASSWORD in url
    args = [command] + ([f, "--vhost", declare.vhost] if command != "export" else [])
    result = declare(
        *args, "--url", url, "--management-url", declare.broker.management_url, connect=False
    )
    declare.assert_clean_failure(result)
    assert "refused" in result.err and declare.broker.user in result.err, result
    _no_password(result)
    assert declare.is_empty()


def test_wrong_credentials_from_the_environment(declare: Any) -> None:
    """The original tool's AMQP_PASS, when wrong, is never printed either."""
    f = declare.write("q.yml", "queues:\n  - name: fine\n")
    result = declare(
        "apply",
        f,
        "--management-url",
        declare.broker.management_url,
        connect=False,
        env={
            "AMQP_HOST": declare.broker.host,
            "AMQP_USER": declare.broker.user,
            "AMQP_PASS": PASSWORD,
            "AMQP_VHOST": declare.vhost,
        },
    )
    declare.assert_clean_failure(result)
    _no_password(result)
    assert declare.is_empty()


def test_wrong_credentials_amqp_only(declare: Any) -> None:
    """AMQP refuses the login in AMQP-only mode: exit 1, no password."""
    f = declare.write("q.yml", "queues:\n  - name: fine\n")
    result = declare(
        "apply", f, "--amqp-only", "--url", declare.url(password=PASSWORD), connect=False
    )
    assert result.code == 1, result
    assert "Traceback" not in result.text, result
    assert "refused" in result.err, result
    _no_password(result)
    assert declare.is_empty()


def test_management_api_unreachable_offers_amqp_only(declare: Any) -> None:
    """AMQP answers but the management API does not: the message says so plainly and
    offers --amqp-only; nothing is written."""
    f = declare.copy_example()
    result = declare(
        "apply",
        f,
        "--vhost",
        declare.vhost,
        "--url",
        declare.broker.url_for(declare.vhost),
        "--management-url",
        f"http://127.0.0.1:{declare.closed_port()}",
        connect=False,
    )
    declare.assert_clean_failure(result)
    assert "management API" in result.err and "--amqp-only" in result.err, result
    assert declare.is_empty()


def test_amqp_unreachable_after_a_good_plan_writes_nothing(declare: Any) -> None:
    """The management API answers but AMQP does not: the apply fails with exit 1 and
    nothing is written, not even the policy update that goes over HTTP."""
    f = declare.write(
        "t.yml",
        """
        queues:
          - name: s.one
        policies:
          - {name: s-p, pattern: '^s\\.', apply_to: queues, definition: {max-length: 10}}
    """,
    )
    assert declare("apply", f).code == 0
    declare.write(
        "t.yml",
        """
        queues:
          - name: s.one
          - name: s.two
        policies:
          - {name: s-p, pattern: '^s\\.', apply_to: queues, definition: {max-length: 99}}
    """,
    )
    result = declare(
        "apply",
        f,
        "--url",
        declare.url(port=declare.closed_port()),
        "--management-url",
        declare.broker.management_url,
        connect=False,
    )
    declare.assert_clean_failure(result)
    assert "AMQP" in result.err, result
    assert declare.policy("s-p")["definition"] == {"max-length": 10}
    assert declare.names("queues") == {"s.one"}


# ------------------------------------------------------------------ passwords on success


def test_password_never_printed_on_success(declare: Any, secret_user: str) -> None:
    """plan, apply (text and JSON) and export with a password in the URL: it works, and the
    password appears in no output."""
    url = declare.url(user=secret_user, password=PASSWORD)
    assert QUOTED_PASSWORD in url
    f = declare.copy_example()
    conn = ["--url", url, "--management-url", declare.broker.management_url]
    runs = [
        declare("plan", f, "--vhost", declare.vhost, *conn, connect=False),
        declare("apply", f, "--vhost", declare.vhost, *conn, connect=False),
        declare("apply", f, "--vhost", declare.vhost, "--format", "json", *conn, connect=False),
        declare("export", "--vhost", declare.vhost, *conn, connect=False),
    ]
    for result in runs:
        assert result.code == 0, result
        _no_password(result)
    assert "email.default" in declare.names("queues")

"""The cookbook against a real broker: its rendered email topology, applied by the real tool.

Uses the shared ``broker`` / ``vhost`` fixtures (a fresh vhost per test) and the
``declare-amqp`` console script installed next to the running Python.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker_support import grant_all

from .conftest import Converge

DECLARE_AMQP = Path(sys.executable).parent / "declare-amqp"

EMAIL_OBJECTS = {
    ("exchange", "email"),
    ("exchange", "email-undeliverable"),
    ("exchange", "email.dlx"),
    ("queue", "email.high"),
    ("queue", "email.default"),
    ("queue", "email.dead"),
    ("policy", "email-dead-limits"),
    # derived from the consumer email-sender: a retry delay queue per step and queue
    *(
        ("queue", f"{q}.delay.{ms}")
        for q in ("email.high", "email.default")
        for ms in (1000, 5000, 30000, 300000)
    ),
}


@dataclass(frozen=True)
class Account:
    """A broker user made for one test, with a password nothing else contains."""

    user: str
    password: str


@pytest.fixture
def account(broker: Any, vhost: str) -> Iterator[Account]:
    """A throwaway broker user with full permissions on the test vhost (deleted afterwards)."""
    made = Account(f"cookbook-{uuid.uuid4().hex[:8]}", f"pw-{secrets.token_hex(12)}")
    with broker.http() as http:
        http.put(
            f"/api/users/{made.user}", json={"password": made.password, "tags": "administrator"}
        ).raise_for_status()
        grant_all(http, vhost, made.user)
    try:
        yield made
    finally:
        with broker.http() as http:
            http.delete(f"/api/users/{made.user}")


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _attributes(
    broker: Any, vhost: str, account: Account, tmp_path: Path, topologies: dict[str, Any]
) -> dict[str, Any]:
    """Role-like attributes for the test vhost (URLs without credentials), with the files
    under ``tmp_path`` and the real declare-amqp as the command."""
    return {
        "declare_amqp": {
            "amqp_url": _without_credentials(broker.url_for(vhost)),
            "management_url": broker.management_url,
            "credentials": {"user": account.user},
            "config_dir": str(tmp_path / "etc"),
            "bin_link": str(DECLARE_AMQP),
            "topologies": topologies,
        }
    }


def _tool(*args: str, broker: Any, vhost: str) -> subprocess.CompletedProcess[str]:
    """Runs declare-amqp the way the cookbook does: credentials in the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "RABBITMQ_"))}
    env.update(
        AMQP_URL=_without_credentials(broker.url_for(vhost)),
        RABBITMQ_MANAGEMENT_URL=broker.management_url,
        AMQP_USER=broker.user,
        AMQP_PASS=broker.password,
        NO_COLOR="1",
    )
    return subprocess.run(
        [str(DECLARE_AMQP), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _render_email(converge: Converge, vhost: str, path: Path) -> Path:
    """Writes the YAML the cookbook renders for the email example, pointed at ``vhost``."""
    report = converge(
        "declare_amqp::email",
        attributes={"declare_amqp": {"topologies": {"email": {"vhost": vhost}}}},
    )
    assert report["error"] is None, report
    (rendered,) = report["files"]
    path.write_text(rendered["content"])
    return path


def test_rendered_email_topology_applies_and_then_plans_nothing(
    converge: Converge, broker: Any, vhost: str, tmp_path: Path
) -> None:
    """plan shows every email object as a create (exit 2), apply exits 0, a re-plan exits 0."""
    topology = _render_email(converge, vhost, tmp_path / "email.yml")

    plan = _tool("plan", str(topology), "--detailed-exitcode", broker=broker, vhost=vhost)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    for kind, name in EMAIL_OBJECTS:
        assert re.search(rf"^\s*\+ {kind}\s+{re.escape(name)}\b", plan.stdout, re.M), plan.stdout

    as_json = _tool("plan", str(topology), "--format", "json", broker=broker, vhost=vhost)
    changes = json.loads(as_json.stdout)["changes"]
    assert {(c["kind"], c["name"]) for c in changes if c["kind"] != "binding"} == EMAIL_OBJECTS
    assert {c["action"] for c in changes} == {"create"}
    assert {c["vhost"] for c in changes} == {vhost}
    assert sum(c["kind"] == "binding" for c in changes) == 4

    applied = _tool("apply", str(topology), broker=broker, vhost=vhost)
    assert applied.returncode == 0, applied.stdout + applied.stderr

    with broker.http() as http:
        quoted = urllib.parse.quote(vhost, safe="")
        queues = {q["name"]: q for q in http.get(f"/api/queues/{quoted}").json()}
        exchange = http.get(f"/api/exchanges/{quoted}/email").json()
    default_args = queues["email.default"]["arguments"]
    assert (default_args["x-dead-letter-exchange"], default_args["x-max-priority"]) == (
        "email.dlx",
        5,
    )
    assert queues["email.dead"]["type"] == "quorum"
    assert exchange["arguments"] == {"alternate-exchange": "email-undeliverable"}

    again = _tool("plan", str(topology), "--detailed-exitcode", broker=broker, vhost=vhost)
    assert again.returncode == 0, again.stdout + again.stderr


def test_cookbook_converges_the_broker_once_then_reports_up_to_date(
    converge: Converge, broker: Any, vhost: str, account: Account, tmp_path: Path
) -> None:
    """The resource's own logic with the real tool: why-run changes nothing, the first
    converge applies, the second is up to date, and the password shows up nowhere."""
    attributes = _attributes(broker, vhost, account, tmp_path, {"email": {"vhost": vhost}})
    rendered = tmp_path / "etc" / "email.yml"

    whyrun = converge(
        "declare_amqp::email",
        attributes=attributes,
        whyrun=True,
        execute=True,
        password=account.password,
    )
    assert whyrun["error"] is None, whyrun
    assert len(whyrun["converged"]) == 1
    assert "+ queue" in whyrun["converged"][0] and "email.high" in whyrun["converged"][0]
    assert not rendered.exists(), "why-run writes no file"

    first = converge(
        "declare_amqp::email", attributes=attributes, execute=True, password=account.password
    )
    assert first["error"] is None, first
    assert [c["argv"][1] for c in first["commands"]] == ["plan", "apply"]
    assert all(
        c["env"] == ["AMQP_PASS", "AMQP_URL", "AMQP_USER", "RABBITMQ_MANAGEMENT_URL"]
        for c in first["commands"]
    )
    assert len(first["converged"]) == 1
    assert rendered.stat().st_mode & 0o777 == 0o600

    second = converge(
        "declare_amqp::email", attributes=attributes, execute=True, password=account.password
    )
    assert second["error"] is None, second
    assert [c["argv"][1] for c in second["commands"]] == ["plan"]
    assert second["converged"] == []

    for report in (whyrun, first, second):
        assert account.password not in json.dumps(report)


def test_conflict_fails_the_chef_run_with_the_tools_message(
    converge: Converge, broker: Any, vhost: str, account: Account, tmp_path: Path
) -> None:
    """An immutable change (queue type) fails the run with declare-amqp's message; nothing
    is applied and the password is not in the message."""
    email = _attributes(broker, vhost, account, tmp_path, {"email": {"vhost": vhost}})
    assert (
        converge("declare_amqp::email", attributes=email, execute=True, password=account.password)[
            "error"
        ]
        is None
    )

    clash = _attributes(
        broker,
        vhost,
        account,
        tmp_path,
        {
            "clash": {
                "vhost": vhost,
                "topology": {"queues": [{"name": "email.high", "type": "quorum"}]},
            }
        },
    )
    report = converge(
        "declare_amqp::topologies", attributes=clash, execute=True, password=account.password
    )
    assert report["returncode"] == 1
    assert report["error"].startswith(
        "DeclareAmqp::Error: declare_amqp_topology[clash]: declare-amqp plan failed (exit 1):"
    )
    assert "email.high" in report["error"]
    assert [c["argv"][1] for c in report["commands"]] == ["plan"]
    assert account.password not in json.dumps(report)
    with broker.http() as http:
        queue = http.get(f"/api/queues/{urllib.parse.quote(vhost, safe='')}/email.high").json()
    assert queue["type"] == "classic"


@pytest.fixture(autouse=True)
def _tool_is_installed() -> None:
    assert DECLARE_AMQP.exists(), f"{DECLARE_AMQP} is missing: pip install -e . into this venv"


def test_cookbook_makes_users_and_permissions_without_showing_passwords(
    converge: Converge, broker: Any, vhost: str, account: Account, tmp_path: Path
) -> None:
    """A topology with a user (password from the run state, as from a data bag) and its
    permissions: the user is made and can log in, the second converge is up to date, and the
    password is in no command line, file, log or report."""
    app_user, app_password = f"cookbook-app-{uuid.uuid4().hex[:6]}", f"apw-{secrets.token_hex(10)}"
    spec = {
        "vhost": vhost,
        "topology": {"queues": [{"name": "app.q"}]},
        "users": [{"name": app_user, "tags": []}],
        "permissions": [
            {"user": app_user, "configure": "^app\\.", "write": "^app\\.", "read": "^app\\."}
        ],
    }
    attributes = _attributes(broker, vhost, account, tmp_path, {"app": spec})
    try:
        reports = []
        for _ in range(2):
            report = converge(
                "declare_amqp::topologies",
                attributes=attributes,
                execute=True,
                password=account.password,
                user_passwords={app_user: app_password},
            )
            assert report["error"] is None, report
            reports.append(report)
        assert [c["argv"][1] for c in reports[0]["commands"]] == ["plan", "apply"]
        assert [c["argv"][1] for c in reports[1]["commands"]] == ["plan"]
        assert "DECLARE_AMQP_USER_PASSWORD_0" in reports[0]["commands"][0]["env"]
        rendered = (tmp_path / "etc" / "app.yml").read_text()
        assert "password_env: DECLARE_AMQP_USER_PASSWORD_0" in rendered
        with broker.http() as http:
            perms = http.get(
                f"/api/permissions/{urllib.parse.quote(vhost, safe='')}/{app_user}"
            ).json()
        assert perms["configure"] == "^app\\."
        import pika

        pika.BlockingConnection(
            pika.URLParameters(
                f"amqp://{app_user}:{app_password}@{broker.host}:{broker.port}/"
                f"{urllib.parse.quote(vhost, safe='')}"
            )
        ).close()
        for report in reports:
            assert app_password not in json.dumps(report)
        assert app_password not in rendered
    finally:
        with broker.http() as http:
            http.delete(f"/api/users/{app_user}")

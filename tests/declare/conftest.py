"""Fixtures for the integration tests of the ``declare-amqp`` command against a live broker.

The command runs as a subprocess (``python -m declare_amqp``), exactly as users and the Chef
cookbook run it, inside the test's own directory (so messages name ``topology.yml:12``).
What the broker really holds is read back over the management API, never from the tool.

Only fixtures live here; the unit tests in this folder are not affected by them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker_support import temporary_vhost
from declare_support import PASSWORD, TOOL_ENV

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, repr=False)
class Result:
    """The outcome of one ``declare-amqp`` run."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"

    __str__ = __repr__


class DeclareCli:
    """Runs ``declare-amqp`` against one test vhost and reads the broker back."""

    def __init__(self, broker: Any, vhost: str, workdir: Path) -> None:
        self.broker = broker
        self.vhost = vhost
        self.workdir = workdir

    # ------------------------------------------------------------------ files

    def write(self, name: str, text: str) -> str:
        """Write a topology file into the test directory; returns its relative name."""
        (self.workdir / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return name

    def copy_example(self, name: str = "topology.yml") -> str:
        """``topology.example.yml`` of the checkout, copied so the test may edit it."""
        (self.workdir / name).write_text(
            (ROOT / "topology.example.yml").read_text("utf-8"), encoding="utf-8"
        )
        return name

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace ``old`` (which must occur exactly once) by ``new`` in a file."""
        path = self.workdir / name
        text = path.read_text("utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def line_of(self, name: str, needle: str) -> int:
        """The 1-based line of the first line of ``name`` containing ``needle``."""
        for number, line in enumerate((self.workdir / name).read_text("utf-8").splitlines(), 1):
            if needle in line:
                return number
        raise AssertionError(f"{needle!r} not in {name}")

    # ------------------------------------------------------------------ runs

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in TOOL_ENV}
        env.update(NO_COLOR="1", COLUMNS="400", PYTHONPATH=str(ROOT))
        env.update(extra or {})
        return env

    def url(
        self,
        vhost: str | None = None,
        *,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        """The AMQP URL of a vhost (default the test's), optionally with another port or
        other credentials."""
        b = self.broker
        quote = urllib.parse.quote
        return (
            f"amqp://{quote(user or b.user, safe='')}:"
            f"{quote(b.password if password is None else password, safe='')}"
            f"@{b.host}:{port or b.port}/{quote(vhost or self.vhost, safe='')}"
        )

    def target(self, vhost: str | None = None) -> list[str]:
        """``--url`` (with the vhost in its path) and ``--management-url`` of the broker."""
        return [
            "--url",
            self.broker.url_for(vhost or self.vhost),
            "--management-url",
            self.broker.management_url,
        ]

    def start(
        self, *args: str, connect: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "declare_amqp", *args]
        if connect:
            argv += self.target()
        return subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env(env),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def __call__(
        self, *args: str, connect: bool = True, env: dict[str, str] | None = None
    ) -> Result:
        """Run the command; with ``connect`` the test vhost's URLs are appended."""
        proc = self.start(*args, connect=connect, env=env)
        out, err = proc.communicate(timeout=90)
        return Result(proc.returncode, out, err)

    # ------------------------------------------------------------------ checks

    @staticmethod
    def closed_port() -> int:
        """A local TCP port that nothing listens on (bound, then released)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    @staticmethod
    def assert_clean_failure(result: Result) -> None:
        """Exit 1 with a message for people: no Python stack, one paragraph."""
        assert result.code == 1, str(result)
        assert "Traceback" not in result.text, str(result)
        assert "internal error" not in result.text, str(result)
        # The message itself, after any "warning:" lines printed before it.
        lines = result.err.strip().splitlines()
        while lines and lines[0].startswith("warning:"):
            lines.pop(0)
        message = "\n".join(lines).strip()
        assert message, str(result)
        assert "\n\n" not in message, f"not one paragraph:\n{result.err}"

    def assert_refused(self, result: Result, name: str, line: int, words: Sequence[str]) -> None:
        """A clean failure naming ``name:line`` and every one of ``words``, nothing written."""
        self.assert_clean_failure(result)
        assert f"{name}:{line}" in result.err, result
        for word in words:
            assert word in result.err, (word, str(result))
        assert self.is_empty()

    # ------------------------------------------------------------------ broker

    @staticmethod
    def quote(name: str) -> str:
        """A vhost or object name as one path segment of the management API."""
        return urllib.parse.quote(name, safe="")

    def definitions(self, vhost: str | None = None) -> dict[str, Any]:
        """``GET /api/definitions/{vhost}``: exchanges (amq.* excluded), queues, bindings,
        policies, each sorted so two reads compare equal when the broker is the same."""
        quoted = urllib.parse.quote(vhost or self.vhost, safe="")
        with self.broker.http() as http:
            response = http.get(f"/api/definitions/{quoted}")
            response.raise_for_status()
            data = response.json()
        return {
            "exchanges": sorted(data["exchanges"], key=lambda x: x["name"]),
            "queues": sorted(data["queues"], key=lambda q: q["name"]),
            "bindings": sorted(data["bindings"], key=lambda b: repr(sorted(b.items()))),
            "policies": sorted(data["policies"], key=lambda p: p["name"]),
        }

    def names(self, kind: str, vhost: str | None = None) -> set[str]:
        return {o["name"] for o in self.definitions(vhost)[kind]}

    def bindings(self, vhost: str | None = None) -> set[tuple[str, str, str, str]]:
        """(source, destination_type, destination, routing_key) of every binding."""
        return {
            (b["source"], b["destination_type"], b["destination"], b["routing_key"])
            for b in self.definitions(vhost)["bindings"]
        }

    def queue(self, name: str, vhost: str | None = None) -> dict[str, Any]:
        found = [q for q in self.definitions(vhost)["queues"] if q["name"] == name]
        assert found, f"queue {name!r} is not on the broker"
        return found[0]

    def queue_arguments(self, name: str, vhost: str | None = None) -> dict[str, Any]:
        """A queue's arguments as the files asked for them: RabbitMQ 4.x writes
        ``x-queue-type: classic`` into every classic queue that named no type, 3.x does not, so
        that one entry is left out; any other type is kept (it was asked for)."""
        arguments = dict(self.queue(name, vhost)["arguments"])
        if arguments.get("x-queue-type") == "classic":
            del arguments["x-queue-type"]
        return arguments

    def exchange(self, name: str, vhost: str | None = None) -> dict[str, Any]:
        found = [x for x in self.definitions(vhost)["exchanges"] if x["name"] == name]
        assert found, f"exchange {name!r} is not on the broker"
        return found[0]

    def policy(self, name: str, vhost: str | None = None) -> dict[str, Any]:
        found = [p for p in self.definitions(vhost)["policies"] if p["name"] == name]
        assert found, f"policy {name!r} is not on the broker"
        return found[0]

    def exchange_types(self) -> set[str]:
        """The exchange types the broker offers (a plugin's appear when it is enabled)."""
        with self.broker.http() as http:
            return {t["name"] for t in http.get("/api/overview").json()["exchange_types"]}

    def is_empty(self, vhost: str | None = None) -> bool:
        d = self.definitions(vhost)
        return not (d["exchanges"] or d["queues"] or d["bindings"] or d["policies"])

    def put(self, path: str, body: dict[str, Any]) -> None:
        """A management API write, to set up the broker behind the tool's back."""
        with self.broker.http() as http:
            http.put(path, json=body).raise_for_status()

    def post(self, path: str, body: dict[str, Any]) -> None:
        with self.broker.http() as http:
            http.post(path, json=body).raise_for_status()


@pytest.fixture
def declare(broker: Any, vhost: str, tmp_path: Path) -> DeclareCli:
    """The ``declare-amqp`` command aimed at the test's fresh vhost."""
    return DeclareCli(broker, vhost, tmp_path)


@pytest.fixture
def other_vhost(broker: Any) -> Iterator[str]:
    """A second fresh vhost (for tests about what is outside a file's vhosts)."""
    with temporary_vhost(broker.http, broker.user, "test-other") as name:
        yield name


@pytest.fixture
def secret_user(declare: Any) -> Iterator[str]:
    """A broker user whose password is PASSWORD, with rights on the test vhost."""
    name = f"declare-test-{uuid.uuid4().hex[:8]}"
    with declare.broker.http() as http:
        http.put(
            f"/api/users/{name}", json={"password": PASSWORD, "tags": "administrator"}
        ).raise_for_status()
        http.put(
            f"/api/permissions/{declare.quote(declare.vhost)}/{name}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    try:
        yield name
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/users/{name}")

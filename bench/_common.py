"""Shared plumbing for the benchmarks: the management API, throwaway vhosts, result tables.

Every benchmark works only in vhosts it creates itself (named ``bench-...``) and deletes them
afterwards, because other people run tests against the same broker at the same time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


class HarnessError(RuntimeError):
    """The benchmark itself could not run (broker unreachable, a contender crashed, ...).

    Missing a speed target is *not* a harness error: targets are reported in the table.
    """


@dataclass(frozen=True)
class Broker:
    """Where the broker is: AMQP host/port, management base URL and credentials."""

    host: str = "127.0.0.1"
    port: int = 5672
    management_url: str = "http://127.0.0.1:15672"
    user: str = "guest"
    password: str = "guest"

    def amqp_url(self, vhost: str) -> str:
        """An ``amqp://`` URL for ``vhost`` (percent-encoded, as pika and declare-amqp expect)."""
        quoted = urllib.parse.quote(vhost, safe="")
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quoted}"


def qv(vhost: str) -> str:
    """The vhost as one path segment of a management API URL."""
    return urllib.parse.quote(vhost, safe="")


class Management:
    """A thin client for the few management API calls the benchmarks need."""

    def __init__(self, broker: Broker, timeout: float = 120.0) -> None:
        self.broker = broker
        self.http = httpx.Client(
            base_url=broker.management_url.rstrip("/") + "/api",
            auth=(broker.user, broker.password),
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise HarnessError(
                f"{response.request.method} {response.request.url.path}: "
                f"HTTP {response.status_code} {response.text[:300]}"
            )
        return response

    def overview(self) -> dict:
        try:
            return self._check(self.http.get("/overview")).json()
        except httpx.HTTPError as exc:
            raise HarnessError(f"management API unreachable: {exc}") from exc

    def create_vhost(self, vhost: str) -> None:
        self._check(self.http.put(f"/vhosts/{qv(vhost)}", json={}))
        self._check(
            self.http.put(
                f"/permissions/{qv(vhost)}/{self.broker.user}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
        )
        # The vhost is started asynchronously on the node: wait until AMQP could use it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.http.get(f"/vhosts/{qv(vhost)}")
            if r.status_code == 200:
                state = r.json().get("cluster_state", {})
                if not state or all(s == "running" for s in state.values()):
                    return
            time.sleep(0.05)
        raise HarnessError(f"vhost {vhost} did not start")

    def delete_vhost(self, vhost: str) -> None:
        r = self.http.delete(f"/vhosts/{qv(vhost)}")
        if r.status_code not in (204, 404):
            self._check(r)

    def definitions(self, vhost: str) -> dict:
        return self._check(self.http.get(f"/definitions/{qv(vhost)}")).json()

    def post_definitions(self, vhost: str, body: bytes) -> None:
        self._check(
            self.http.post(
                f"/definitions/{qv(vhost)}",
                content=body,
                headers={"content-type": "application/json"},
            )
        )

    def list_bench_vhosts(self) -> list[str]:
        r = self._check(self.http.get("/vhosts", params={"columns": "name"}))
        return [v["name"] for v in r.json() if v["name"].startswith("bench-")]


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """--host, --port, --management-url, --user, --password (default: the local broker)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--management-url", default="http://127.0.0.1:15672")
    parser.add_argument("--user", default="guest")
    parser.add_argument("--password", default="guest")


def broker_from(args: argparse.Namespace) -> Broker:
    return Broker(args.host, args.port, args.management_url, args.user, args.password)


def unique_vhost(kind: str) -> str:
    """A fresh vhost name that no other run (or other engineer) uses."""
    return f"bench-{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextmanager
def scratch_vhost(mgmt: Management, kind: str, keep: bool = False) -> Iterator[str]:
    """Create a fresh vhost for one contender and delete it afterwards (even on failure)."""
    vhost = unique_vhost(kind)
    mgmt.create_vhost(vhost)
    try:
        yield vhost
    finally:
        if not keep:
            try:
                mgmt.delete_vhost(vhost)
            except (HarnessError, httpx.HTTPError) as exc:
                print(f"warning: could not delete vhost {vhost}: {exc}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(nums: Sequence[float], dens: Sequence[float]) -> str:
    """Median (min-max) of num_i / den_i over repetitions measured side by side.

    Less sensitive than the ratio of medians to load that changes between repetitions.
    """
    if not nums or len(nums) != len(dens):
        return "-"
    ratios = [n / d for n, d in zip(nums, dens, strict=True) if d]
    if not ratios:
        return "-"
    return f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def environment(mgmt: Management) -> dict[str, str]:
    """Date, broker version and machine facts for the header of a result file."""
    ov = mgmt.overview()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "broker": f"RabbitMQ {ov.get('rabbitmq_version', '?')} "
        f"(Erlang {ov.get('erlang_version', '?')}) on {mgmt.broker.host}",
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "load": load_average(),
    }


def load_average() -> str:
    """The 1/5/15-minute load average: other work on the machine makes the figures noisy."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; numbers are right-aligned."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    def is_num(value: object) -> bool:
        return isinstance(value, (int, float))

    align = [
        "---:" if rows and all(is_num(r[i]) for r in rows if len(r) > i) else "---"
        for i in range(len(header))
    ]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def write_result(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text)
    return path


def profile_summary(path: Path, pattern: str, limit: int = 20) -> str:
    """The top ``limit`` functions by cumulative time whose location matches ``pattern``."""
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("cumulative").print_stats(pattern, limit)
    return buf.getvalue()


def venv_bin(name: str) -> Path:
    """A console script in the interpreter's own virtual environment (e.g. declare-amqp)."""
    import sys

    return Path(sys.executable).parent / name


def publish_result(text: str, output: str | None, name: str, quick: bool) -> None:
    """Print the report and write it to results/<name>.md (``<name>-quick`` for --quick runs;
    ``output``: another name, or "-" for no file)."""
    print(text)
    if output != "-":
        target = output or (f"{name}-quick" if quick else name)
        print(f"written to {write_result(target, text)}")

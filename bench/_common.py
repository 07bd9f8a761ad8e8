"""Shared plumbing for the benchmarks: the management API, throwaway vhosts, result tables.

Every benchmark works only in vhosts it creates itself (named ``bench-...``) and deletes them
afterwards, because other people run tests against the same broker at the same time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent
# The prefetch of the two queues every ``priority-worker run`` benchmark consumes.
PREFETCH = {"high": 10, "low": 2}


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

    def delete_vhost(self, vhost: str, timeout: float = 600.0) -> None:
        """Delete the vhost and wait until it is gone, asking again while it exists.

        A vhost of thousands of queues takes the broker longer than an HTTP request's limit,
        and a deletion still running would slow down whatever is measured next. RabbitMQ
        4.0.5 stops deleting when the request ends at that limit (at 3x, 2026-12-07: three
        times the vhost kept 156-1,824 of its 6,000 queues, the broker idle, for minutes), so
        the delete is sent again until the vhost is gone: each request removes more."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.http.delete(f"/vhosts/{qv(vhost)}")
                if r.status_code not in (204, 404) and r.status_code < 500:
                    self._check(r)
            except httpx.TransportError:
                pass  # cut at a request limit part-way: ask again below
            if self.http.get(f"/vhosts/{qv(vhost)}").status_code == 404:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"vhost {vhost} still exists {timeout:.0f} s after deleting it")
            time.sleep(0.5)

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


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a benchmark: described by its docstring's first line, with the broker
    options and ``--output`` (results/NAME.md; "-" for no file)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_broker_arguments(parser)
    parser.add_argument("--output", default=None, help="result file ('-': none)")
    return parser


def broker_from(args: argparse.Namespace) -> Broker:
    return Broker(args.host, args.port, args.management_url, args.user, args.password)


def session(cfg: argparse.Namespace) -> tuple[Management, dict[str, str]]:
    """The broker of the command line (kept as ``cfg.broker``), a management client for it
    and the facts for the report's header (``environment``)."""
    cfg.broker = broker_from(cfg)
    mgmt = Management(cfg.broker)
    return mgmt, environment(mgmt)


def unique_vhost(kind: str, prefix: str = "bench") -> str:
    """A fresh vhost name that no other run (or other engineer) uses."""
    return f"{prefix}-{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextmanager
def scratch_vhost(
    mgmt: Management, kind: str, keep: bool = False, prefix: str = "bench"
) -> Iterator[str]:
    """Create a fresh vhost for one contender and delete it afterwards (even on failure).
    ``prefix`` starts its name (default ``bench``; a shared broker may ask for another)."""
    vhost = unique_vhost(kind, prefix)
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


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


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


def report_header(title: str, env: dict[str, str]) -> list[str]:
    """The first lines of a result file: its title, then when, where and how loaded (the load
    again now, at the end, since other suites share the machine)."""
    return [
        f"# {title}",
        "",
        f"- date: {env['date']}",
        f"- broker: {env['broker']}",
        f"- machine: {env['machine']}",
        f"- load average (1/5/15 min) at start: {env['load']}, at end: "
        f"{load_average()} (other test suites share this machine and broker)",
    ]


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
    return Path(sys.executable).parent / name


def publish_result(text: str, output: str | None, name: str, quick: bool) -> None:
    """Print the report and write it to results/<name>.md (``<name>-quick`` for --quick runs;
    ``output``: another name, or "-" for no file)."""
    print(text)
    if output != "-":
        target = output or (f"{name}-quick" if quick else name)
        print(f"written to {write_result(target, text)}")


def command_argv(script: str, argv: Sequence[str] | None) -> list[str]:
    """How the benchmark was started, for the report: ``python bench/NAME.py ARGS``."""
    return ["python", f"bench/{Path(script).name}", *(argv if argv is not None else sys.argv[1:])]


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``command_argv`` as one shell line (arguments quoted where needed)."""
    return shlex.join(command_argv(script, argv))


# ---- waiting ------------------------------------------------------------------------------


def poll(
    ready: Callable[[], bool],
    timeout: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> bool:
    """Poll ``ready`` until it is true (True); False once ``timeout`` seconds have passed or
    ``proc`` has exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(interval)
    return False


def require(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> None:
    """``poll``, where not getting there is a harness failure that says why: ``proc`` exited
    (with the end of its stderr) or ``timeout`` passed."""
    if poll(ready, timeout, proc=proc, interval=interval):
        return
    if proc is not None and proc.poll() is not None:
        stderr = proc.stderr.read()[-800:] if proc.stderr else b""
        raise HarnessError(f"{what} exited: {stderr!r}")
    raise HarnessError(f"{what} not ready after {timeout} s")


# ---- the priority-worker runner as a subprocess --------------------------------------------


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str], path: Sequence[str] = ()) -> dict[str, str]:
    """This environment plus ``extra``; PYTHONPATH is ``path``, then bench/ and the checkout
    (the handler modules live in bench/, the packages in the checkout)."""
    return {
        **os.environ,
        **extra,
        "PYTHONPATH": os.pathsep.join([*path, str(BENCH_DIR), str(REPO_ROOT)]),
    }


def start_runner(
    handler: str, url: str, port: int, env: dict[str, str], *extra: str
) -> subprocess.Popen[bytes]:
    """``priority-worker run HANDLER`` on the queues ``high`` and ``low`` (``PREFETCH``),
    serving HTTP on ``port``, logging warnings only; ``extra``: more runner options."""
    cmd = [
        str(venv_bin("priority-worker")),
        "run",
        handler,
        "--url",
        url,
        *[arg for queue, n in PREFETCH.items() for arg in ("--queue", f"{queue}={n}")],
        "--http-port",
        str(port),
        "--log-level",
        "WARNING",
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=BENCH_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def readyz(port: int) -> bool:
    """The runner on ``port`` answers /readyz with 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_runner_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the runner answers /readyz; a harness failure when it exits or takes too long."""
    require(lambda: readyz(port), timeout, "priority-worker", proc=proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- queues, over one blocking pika connection ----------------------------------------------


def fill(url: str, counts: dict[str, int]) -> None:
    """Declare each queue durable and publish ``counts[queue]`` messages to it (bodies
    ``b"0"``, ``b"1"``, ...)."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for q, n in counts.items():
            ch.queue_declare(q, durable=True)
            for i in range(n):
                ch.basic_publish("", q, str(i).encode())
    finally:
        conn.close()


def ready_count(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare)."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()

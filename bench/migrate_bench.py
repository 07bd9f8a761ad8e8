"""Queue migration benchmark: apply --migrate (classic -> quorum) under load, vs a shovel.

The issue (20, "Measured"): 20 classic queues holding 100,000 messages in all, a publisher
sending 500 msg/s with confirms through their exchange for the whole run, and a priority_worker
consuming half of the queues. ``declare-amqp apply --migrate`` to quorum queues must lose 0
confirmed messages, report duplicates, keep every binding (compared through the management API
before and after) and move messages at >= 0.7 x the rate of the broker's shovel moving the same
messages on the same broker in the same run. Then the same with the tool SIGKILLed at 5 random
moments and rerun each time: 0 lost.

The shovel contender: the same 20 queues and messages in a vhost of their own, one dynamic
shovel per queue (``src-delete-after: queue-length``, ``ack-mode: on-confirm``) into a quorum
queue, timed from the shovels' creation until every message is in the quorum queues. It runs
once on an otherwise idle broker and twice (just before and just after the tool's plain run)
under the load the tool migrates under -- the same 500 msg/s confirmed publisher and a
priority_worker on half of 20 queues, in a vhost of their own -- and the mean rate of those two
is the reference of the 0.7 x target (the idle figure is reported beside it). A migration
moves every message twice (out to the holding queue, back into the new queue), so the tool's
*move rate* is (moves out + moves back) / the apply's seconds; the shovel's is messages /
seconds. Both are also given as messages carried over per second.

Needs a broker with the shovel plugin (the RabbitMQ 4.0 container of tests/container_broker.sh
has it): --host/--port/--management-url.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
from _common import (
    BENCH_DIR,
    HarnessError,
    Management,
    argument_parser,
    child_env,
    command_line,
    markdown_table,
    publish_result,
    qv,
    report_header,
    scratch_vhost,
    session,
    stop,
    venv_bin,
    verdict,
)

EXCHANGE = "bench.migrate"


def queue_names(count: int) -> list[str]:
    return [f"mq.{i:02d}" for i in range(count)]


def topology(vhost: str, queues: list[str], quorum: bool) -> str:
    lines = [
        f"vhost: {vhost}",
        "exchanges:",
        f"  - name: {EXCHANGE}",
        "    type: direct",
        "queues:",
    ]
    for q in queues:
        lines += [f"  - name: {q}"]
        if quorum:
            lines += ["    type: quorum"]
        lines += ["    bindings:", f"      - exchange: {EXCHANGE}", f"        routing_key: {q}"]
    return "\n".join(lines) + "\n"


def fill(url: str, queues: list[str], total: int, exchange: str = EXCHANGE) -> None:
    """``total`` persistent messages spread over ``queues`` (ids f-N); returns once the
    queues hold them all (counted by passive declares: faster than a confirm per message)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        before = sum(ch.queue_declare(q, passive=True).method.message_count for q in queues)
        for n in range(total):
            q = queues[n % len(queues)]
            ch.basic_publish(
                exchange,
                q,
                b"x" * 256,
                pika.BasicProperties(message_id=f"f-{n}", delivery_mode=2, priority=n % 10),
            )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            held = sum(ch.queue_declare(q, passive=True).method.message_count for q in queues)
            if held >= before + total:
                return
            time.sleep(0.2)
        raise HarnessError(f"the queues hold {held - before} of the {total} messages published")
    finally:
        conn.close()


class RatePublisher(threading.Thread):
    """Publishes through the exchange at ``rate`` msg/s with confirms (a window of 50); keeps
    the ids the broker confirmed."""

    def __init__(self, url: str, queues: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.queues, self.rate = url, queues, rate
        self.confirmed: list[str] = []
        self.returned = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            ch = conn.channel()
            ch.confirm_delivery()
            started = time.monotonic()
            n = 0
            while not self.stop.is_set():
                due = started + n / self.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                mid = f"p-{n}"
                q = self.queues[n % len(self.queues)]
                try:
                    ch.basic_publish(
                        EXCHANGE,
                        q,
                        mid.encode(),
                        pika.BasicProperties(message_id=mid, delivery_mode=2),
                        mandatory=True,
                    )
                    self.confirmed.append(mid)
                except pika.exceptions.UnroutableError:
                    self.returned += 1  # not confirmed as delivered: the publisher knows
                n += 1
            conn.close()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> list[str]:
        self.stop.set()
        self.join(60)
        if self.error is not None:
            raise HarnessError(f"the publisher failed: {self.error!r}")
        return self.confirmed


def take_all(url: str, queues: list[str]) -> Counter[str]:
    """Consume every message left in ``queues``; counts per message id."""
    seen: Counter[str] = Counter()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=500)
        for q in queues:
            ready = ch.queue_declare(q, passive=True).method.message_count
            if not ready:
                continue
            for method, props, _ in ch.consume(q, inactivity_timeout=2):
                if method is None:
                    break
                seen[props.message_id] += 1
                ch.basic_ack(method.delivery_tag)
            ch.cancel()
    finally:
        conn.close()
    return seen


def bindings(mgmt: Management, vhost: str) -> set[tuple[str, str, str, str]]:
    found = mgmt.http.get(f"/bindings/{qv(vhost)}").json()
    return {
        (b["source"], b["destination"], b["routing_key"], repr(sorted(b["arguments"].items())))
        for b in found
        if b["source"]
    }


def queue_types(mgmt: Management, vhost: str, queues: list[str]) -> set[str]:
    found = mgmt.http.get(f"/queues/{qv(vhost)}", params={"columns": "name,type"}).json()
    return {q["type"] for q in found if q["name"] in queues}


# ------------------------------------------------------------------ the shovel


def shovel_run(mgmt: Management, url: str, queues: list[str], total: int) -> float:
    """Seconds for dynamic shovels to move ``total`` messages from classic into quorum queues."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "direct", durable=True)
    for q in queues:
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, EXCHANGE, q)
        ch.queue_declare(q + ".quorum", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    fill(url, queues, total)
    vhost = pika.URLParameters(url).virtual_host
    amqp = f"amqp://{mgmt.broker.user}:{mgmt.broker.password}@/{qv(vhost)}"
    started = time.monotonic()
    for q in queues:
        r = mgmt.http.put(
            f"/parameters/shovel/{qv(vhost)}/{q}",
            json={
                "value": {
                    "src-protocol": "amqp091",
                    "src-uri": amqp,
                    "src-queue": q,
                    "src-delete-after": "queue-length",
                    "dest-protocol": "amqp091",
                    "dest-uri": amqp,
                    "dest-queue": q + ".quorum",
                    "ack-mode": "on-confirm",
                    "src-prefetch-count": 1000,
                }
            },
        )
        if r.status_code >= 400:
            raise HarnessError(f"the shovel plugin refused a shovel: {r.status_code} {r.text}")
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        moved = sum(
            ch.queue_declare(q + ".quorum", passive=True).method.message_count for q in queues
        )
        if moved >= total:
            break
        time.sleep(0.05)
    seconds = time.monotonic() - started
    conn.close()
    return seconds


@contextlib.contextmanager
def background_load(
    mgmt: Management, queues: list[str], rate: float, workdir: Path
) -> Iterator[None]:
    """The load the tool migrates under, in a vhost of its own: a confirmed publisher at
    ``rate`` msg/s through the exchange of ``queues`` and a priority_worker consuming half of
    them (retrying every 50th message). The shovel contender runs under it too, so that both
    move on an equally busy broker."""
    with scratch_vhost(mgmt, "migrate-load") as vhost:
        b = mgmt.broker
        url = b.amqp_url(vhost)
        spec = workdir / "load.yml"
        spec.write_text(topology(vhost, queues, quorum=False))
        subprocess.run(
            [
                str(venv_bin("declare-amqp")),
                "apply",
                str(spec),
                "--url",
                url,
                "--management-url",
                b.management_url,
            ],
            check=True,
            capture_output=True,
        )
        worker = start_worker(url, queues[: len(queues) // 2], workdir / "load-handled.log")
        publisher = RatePublisher(url, queues, rate)
        publisher.start()
        try:
            yield
        finally:
            publisher.finish()
            stop(worker)


def start_worker(url: str, queues: list[str], handled_log: Path) -> subprocess.Popen[bytes]:
    """A priority_worker consuming ``queues`` (prefetch 50 each), recording what it handled."""
    handled_log.write_text("")
    return subprocess.Popen(
        [
            str(venv_bin("priority-worker")),
            "run",
            "migrate_handlers:record",
            "--url",
            url,
            *[arg for q in queues for arg in ("--queue", f"{q}=50")],
            "--log-level",
            "WARNING",
        ],
        cwd=BENCH_DIR,
        env=child_env({"HANDLED_LOG": str(handled_log)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# ------------------------------------------------------------------ the tool


def tool_run(
    mgmt: Management,
    vhost: str,
    queues: list[str],
    total: int,
    rate: float,
    kills: int,
    workdir: Path,
    mover: str = "amqp",
    kill_window: float = 6.0,
) -> dict[str, Any]:
    """Migrate ``queues`` under load (and ``kills`` SIGKILLs); what was lost, duplicated, kept."""
    b = mgmt.broker
    url = b.amqp_url(vhost)
    target = ["--url", url, "--management-url", b.management_url]
    tool = [str(venv_bin("declare-amqp"))]
    before_file, after_file = workdir / "before.yml", workdir / "after.yml"
    before_file.write_text(topology(vhost, queues, quorum=False))
    after_file.write_text(topology(vhost, queues, quorum=True))
    subprocess.run([*tool, "apply", str(before_file), *target], check=True, capture_output=True)
    fill(url, queues, total)
    bindings_before = bindings(mgmt, vhost)
    consumed = queues[: len(queues) // 2]
    handled_log = workdir / "handled.log"
    worker = start_worker(url, consumed, handled_log)
    publisher = RatePublisher(url, queues, rate)
    publisher.start()
    time.sleep(1)
    runs = 0
    killed = 0
    seconds = 0.0
    report = ""
    env = {**os.environ, "COLUMNS": "300"}
    rng = random.Random(20)
    while True:
        runs += 1
        started = time.monotonic()
        proc = subprocess.Popen(
            [*tool, "apply", "--migrate", "--mover", mover, "--format", "json", str(after_file)]
            + target,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if killed < kills:
            # A random moment of the run; a run that finishes first is simply not killed.
            try:
                proc.wait(timeout=rng.uniform(0.5, max(1.0, 0.4 * kill_window)))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed += 1
                seconds += time.monotonic() - started
                continue
        out, err = proc.communicate(timeout=3600)
        seconds += time.monotonic() - started
        if proc.returncode == 0:
            report = out
            break
        if runs > kills + 5:
            raise HarnessError(f"apply --migrate failed: {out}\n{err}")
    time.sleep(2)  # the worker finishes what it holds; retries come back from their delay
    confirmed = publisher.finish()
    # Let the worker drain its queues (and retries), then stop it.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (
            sum(ready(url, q) for q in consumed) == 0
            and sum(ready(url, f"{q}.delay.{ms}") for q in consumed for ms in (500,)) == 0
        ):
            break
        time.sleep(0.5)
    time.sleep(2)
    stop(worker)
    bindings_after = bindings(mgmt, vhost)
    seen = take_all(url, queues)
    seen.update(line for line in handled_log.read_text().splitlines() if line)
    expected = {f"f-{n}" for n in range(total)} | set(confirmed)
    lost = expected - set(seen)
    doc = json.loads(report)
    moved = sum(m["moved_out"] + m["moved_back"] for m in doc["migrations"])
    duplicates_reported = sum(m["duplicates_at_most"] for m in doc["migrations"])
    windows = [m["default_exchange_window_ms"] for m in doc["migrations"]]
    return {
        "runs": runs,
        "killed": killed,
        "seconds": seconds,
        "lost": len(lost),
        "lost_sample": sorted(lost)[:5],
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "duplicates_reported": duplicates_reported,
        "confirmed": len(confirmed),
        "returned": publisher.returned,
        "bindings_kept": bindings_before == bindings_after,
        "bindings": len(bindings_before),
        "types": sorted(queue_types(mgmt, vhost, queues)),
        "moved_last_run": moved,
        "last_run_seconds": float(doc["seconds"]),
        "window_ms_max": max(windows, default=0.0),
        "held": sum(sum(m["held"].values()) for m in doc["migrations"]),
    }


def ready(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if conn.is_open:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100_000, help="in all queues together")
    parser.add_argument("--rate", type=float, default=500.0, help="publisher msg/s")
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args(argv)
    mgmt, env = session(args)
    queues = queue_names(args.queues)
    with tempfile.TemporaryDirectory(prefix="migrate-bench-") as tmp:
        work = Path(tmp)

        def shovel(load: bool) -> float:
            with contextlib.ExitStack() as stack:
                vhost = stack.enter_context(scratch_vhost(mgmt, "migrate-shovel"))
                if load:
                    stack.enter_context(background_load(mgmt, queues, args.rate, work))
                    time.sleep(1)
                return shovel_run(mgmt, mgmt.broker.amqp_url(vhost), queues, args.messages)

        # The shovel idle (as the issue first measured it), then under the tool's load just
        # before and just after the tool's plain run (A, B, A).
        shovel_idle_seconds = shovel(load=False)
        loaded_seconds = [shovel(load=True)]
        with scratch_vhost(mgmt, "migrate") as vhost:
            plain = tool_run(mgmt, vhost, queues, args.messages, args.rate, 0, work)
        loaded_seconds.append(shovel(load=True))
        with scratch_vhost(mgmt, "migrate-shovel-mover") as vhost:
            shovelled = tool_run(
                mgmt, vhost, queues, args.messages, args.rate, 0, Path(tmp), mover="shovel"
            )
        with scratch_vhost(mgmt, "migrate-kill") as vhost:
            killed = tool_run(
                mgmt,
                vhost,
                queues,
                args.messages,
                args.rate,
                args.kills,
                Path(tmp),
                kill_window=0.9 * plain["last_run_seconds"],
            )
    # The reference: the shovel under the same load, the mean rate of its runs before and after.
    loaded_rates = [args.messages / sec for sec in loaded_seconds]
    shovel_rate = sum(loaded_rates) / len(loaded_rates)
    shovel_seconds = args.messages / shovel_rate
    idle_rate = args.messages / shovel_idle_seconds
    move_rate = plain["moved_last_run"] / plain["last_run_seconds"]
    carried_rate = args.messages / plain["last_run_seconds"]
    ratio = move_rate / shovel_rate
    shovel_move_rate = shovelled["moved_last_run"] / shovelled["last_run_seconds"]
    shovel_ratio = shovel_move_rate / shovel_rate
    rows = [
        [
            "shovel (20 dynamic shovels, on-confirm), idle broker",
            f"{shovel_idle_seconds:.1f}",
            f"{idle_rate:.0f}",
            f"{idle_rate:.0f}",
            "-",
            "-",
            "-",
        ],
        [
            "shovel, under the same load (mean of before/after: "
            + ", ".join(f"{r:.0f}" for r in loaded_rates)
            + " msg/s)",
            f"{shovel_seconds:.1f}",
            f"{shovel_rate:.0f}",
            f"{shovel_rate:.0f}",
            "-",
            "-",
            "-",
        ],
        [
            "apply --migrate",
            f"{plain['last_run_seconds']:.1f}",
            f"{move_rate:.0f}",
            f"{carried_rate:.0f}",
            plain["lost"],
            f"{plain['duplicates']} (reported at most {plain['duplicates_reported']})",
            "yes" if plain["bindings_kept"] else "NO",
        ],
        [
            "apply --migrate --mover shovel",
            f"{shovelled['last_run_seconds']:.1f}",
            f"{shovel_move_rate:.0f}",
            f"{args.messages / shovelled['last_run_seconds']:.0f}",
            shovelled["lost"],
            f"{shovelled['duplicates']} (reported at most {shovelled['duplicates_reported']})",
            "yes" if shovelled["bindings_kept"] else "NO",
        ],
        [
            f"apply --migrate, SIGKILLed {killed['killed']} times, rerun",
            f"{killed['seconds']:.1f} (all runs)",
            "-",
            "-",
            killed["lost"],
            str(killed["duplicates"]),
            "yes" if killed["bindings_kept"] else "NO",
        ],
    ]
    lines = report_header("Queue migration: apply --migrate vs a shovel", env)
    lines += [
        f"`{command_line(__file__, argv)}`",
        "",
        f"{args.queues} classic queues -> quorum queues, {args.messages} messages in all, a "
        f"confirmed publisher at {args.rate:.0f} msg/s through their exchange during each run "
        f"({plain['confirmed']} and {killed['confirmed']} confirmed; {plain['returned']} and "
        f"{killed['returned']} returned as unroutable), a priority_worker consuming "
        f"{args.queues // 2} of them.",
        "",
        markdown_table(
            [
                "contender",
                "seconds",
                "moves/s",
                "messages carried/s",
                "lost",
                "duplicates",
                "bindings kept",
            ],
            rows,
        ),
        "",
        f"- move rate vs the shovel under the same load, the tool's own mover: {ratio:.2f} x "
        f"(target >= 0.7): {verdict(ratio >= 0.7)}; vs the idle shovel: "
        f"{move_rate / idle_rate:.2f} x",
        f"- move rate vs the shovel under the same load, --mover shovel: {shovel_ratio:.2f} x "
        f"(target >= 0.7): {verdict(shovel_ratio >= 0.7)}; vs the idle shovel: "
        f"{shovel_move_rate / idle_rate:.2f} x",
        f"- lost, --mover shovel: {shovelled['lost']} {shovelled['lost_sample']}: "
        f"{verdict(shovelled['lost'] == 0)}",
        f"- lost, plain run: {plain['lost']} {plain['lost_sample']}: {verdict(plain['lost'] == 0)}",
        f"- lost, with kills: {killed['lost']} {killed['lost_sample']}: "
        f"{verdict(killed['lost'] == 0)}",
        f"- bindings (management API before/after): {plain['bindings']} kept: "
        f"{verdict(plain['bindings_kept'] and killed['bindings_kept'])}",
        f"- queue types afterwards: {plain['types']}, {killed['types']}",
        f"- default-exchange window (longest of the 20 swaps): {plain['window_ms_max']:.1f} ms; "
        f"retry messages held during swaps: {plain['held']}",
    ]
    publish_result("\n".join(lines) + "\n", args.output, "migrate", args.messages < 100_000)
    ok = plain["lost"] == 0 and killed["lost"] == 0 and shovelled["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Soak: the email example under a steady load for SOAK_MINUTES minutes (not run by default).

    SOAK_MINUTES=30 [SOAK_RATE=190] .venv/bin/python -m pytest tests/faults -m soak

Applies topology.example.yml with declare-amqp into a fresh vhost, runs
``examples/email_worker.py`` as its own process, and publishes emails to ``email.high``,
``email.default`` and the unbound ``email.bulk`` (-> ``email.default`` through the alternate
exchange) at a steady rate. Every interval it samples the worker's /metrics (acks per queue)
and its RSS. It asserts that every confirmed email was acked and that the RSS of the last
third of the run is not above the first third's by more than the allowance below.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fault_ledger import SOAK
from waiting import wait_until

from priority_worker import Properties, Publisher

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not os.environ.get("SOAK_MINUTES"), reason="set SOAK_MINUTES to soak"),
]

ROOT = Path(__file__).resolve().parents[2]
# Offered load in emails/s (SOAK_RATE scales the total; the worker's capacity is far above).
_SHARE = {"email.high": 150.0, "email.default": 30.0, "email.bulk": 10.0}
RATES = {k: v * float(os.environ.get("SOAK_RATE", "190")) / 190 for k, v in _SHARE.items()}
RSS_ALLOWANCE_MB = 20.0  # growth allowed beyond 25% of the first third's RSS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _acks(metrics_url: str) -> dict[str, float]:
    text = httpx.get(metrics_url, timeout=5).text
    acks: dict[str, float] = {}
    for m in re.finditer(r'^priority_worker_acks_total\{queue="([^"]+)"\} (\S+)$', text, re.M):
        acks[m.group(1)] = float(m.group(2))
    return acks


def test_soak_email_example(broker, vhost: str, vhost_url: str, tmp_path: Path) -> None:
    """Throughput over time and worker RSS stay flat; every confirmed email is acked."""
    minutes = float(os.environ["SOAK_MINUTES"])
    interval = max(5.0, minutes * 60 / 20)
    topology = ROOT / "topology.example.yml"
    cli = str(Path(sys.executable).with_name("declare-amqp"))
    applied = subprocess.run(
        [
            cli,
            "apply",
            str(topology),
            "--vhost",
            vhost,
            "--url",
            vhost_url,
            "--management-url",
            broker.management_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if applied.returncode != 0:
        # Fall back to the example's own declarations (and say so in the report).
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "publish_emails.py"),
                "--url",
                vhost_url,
                "--declare-only",
            ],
            check=True,
            timeout=60,
        )
    port = _free_port()
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "email_worker.py"),
            "--url",
            vhost_url,
            "--http-port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "EMAIL_SEND_SECONDS": "0.005"},
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    samples: list[dict[str, float]] = []
    confirmed = 0

    async def drive() -> None:
        nonlocal confirmed
        await wait_until(lambda: _up(metrics_url), 60, "email worker serves /metrics")
        async with Publisher(vhost_url) as publisher:
            loop = asyncio.get_running_loop()
            start = loop.time()
            end = start + minutes * 60
            next_sample = start
            sent = {k: 0 for k in RATES}
            pending: set[asyncio.Future[None]] = set()
            last_acks, last_t = 0.0, start
            while loop.time() < end:
                now = loop.time()
                for key, rate in RATES.items():
                    due = int((now - start) * rate) - sent[key]
                    for _ in range(due):
                        n = sent[key]
                        sent[key] += 1
                        body = json.dumps({"to": f"user{n}@example.com", "kind": key, "n": n})
                        fut = publisher.publish(
                            "email",
                            key,
                            body,
                            properties=Properties(
                                content_type="application/json", message_id=f"{key}-{n}"
                            ),
                        )
                        pending.add(fut)
                done = {f for f in pending if f.done()}
                confirmed += sum(1 for f in done if f.exception() is None)
                pending -= done
                if now >= next_sample:
                    acks = sum(_acks(metrics_url).values())
                    samples.append(
                        {
                            "t": now - start,
                            "acked": acks,
                            "rss_mb": _rss_mb(worker.pid),
                            "rate": (acks - last_acks) / (now - last_t) if now > last_t else 0.0,
                        }
                    )
                    last_acks, last_t = acks, now
                    next_sample += interval
                await asyncio.sleep(0.05)
            results = await asyncio.gather(*pending, return_exceptions=True)
            confirmed += sum(1 for r in results if r is None)
        await wait_until(
            lambda: sum(_acks(metrics_url).values()) >= confirmed,
            300,
            "the worker acks every confirmed email",
        )

    try:
        asyncio.run(drive())
        acked = sum(_acks(metrics_url).values())
    finally:
        worker.terminate()
        code = worker.wait(60)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    SOAK.append(
        {
            "minutes": minutes,
            "confirmed": confirmed,
            "acked": acked,
            "samples": samples,
            "declared_by": "declare-amqp"
            if applied.returncode == 0
            else "publish_emails.py --declare-only",
        }
    )
    assert acked >= confirmed
    third = max(1, len(samples) // 3)
    first = sorted(s["rss_mb"] for s in samples[:third])[third // 2]
    last = sorted(s["rss_mb"] for s in samples[-third:])[third // 2]
    assert last <= first * 1.25 + RSS_ALLOWANCE_MB, f"RSS grew from {first:.1f} to {last:.1f} MB"


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

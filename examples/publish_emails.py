"""Fill ``email.high`` and ``email.default`` with a backlog, with publisher confirms.

Every email goes to the topic exchange ``email``: ``email.high`` for user-triggered mail,
``email.default`` for the rest, and also ``email.bulk`` — a routing key no queue is bound for,
which reaches ``email.default`` through the alternate exchange ``email-undeliverable``
(topology.example.yml, applied by ``declare-amqp apply``).

    python examples/publish_emails.py [--high 6000] [--default 1600] [--bulk 400] [--purge]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import pika
import pika.exceptions

from declare_amqp.worker_queues import delay_queue_name
from priority_worker import Properties, Publisher

QUEUES = ("email.high", "email.default")


async def publish(url: str, counts: dict[str, int], greylisted: int = 0) -> int:
    """Publish ``counts[routing_key]`` emails per routing key; returns how many were confirmed.

    The first ``greylisted`` emails of ``email.high`` are marked so that the worker's SMTP
    server "greylists" them once: the worker retries them 30 s later (a delay queue).
    """
    async with Publisher(url) as publisher:
        futures = []
        for key, n in counts.items():
            for i in range(n):
                email = {"to": f"user{i}@example.com", "kind": key, "n": i}
                if key == "email.high" and i < greylisted:
                    email["greylisted"] = True
                futures.append(
                    publisher.publish(
                        "email",
                        key,
                        json.dumps(email).encode(),
                        properties=Properties(
                            content_type="application/json", message_id=str(uuid.uuid4())
                        ),
                    )
                )
                if len(futures) % 1000 == 0:
                    await asyncio.sleep(0)  # let confirms come in while we publish
        results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} publishes failed, first: {failed[0]!r}")
    return len(results)


def purge(url: str) -> dict[str, int]:
    """Empty the email queues and their retry delay queues (topology.example.yml's consumer
    email-sender: 1, 5, 30, 300 s) so the demo measures only this run."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        purged = {q: int(ch.queue_purge(q).method.message_count) for q in QUEUES}
        for q in QUEUES:
            for step in (1, 5, 30, 300):
                name = delay_queue_name(q, step)
                try:
                    ch.queue_declare(name, passive=True)
                except pika.exceptions.ChannelClosedByBroker:
                    ch = conn.channel()  # not there (not applied yet)
                    continue
                purged[name] = int(ch.queue_purge(name).method.message_count)
        return purged
    finally:
        conn.close()


def main() -> None:
    """Parse arguments, optionally purge, publish, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--high", type=int, default=6000)
    parser.add_argument("--default", type=int, default=1600)
    parser.add_argument(
        "--bulk",
        type=int,
        default=400,
        help="emails with the unbound key email.bulk (alternate exchange)",
    )
    parser.add_argument(
        "--greylisted",
        type=int,
        default=0,
        help="this many email.high emails are greylisted once (retried in 30 s)",
    )
    parser.add_argument("--purge", action="store_true", help="empty the queues first")
    parser.add_argument("--quiet", action="store_true", help="print only what was purged")
    args = parser.parse_args()
    if args.purge:
        purged = purge(args.url)
        if args.quiet:
            print(" ".join(f"{q}={n}" for q, n in purged.items()))
    if not (args.high or args.default or args.bulk):
        return
    started = time.perf_counter()
    n = asyncio.run(
        publish(
            args.url,
            {"email.high": args.high, "email.default": args.default, "email.bulk": args.bulk},
            args.greylisted,
        )
    )
    print(
        f"published and confirmed {n} emails in {time.perf_counter() - started:.1f}s "
        f"(email.high={args.high} email.default={args.default} email.bulk={args.bulk} "
        "-> email.default via email-undeliverable)"
    )


if __name__ == "__main__":
    main()

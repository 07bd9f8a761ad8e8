"""The email worker of the design: ``email.high`` at prefetch 10, ``email.default`` at 2.

While both queues have a backlog it sends about five user-triggered emails (password resets,
sign-up confirmations) for each newsletter or receipt, and ``email.default`` still moves.
Rejected and exhausted emails go to ``email.dlx`` (-> ``email.dead``), per topology.example.yml.

Run it through the runner, with its settings from the topology's consumers section::

    priority-worker run email_worker:send_email --url amqp://guest:guest@127.0.0.1:5672/ \\
        --topology topology.example.yml --consumer email-sender

or directly (same thing, with a share summary on exit)::

    python examples/email_worker.py [--seconds 10] [--http-port 8080]

On exit it prints how many emails of each queue it sent and the observed high:default share.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
from collections import Counter

from priority_worker import Message, Queue, Reject, Retry, Worker

SEND_SECONDS = float(os.environ.get("EMAIL_SEND_SECONDS", "0.02"))
sent: Counter[str] = Counter()
retried: Counter[str] = Counter()


async def send_email(message: Message) -> None:
    """Pretend to talk to an SMTP server for EMAIL_SEND_SECONDS (default 20 ms).

    A greylisted email (the SMTP server's "try again later") is retried in 30 s, once.
    """
    email = message.data
    if isinstance(email, dict) and not email.get("to"):
        raise Reject("no recipient")
    if isinstance(email, dict) and email.get("greylisted") and message.attempts == 0:
        retried[message.queue] += 1
        raise Retry(delay=30, reason="greylisted")
    await asyncio.sleep(SEND_SECONDS)
    sent[message.queue] += 1


def summary() -> str:
    """``email.high=N email.default=M share=R:1``."""
    high, default = sent["email.high"], sent["email.default"]
    share = f"{high / default:.2f}:1" if default else "n/a"
    text = f"sent email.high={high} email.default={default} share(high:default)={share}"
    if retried:
        text += f"; greylisted, retry in 30 s: {sum(retried.values())}"
    return text


@atexit.register
def _print_summary() -> None:
    if sent:
        print(summary(), flush=True)


def main() -> None:
    """Run the worker until SIGTERM/SIGINT or for ``--seconds``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--http-port", type=int, default=None)
    parser.add_argument("--mode", default="weighted")
    args = parser.parse_args()
    worker = Worker(
        args.url,
        [
            Queue("email.high", prefetch=10, dead_letter_exchange="email.dlx"),
            Queue("email.default", prefetch=2, dead_letter_exchange="email.dlx"),
        ],
        send_email,
        mode=args.mode,
        http_port=args.http_port,
    )
    if args.seconds:

        async def bounded() -> None:
            await worker.start()
            await asyncio.sleep(args.seconds)
            await worker.stop()

        asyncio.run(bounded())
    else:
        worker.run()


if __name__ == "__main__":
    main()

"""A worker process for the kill -9 and SIGTERM scenarios.

    python worker_proc.py --url URL [--url URL ...] --queue NAME=PREFETCH --out FILE
                          [--delay SECONDS] [--shutdown-timeout SECONDS]

Runs ``priority_worker.Worker.run()`` (SIGTERM drains) with a handler that works ``delay``
seconds and then appends the message id to ``FILE`` (plus `` redelivered`` when it was), one
``write`` per line with O_APPEND, so lines of a process killed mid-way are never torn.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from priority_worker import Message, Queue, Worker


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    args = parser.parse_args()
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(message: Message) -> None:
        if args.delay:
            await asyncio.sleep(args.delay)
        mark = " redelivered" if message.redelivered else ""
        os.write(fd, f"{message.message_id}{mark}\n".encode())

    worker = Worker(
        args.url,
        [Queue.parse(args.queue)],
        handle,
        shutdown_timeout=args.shutdown_timeout,
        reconnect_max_delay=2.0,
    )
    worker.run()
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())

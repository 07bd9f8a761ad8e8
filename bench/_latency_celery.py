"""The Celery peer of the latency benchmark: one task, two queues, Celery's recommended
settings for priorities on RabbitMQ (late acks, prefetch multiplier 1, queues in priority
order on the command line: ``-Q high,low``).

The task sleeps ``$BENCH_HANDLER_S`` (Celery tasks are synchronous; the prefork pool runs one
per child process). ``$BENCH_AMQP_URL`` is the broker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _latency_peers import HANDLER_S, record
from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue

QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("high", "low")]

app = Celery("latency_peer", broker=os.environ.get("BENCH_AMQP_URL", "amqp://localhost//"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_queues=QUEUES,
    task_default_queue="low",
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@app.task(name="latency.handle")
def handle(queue: str, published: float) -> None:
    record(queue, published)
    time.sleep(HANDLER_S)


@worker_ready.connect
def _ready(**_: Any) -> None:
    Path(os.environ["BENCH_LATENCY_OUT"] + ".ready").write_text("ready\n")

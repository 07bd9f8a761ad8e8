"""A confirmed publisher in a background thread, shared by the migration tests
(``tests/declare/test_migrate_broker.py``) and the migration benchmark
(``bench/migrate_bench.py``, which puts this folder on ``sys.path`` as
``bench/simulate_bench.py`` does for ``simulate_agreement``).

It publishes persistent messages through an exchange at a steady rate, waiting for each
publisher confirm, and keeps the ``message_id`` of every message the broker confirmed: those
are the messages a migration must not lose. With ``mandatory`` an unroutable message comes
back (``basic.return``); it is counted in ``returned`` and not kept as confirmed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pika
import pika.exceptions


class PublisherFailed(RuntimeError):
    """The background publisher stopped with an error (its connection, a nack...)."""


class ConfirmedPublisher(threading.Thread):
    """Publishes ``prefix``N ids through ``exchange`` at ``rate`` msg/s, routing keys taken in
    turn from ``routing_keys``, each confirmed before the next; ``finish`` stops it and returns
    the confirmed ids in order."""

    def __init__(
        self,
        url: str,
        exchange: str,
        routing_keys: Sequence[str],
        rate: float,
        mandatory: bool = False,
        prefix: str = "p-",
    ) -> None:
        super().__init__(daemon=True)
        if not routing_keys or rate <= 0:
            raise ValueError("a publisher needs at least one routing key and a positive rate")
        self.url = url
        self.exchange = exchange
        self.routing_keys = list(routing_keys)
        self.rate = rate
        self.mandatory = mandatory
        self.prefix = prefix
        self.confirmed: list[str] = []
        self.returned = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Publish until ``stop`` is set; an error ends the thread and is kept for ``finish``."""
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            ch = conn.channel()
            ch.confirm_delivery()
            started = time.monotonic()
            n = 0
            while not self.stop.is_set():
                if (wait := started + n / self.rate - time.monotonic()) > 0:
                    time.sleep(wait)
                mid = f"{self.prefix}{n}"
                key = self.routing_keys[n % len(self.routing_keys)]
                props = pika.BasicProperties(message_id=mid, delivery_mode=2)
                try:
                    # With confirms on, basic_publish returns once the broker confirmed it.
                    ch.basic_publish(
                        self.exchange, key, mid.encode(), props, mandatory=self.mandatory
                    )
                    self.confirmed.append(mid)
                except pika.exceptions.UnroutableError:
                    self.returned += 1  # not delivered, and the publisher knows it
                n += 1
            conn.close()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout: float = 60.0) -> list[str]:
        """Stop publishing; the confirmed ids. Raises PublisherFailed if the thread failed."""
        self.stop.set()
        self.join(timeout)
        if self.is_alive():
            raise PublisherFailed(f"the publisher did not stop within {timeout} s")
        if self.error is not None:
            raise PublisherFailed(f"the publisher failed: {self.error!r}") from self.error
        return list(self.confirmed)

"""The two ways a migration moves a queue's messages to another queue (I/O, pika):

- ``move``: the tool's own pipelined consumer and publisher on one channel of its own AMQP
  connection (``_wire``: each message forwarded as the broker framed it), with publisher
  confirms: a message is acknowledged on the queue it leaves only after the queue it goes to
  confirmed it. Any broker, no plugin.
- ``shovel_move``: a dynamic shovel of the broker (``ack-mode: on-confirm``), written through
  the management API; needs the ``rabbitmq_shovel`` plugin.

Both return a ``MoveResult``: how many messages were moved, and how many of those moves may
have made a duplicate as far as the mover can tell (see ``MoveResult.resent_at_most``).
``_migrate`` runs the steps around them.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika.exceptions

from ._amqp import AmqpSession, _Channel
from ._errors import ApplyError
from ._management import ManagementClient
from ._move_progress import MoveProgress
from ._wire import WireChannel, WireConnection, WireError
from .kinds.shovel import MIGRATION_SHOVEL_PREFIX

PREFETCH = 2000  # deliveries in flight per move: confirms of persistent messages come in batches
_POLL = 0.05
CANCEL_WAIT = 30.0  # seconds the deliveries that came before the cancel-ok may take


class MigrationFailed(ApplyError):
    """A migration stopped part-way; what it left on the broker records it, rerun to finish."""


@dataclass
class MoveResult:
    """What one move did.

    ``resent_at_most``: moves that may have put a second copy of a message in the target. The
    own mover counts the deliveries it moved that the broker flagged ``redelivered``: a message
    requeued when the connection of a killed run (or of another consumer) closed with it
    unacknowledged — that run may have published it already. A shovel that had to be stopped
    (a competing consumer emptied its source) or restarted hands back what it had not
    acknowledged, up to its prefetch, without saying how many of those it had published: the
    bound counts the prefetch (or the messages it moved, when fewer).
    """

    moved: int = 0
    resent_at_most: int = 0

    def __iadd__(self, other: MoveResult) -> MoveResult:
        self.moved += other.moved
        self.resent_at_most += other.resent_at_most
        return self


async def move(
    session: AmqpSession,
    wire: WireConnection,
    source: str,
    target: str,
    progress: MoveProgress | None = None,
    on_half: Callable[[], None] | None = None,
) -> MoveResult:
    """Move every message of ``source`` to ``target`` (through the default exchange, with
    mandatory), each acknowledged on ``source`` only once ``target`` confirmed it.

    Pipelined on one channel of ``wire``: up to PREFETCH deliveries in flight, each published
    as the broker framed it (``_wire``: headers, priority, expiration and ids go out byte for
    byte), confirms acknowledging what they cover with one ``multiple`` ack. ``session``
    counts the source (a passive declare). Stops when ``source`` has no ready message and
    nothing is in flight. A nack or a return (the target is gone) stops it with an error, and
    so does anything else that ends it early (the channel closed, the consumer cancelled by
    the broker, publishes still unconfirmed ``CANCEL_WAIT`` s after the cancel-ok): it
    never reports success with the source not drained. The unacknowledged deliveries go
    back to ``source`` when the channel closes. ``on_half`` is
    called once half of the messages ``source`` held at the start are moved (the tests' kill
    point).
    """
    probe = await session.channel()
    ch: WireChannel | None = None
    left = 0
    problem: str | None = None
    try:
        total = await count_ready(probe, source)
        ch = await wire.channel()
        mover = ch

        def on_confirmed() -> None:
            nonlocal on_half
            if on_half is not None and mover.confirmed >= max(1, total // 2):
                call, on_half = on_half, None  # once
                call()
            if progress is not None:
                progress(source, mover.confirmed, left)

        ch.on_confirmed = on_confirmed
        await ch.forward(source, target, PREFETCH)
        while ch.failed is None and ch.closed is None and not ch.cancelled:
            left = await count_ready(probe, source)
            if left == 0 and not ch.in_flight:
                break
            await asyncio.sleep(_POLL)
        if ch.failed is None and ch.closed is None:
            # Deliveries that arrived before the cancel-ok are published: wait for them.
            await ch.cancel()
            await wait_until(
                lambda: not mover.in_flight or mover.failed is not None or mover.closed is not None,
                CANCEL_WAIT,
            )
        problem = _unfinished(ch)
    except WireError as exc:
        problem = str(exc)
    except pika.exceptions.AMQPError as exc:  # the count's passive declare: e.g. 404, gone
        problem = f"counting '{source}' failed: {exc!r}"
    finally:
        if ch is not None:
            await ch.close()
        if probe.closed is None:
            probe.channel.close()
    if problem is not None:
        raise MigrationFailed(
            f"moving messages from '{source}' to '{target}' stopped: {problem}; nothing was "
            "lost (unconfirmed messages stay in the source), rerun to finish"
        )
    assert ch is not None
    return MoveResult(ch.confirmed, min(ch.redelivered, ch.confirmed))


async def wait_until(condition: Callable[[], bool], timeout: float, every: float = _POLL) -> bool:
    """Poll ``condition`` every ``every`` s until it holds or ``timeout`` s have passed;
    whether it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(every)
    return condition()


def _unfinished(ch: WireChannel) -> str | None:
    """Why the move on ``ch`` did not finish (None: it did)."""
    if ch.failed is not None:
        return ch.failed
    if ch.closed is not None:
        return f"the channel closed: {ch.closed}"
    if ch.cancelled:
        # Its queue was deleted or went down: whatever it still holds was not moved.
        return "the broker cancelled the consumer (the queue was deleted or is down)"
    if ch.in_flight:
        # Unacknowledged, they go back to the source as the channel closes: not moved, and
        # the caller must not take the source for drained (it may delete it).
        return f"{ch.in_flight} publishes were not confirmed in {CANCEL_WAIT:g} s"
    return None


async def shovel_move(
    session: AmqpSession,
    http: ManagementClient,
    vhost: str,
    source: str,
    target: str,
    progress: MoveProgress | None = None,
    on_half: Callable[[], None] | None = None,
) -> MoveResult:
    """Move ``source``'s messages to ``target`` with a dynamic shovel of the broker.

    The shovel (``ack-mode: on-confirm``: a message leaves ``source`` once ``target``
    confirmed it) moves as many messages as ``source`` held when it started and then deletes
    itself (``src-delete-after: queue-length``); what came in meanwhile takes another round.
    It connects to the local node directly (``amqp://`` with no host: no credentials are
    stored in its definition). A process killed meanwhile leaves the shovel finishing its
    round; the rerun writes it again, which restarts it (at most its in-flight messages are
    sent twice).
    """
    name = MIGRATION_SHOVEL_PREFIX + source  # prune keeps these (kinds.shovel)
    probe = await session.channel()
    result = MoveResult()
    try:
        while True:
            total = await count_ready(probe, source)
            running = await asyncio.to_thread(http.shovel_exists, vhost, name)
            if total == 0 and not running:
                return result
            start = await count_ready(probe, target)
            if total:
                if running:
                    # Left by a killed run, running or stopped with its parameter left: the
                    # same value written again would not start a stopped one (the broker
                    # ignores an unchanged parameter), so it is deleted first (a running one
                    # hands back what it had not had confirmed) and written anew.
                    result.resent_at_most += PREFETCH
                    await asyncio.to_thread(http.delete_shovel, vhost, name)
                    await _gone(http, vhost, name)
                definition = _shovel(vhost, source, target)
                await asyncio.to_thread(http.put_shovel, vhost, name, definition)
            moved, stopped = await _watch_shovel(
                probe, http, vhost, name, (source, target, start, total), result, progress, on_half
            )
            if on_half is not None and moved >= max(1, total // 2):
                # A shovel that finished before a poll saw it half way: the point is now,
                # right after it (a kill point must be reached whenever the step runs).
                call, on_half = on_half, None
                call()
            result.moved += moved
            if stopped:
                result.resent_at_most += min(PREFETCH, max(moved, 0))
    finally:
        if probe.closed is None:
            probe.channel.close()


async def _gone(http: ManagementClient, vhost: str, name: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until the shovel's parameter is gone."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(http.shovel_exists, vhost, name):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(_POLL)


def _shovel(vhost: str, source: str, target: str) -> dict[str, object]:
    local = "amqp:///" + urllib.parse.quote(vhost, safe="")
    return {
        "src-protocol": "amqp091",
        "src-uri": local,
        "src-queue": source,
        "src-delete-after": "queue-length",
        "src-prefetch-count": PREFETCH,
        "dest-protocol": "amqp091",
        "dest-uri": local,
        "dest-queue": target,
        "ack-mode": "on-confirm",
    }


async def _watch_shovel(
    probe: _Channel,
    http: ManagementClient,
    vhost: str,
    name: str,
    what: tuple[str, str, int, int],
    result: MoveResult,
    progress: MoveProgress | None,
    on_half: Callable[[], None] | None,
) -> tuple[int, bool]:
    """Until the shovel ``name`` is gone: (messages it moved, whether it had to be stopped)."""
    source, target, start, total = what
    empty_polls = 0
    stopped = False
    while await asyncio.to_thread(http.shovel_exists, vhost, name):
        done = max(0, await count_ready(probe, target) - start)
        if progress is not None:
            progress(source, result.moved + done, max(0, total - done))
        if on_half is not None and done >= max(1, total // 2):
            call, on_half = on_half, None  # once
            call()
        # A consumer that competes for the source makes the shovel move fewer than it
        # counted, and it would wait for more forever: once the source stays empty, stop it
        # (what it has not had confirmed goes back to the source: possibly a duplicate).
        empty_polls = empty_polls + 1 if await count_ready(probe, source) == 0 else 0
        if empty_polls >= 5:
            await asyncio.to_thread(http.delete_shovel, vhost, name)
            stopped = True
        await asyncio.sleep(0.1)
    return max(0, await count_ready(probe, target) - start), stopped


async def count_ready(ch: _Channel, queue: str) -> int:
    """Ready messages of ``queue`` (a passive declare: the broker's own count)."""
    frame: Any = await ch.call("queue_declare", queue=queue, passive=True)
    return int(frame.method.message_count)

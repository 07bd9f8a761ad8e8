"""When a migration may move messages and when it may swap its queue (pure).

The migrations of a vhost run side by side, and two of their kinds of work compete for the
broker. A *move* (a queue's messages to another queue, by the tool's mover or a shovel) keeps
the broker busy writing; a *swap* (the drained queue deleted and declared with its new shape)
is the default exchange's window: a message published to the queue's name in between is
unroutable. A quorum queue's declare that runs beside moves waits behind their writes in the
broker's log, and the window grows from tens of milliseconds to seconds. So the gate runs
swaps with no move beside them, and lets moves fill the rest of the time.

The rules (a readers-writer lock with writer preference, the readers bounded):

- at most ``moves`` moves run at once; the others wait, served in the order they asked;
- once a swap waits, no new move starts (moves that asked before it wait too): the running
  moves finish, then the swap runs;
- ``swaps_together``: every swap waiting when the last move finishes runs at once, and one that
  asks while they run joins them; otherwise they run one after another, the oldest first, and
  moves stay held until none waits;
- when no swap waits or runs, the waiting moves start, up to ``moves``.

Ties: a move and a swap asking at the same time — the swap goes first (its migration is one
step from done, and the window is what the issue asks to keep short). A swap waits for running
moves to *finish*, not to pause: a shovel cannot be paused without being restarted (which may
re-send up to its prefetch), and a swap waits no longer than the longest running move. Moves
are not starved: each queue swaps once (again only if a message came in through the default
exchange during the delete), so the swaps that can hold them are bounded by the queues.

Each call returns who may start now, in the order they asked; the caller (``_migrate``) wakes
them. ``leave`` is the one way out, for a finished turn and for a waiter that gave up alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

Who = TypeVar("Who", bound=Hashable)


class MoveGate(Generic[Who]):
    """Admits moves and swaps by the rules above. ``Who`` identifies one turn (unique while it
    waits or runs)."""

    def __init__(self, moves: int, swaps_together: bool = False) -> None:
        if moves < 1:
            raise ValueError("at least one move must be able to run")
        self.moves = moves
        self.swaps_together = swaps_together
        self._moving: set[Who] = set()
        self._swapping: set[Who] = set()
        self._waiting_moves: deque[Who] = deque()
        self._waiting_swaps: deque[Who] = deque()

    @property
    def moving(self) -> frozenset[Who]:
        """The moves running now."""
        return frozenset(self._moving)

    @property
    def swapping(self) -> frozenset[Who]:
        """The swaps running now."""
        return frozenset(self._swapping)

    @property
    def waiting(self) -> tuple[Who, ...]:
        """Who waits: the swaps first (they go first), each kind in the order it asked."""
        return (*self._waiting_swaps, *self._waiting_moves)

    def ask_move(self, who: Who) -> list[Who]:
        """``who`` wants to move; who may start now (``who`` among them, or not yet)."""
        self._check_new(who)
        self._waiting_moves.append(who)
        return self._admit()

    def ask_swap(self, who: Who) -> list[Who]:
        """``who`` wants to swap; who may start now."""
        self._check_new(who)
        self._waiting_swaps.append(who)
        return self._admit()

    def leave(self, who: Who) -> list[Who]:
        """``who`` is done, or gave up waiting; who may start now. Unknown: nothing changes."""
        for running in (self._moving, self._swapping):
            running.discard(who)
        for waiting in (self._waiting_moves, self._waiting_swaps):
            if who in waiting:
                waiting.remove(who)
        return self._admit()

    def _check_new(self, who: Who) -> None:
        if who in self._moving or who in self._swapping or who in self.waiting:
            raise ValueError(f"{who!r} already has a turn")

    def _admit(self) -> list[Who]:
        started: list[Who] = []
        if self._waiting_swaps:
            if self._moving:
                return started  # the running moves finish first; no new one starts
            while self._waiting_swaps and (self.swaps_together or not self._swapping):
                who = self._waiting_swaps.popleft()
                self._swapping.add(who)
                started.append(who)
            return started
        if self._swapping:
            return started
        while self._waiting_moves and len(self._moving) < self.moves:
            who = self._waiting_moves.popleft()
            self._moving.add(who)
            started.append(who)
        return started

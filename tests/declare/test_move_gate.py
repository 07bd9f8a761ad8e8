"""The gate between a vhost's concurrent migrations (``_move_gate.MoveGate``): moves run up to
a bound, a swap runs with no move beside it and, once it waits, holds new moves back (writer
preference); and its asyncio side in ``_migrate`` (``Turns``), which wakes the tasks the gate
admits and frees a turn whose task was cancelled. No broker."""

from __future__ import annotations

import asyncio
import random

import pytest

from declare_amqp._migrate import Turns
from declare_amqp._move_gate import MoveGate


def test_moves_run_up_to_the_bound_and_the_others_start_in_the_order_they_asked() -> None:
    gate: MoveGate[str] = MoveGate(2)
    assert gate.ask_move("a") == ["a"]
    assert gate.ask_move("b") == ["b"]
    assert gate.ask_move("c") == []
    assert gate.ask_move("d") == []
    assert gate.leave("b") == ["c"]
    assert gate.moving == {"a", "c"} and gate.waiting == ("d",)
    assert gate.leave("a") == ["d"]


def test_a_waiting_swap_holds_new_moves_until_it_ran_alone() -> None:
    gate: MoveGate[str] = MoveGate(3)
    gate.ask_move("m1")
    gate.ask_move("m2")
    assert gate.ask_swap("s") == []  # two moves still run
    assert gate.ask_move("m3") == []  # a free slot, but a swap waits
    assert gate.leave("m1") == []
    assert gate.leave("m2") == ["s"]
    assert gate.swapping == {"s"} and not gate.moving
    assert gate.ask_move("m4") == []  # not beside a running swap
    assert gate.leave("s") == ["m3", "m4"]


def test_swaps_in_turn_run_one_after_another_and_moves_wait_for_the_last() -> None:
    gate: MoveGate[str] = MoveGate(2)
    gate.ask_move("m1")
    gate.ask_swap("s1")
    gate.ask_swap("s2")
    gate.ask_move("m2")
    assert gate.leave("m1") == ["s1"]
    assert gate.ask_swap("s3") == []
    assert gate.leave("s1") == ["s2"]
    assert gate.leave("s2") == ["s3"]
    assert gate.leave("s3") == ["m2"]


def test_swaps_together_start_at_once_and_a_later_one_joins_them() -> None:
    gate: MoveGate[str] = MoveGate(2, swaps_together=True)
    gate.ask_move("m1")
    gate.ask_swap("s1")
    gate.ask_swap("s2")
    assert gate.leave("m1") == ["s1", "s2"]
    assert gate.ask_swap("s3") == ["s3"]
    gate.ask_move("m2")
    assert gate.leave("s1") == [] and gate.leave("s3") == []
    assert gate.leave("s2") == ["m2"]


def test_a_swap_goes_before_a_move_that_asked_first() -> None:
    """The tie: when the running moves finish, a waiting swap starts, not a waiting move."""
    gate: MoveGate[str] = MoveGate(1)
    gate.ask_move("m1")
    gate.ask_move("m2")
    gate.ask_swap("s")
    assert gate.waiting == ("s", "m2")
    assert gate.leave("m1") == ["s"]
    assert gate.leave("s") == ["m2"]


def test_a_swap_that_gives_up_waiting_lets_the_held_moves_start() -> None:
    gate: MoveGate[str] = MoveGate(2)
    gate.ask_move("m1")
    gate.ask_swap("s")
    assert gate.ask_move("m2") == []
    assert gate.leave("s") == ["m2"]
    assert gate.leave("nobody") == []
    assert gate.moving == {"m1", "m2"} and gate.waiting == ()


def test_a_turn_is_asked_once_and_the_bound_is_at_least_one() -> None:
    gate: MoveGate[str] = MoveGate(1)
    gate.ask_move("a")
    with pytest.raises(ValueError, match="already has a turn"):
        gate.ask_swap("a")
    with pytest.raises(ValueError, match="at least one"):
        MoveGate(0)


@pytest.mark.parametrize("together", [False, True])
def test_random_turns_never_run_a_move_beside_a_swap_and_nobody_waits_for_nothing(
    together: bool,
) -> None:
    """Whatever the order of asks and leaves: moves and swaps never run at once, the bound
    holds, swaps in turn run one at a time, no move starts while a swap waits, and whoever
    waits has a reason (something runs)."""
    rng = random.Random(7)
    gate: MoveGate[int] = MoveGate(3, swaps_together=together)
    running: set[int] = set()
    swaps: set[int] = set()
    for who in range(2000):
        a_swap_waited = bool(swaps & set(gate.waiting))
        if running and rng.random() < 0.5:
            gone = rng.choice(sorted(running))
            running.discard(gone)
            started = gate.leave(gone)
        elif rng.random() < 0.3:
            swaps.add(who)
            started = gate.ask_swap(who)
        else:
            started = gate.ask_move(who)
        if a_swap_waited:
            assert not set(started) - swaps, "a move started while a swap waited"
        running |= set(started)
        assert running == gate.moving | gate.swapping
        assert not (gate.moving and gate.swapping)
        assert len(gate.moving) <= 3
        assert together or len(gate.swapping) <= 1
        assert not gate.waiting or running, "waiting while nothing runs"


def test_turns_wake_the_admitted_tasks_and_free_a_cancelled_waiter() -> None:
    """``Turns`` on the event loop: a swap runs only once the move before it left; a move
    asked after the swap waits for it; a task cancelled while it waits gives its turn back."""
    events: list[str] = []

    async def scenario() -> None:
        turns = Turns(MoveGate(1))
        release_move = asyncio.Event()

        async def moving(name: str, until: asyncio.Event | None = None) -> None:
            async with turns.moving():
                events.append(f"{name} starts")
                if until is not None:
                    await until.wait()
                events.append(f"{name} ends")

        async def swapping(name: str) -> None:
            async with turns.swapping():
                events.append(f"{name} starts")
                await asyncio.sleep(0)
                events.append(f"{name} ends")

        first = asyncio.create_task(moving("m1", release_move))
        await asyncio.sleep(0)
        given_up = asyncio.create_task(moving("gives up"))
        swap = asyncio.create_task(swapping("swap"))
        later = asyncio.create_task(moving("m2"))
        await asyncio.sleep(0)
        given_up.cancel()
        await asyncio.sleep(0)
        release_move.set()
        await asyncio.gather(first, swap, later)
        assert given_up.cancelled()
        assert turns.gate.moving == frozenset() and turns.gate.waiting == ()

    asyncio.run(scenario())
    assert events == ["m1 starts", "m1 ends", "swap starts", "swap ends", "m2 starts", "m2 ends"]

"""How a migration's message moves are shown while they run: a bar per queue on a
terminal, else a line every ``LINE_INTERVAL`` seconds (moved, rate, left). ``_migrate``
calls the ``MoveProgress`` callable it yields as confirms come in."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# A move reports (queue it empties, messages moved so far, messages left when last looked).
MoveProgress = Callable[[str, int, int], None]

LINE_INTERVAL = 2.0  # seconds between progress lines when stderr is not a terminal


@contextlib.contextmanager
def progress_reporter(
    console: Console | None, stream: TextIO | None = None
) -> Iterator[MoveProgress]:
    """A progress bar per moved queue on a terminal (``console``), else a line every
    LINE_INTERVAL seconds on ``stream`` (stderr): moved, rate, left."""
    if console is not None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        tasks: dict[str, Any] = {}
        with Progress(
            TextColumn("moving {task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} msgs"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:

            def on_terminal(queue: str, moved: int, left: int) -> None:
                if queue not in tasks:
                    tasks[queue] = bar.add_task(queue, total=moved + left)
                bar.update(tasks[queue], completed=moved, total=max(moved + left, moved))

            yield on_terminal
        return
    out = stream or sys.stderr
    state: dict[str, tuple[float, float, int]] = {}  # queue -> (started, last line, moved)

    def on_line(queue: str, moved: int, left: int) -> None:
        now = time.monotonic()
        started, last, _ = state.get(queue, (now, now, 0))
        state[queue] = (started, last, moved)
        if now - last >= LINE_INTERVAL:
            rate = moved / max(now - started, 1e-9)
            out.write(f"moving {queue}: {moved} moved, {rate:.0f} msg/s, {left} left\n")
            out.flush()
            state[queue] = (started, now, moved)

    yield on_line

"""The cyclic garbage collector paused while large acyclic values are built.

Loading a 20,000-queue file or reading a vhost of that size makes hundreds of thousands of
dicts, lists and model objects, none of them in a cycle. With the collector on, each of its
passes walks all that was built so far, again and again as the heap grows: on the parse
alone that took longer than the parse (5.2 s against 1.6 s). Reference counting frees what
these steps discard either way; the collector runs again as soon as the last step ends.

The file is parsed while the broker is read in another thread, so the pause is counted:
the collector comes back only when neither is building any more, and only if it was on.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (nor in other threads meanwhile)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()

"""Loading big flows: the cycle collector paused while a flow's objects are made."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Loading a big flow makes millions of objects and no reference cycles, so the cycle
    collector would only walk them, ever more of them: at 100,000 tasks that was a third of
    the load (3.1-3.3 s against 2.0-2.4 s). Unused objects are still freed at once."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()

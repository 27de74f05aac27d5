"""How this project's long-running programs keep Python's cyclic collector out of the way
of their bulk loads (the agent's snapshot and calculation, the console's 10,000 rows).

`settle()` moves everything alive now out of the collector's sight (gc.freeze) and spaces
young collections 50,000 allocations apart instead of 700. Loading 10,000 endpoints
creates millions of objects that are not garbage; with the defaults, collections walking
the growing heap were half of the agent's first calculation (6.1 s against 2.9 s with
collection off; 1.8 s like this). Garbage without cycles is freed by reference counting
either way, and what has cycles is still collected, only less often.
"""

from __future__ import annotations

import gc
import threading

GC_THRESHOLD = (50_000, 20, 100)  # allocations between young collections, then the old
_holds = 0  # hold()s not yet released: the collector runs again when none is left
_holds_lock = threading.Lock()


def settle() -> None:
    """Collect once, freeze what survived, and space the collections out (a program that
    lives as one process: what it freezes stays until it exits)."""
    gc.collect()
    gc.freeze()
    space_out()


def hold() -> None:
    """No cyclic collection until `release()`: for a bulk load whose objects all survive it
    (the console's first 10,000 endpoints, in its follower process and in the console, then
    their rows). Each young collection in it walked the ~50,000 objects made since the last
    to free none: 9-18 ms each, and ~55 ms of the console's 10,000-endpoint load across its
    two processes (medians of 10). Holds nest and may come from several threads."""
    global _holds
    with _holds_lock:
        _holds += 1
        if _holds == 1:
            gc.disable()


def release() -> None:
    """End a `hold()`. The last one freezes what is alive (the load's objects: walking them
    again would free nothing, and acyclic garbage is freed by reference counting either
    way), so no collection comes due at once to walk them, and collections resume."""
    global _holds
    with _holds_lock:
        if _holds == 0:
            return
        _holds -= 1
        if _holds == 0:
            gc.freeze()
            gc.enable()


def forked() -> None:
    """In a child just forked from a big process (the console's follower): freeze what it
    inherited, without the collection that would walk it, and space collections out. A
    collection writes to the header of every object it walks, and the kernel then copies
    each page it wrote to: a child of the console that listed 10,000 endpoints took 5,000
    such copies, ~45 ms, before its first page was read."""
    gc.freeze()
    space_out()


def space_out() -> None:
    """Only space the collections out (nothing frozen: for code that may run many times in
    one process, like the console under its tests)."""
    gc.set_threshold(*GC_THRESHOLD)


def freeze() -> None:
    """Move everything alive now out of the collector's sight, without collecting first,
    until `thaw()`: for a program that runs inside a process that may outlive it (the
    console under its tests), where `settle()`'s freeze would keep each run's garbage."""
    gc.freeze()


def thaw() -> None:
    """Give what `freeze()` froze back to the collector (what became garbage meanwhile is
    collected again)."""
    gc.unfreeze()

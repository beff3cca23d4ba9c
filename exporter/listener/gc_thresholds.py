"""CPython's cyclic garbage collector, set for a process that runs the listener.

A catch-up allocates some twenty container objects per event (the parsed log's dict and topics list,
the decoded record and its dicts) and keeps the window's ranges, tens of thousands of events, alive
while they are fetched and committed. Under CPython's default thresholds (700, 10, 10) the collector
runs a young collection every 700 allocations and, as the survivors pile up, full collections that
walk every live object of the window again. On the listener benchmark (``bench/listener.py``) that
was about a fifth of the listener's CPU, some of it on the thread that commits, the catch-up's
bottleneck. The events hold no reference cycles (reference counting frees them as soon as a range
is committed), so collecting less often keeps no more memory; only real cycles wait longer.

``raise_gc_thresholds`` is process-wide by nature: ``runtime.serve`` calls it once, when the listener
runs in the process, and the benchmarks call it as the service does.
"""

from __future__ import annotations

import gc

LISTENER_GC_THRESHOLDS = (50_000, 20, 20)  # young collections every 50,000 allocations (default: 700)


def raise_gc_thresholds() -> tuple[int, int, int]:
    """Set ``LISTENER_GC_THRESHOLDS`` (never lowering one already set higher); returns the previous ones."""
    before = gc.get_threshold()
    gc.set_threshold(*(max(now, wanted) for now, wanted in zip(before, LISTENER_GC_THRESHOLDS, strict=True)))
    return before

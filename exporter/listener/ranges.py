"""How wide the next ``eth_getLogs`` block range is, for one endpoint.

``RangeSizer`` starts at the configured chunk size, shrinks to the provider's suggestion (or halves)
when a range is refused, and grows back gradually after a run of successes, never past
``max_chunk_size``. A refusal also teaches a *learned limit*: the width the provider said it serves
(its suggestion), or one block less than a range it refused without saying. Growth back up to that
limit is quick; past it, only one *probe* is made per ``PROBE_AFTER_SUCCESSES`` full-width
successes (a provider may have raised its limit, a "too many results" refusal may have been due to
a busy stretch of blocks), so a provider with a fixed cap refuses about once per that many ranges,
not once per ``GROW_AFTER_SUCCESSES``. A refused probe returns at once to the learned limit; a
served one raises it. Pure: no I/O, so it is unit-tested on its own. Not for waiting after errors:
``retry.py``.
"""

from __future__ import annotations

from typing import Protocol

GROW_AFTER_SUCCESSES = 3  # successes in a row before widening again: avoids refusal ping-pong
GROW_FACTOR = 1.5
PROBE_AFTER_SUCCESSES = 50  # full-width successes at the learned limit before one wider probe


class RangeSizing(Protocol):
    """What ``RangeFetcher`` needs of a sizer (a ``RangeSizer``, or the endpoint pool's view of one)."""

    @property
    def size(self) -> int: ...

    def refused(self, start: int, end: int, suggested: tuple[int, int] | None) -> None: ...

    def succeeded(self, width: int) -> None: ...


class RangeSizer:
    """The current getLogs range width in blocks, adapted to what the provider accepts."""

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.size = max(1, min(initial, self.maximum))
        self.limit: int | None = None  # the learned limit (blocks); None until a refusal
        self._successes = 0
        self._at_limit = 0

    def refused(self, start: int, end: int, suggested: tuple[int, int] | None) -> None:
        """The provider refused [start, end]: use its suggestion when it is usable, else halve
        (or, for a refused probe, go back to the learned limit)."""
        self._successes = 0
        self._at_limit = 0
        width = end - start + 1
        if suggested is not None and suggested[0] == start and start <= suggested[1] < end:
            self.size = suggested[1] - start + 1
            learned = self.size  # the provider said what it serves
        elif self.limit is not None and self.limit < width:
            self.size = learned = self.limit  # a probe past the learned limit: back to what was served
        else:
            self.size = max(1, min(self.size, width) // 2)
            learned = max(1, width - 1)  # only known: this width is too much
        self.limit = learned if self.limit is None else min(self.limit, learned)

    def succeeded(self, width: int) -> None:
        """A range of ``width`` blocks was served; widen after a few full-width successes."""
        if width < self.size:
            return  # a short range (the tail near head) says nothing about the provider's limit
        if self.limit is not None and width > self.limit:
            self.limit = width  # a probe was served: the provider allows more now
        self._successes += 1
        if self.size >= self.maximum or self._successes < GROW_AFTER_SUCCESSES:
            return
        self._successes = 0
        if self.limit is not None and self.size >= self.limit:
            self._at_limit += 1
            if self._at_limit < PROBE_AFTER_SUCCESSES // GROW_AFTER_SUCCESSES:
                return
        self._at_limit = 0
        grown = min(self.maximum, max(self.size + 1, int(self.size * GROW_FACTOR)))
        if self.limit is not None and self.size < self.limit:
            grown = min(grown, self.limit)  # back up to the limit first; past it only by a probe
        self.size = grown

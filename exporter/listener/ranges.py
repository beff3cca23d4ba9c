"""How wide the next ``eth_getLogs`` block range is.

``RangeSizer`` starts at the configured chunk size, shrinks to the provider's suggestion (or
halves) when a range is refused, and grows back gradually after a run of successes, never past
``max_chunk_size``. Pure: no I/O, so it is unit-tested on its own. Not for waiting after errors:
``retry.py``.
"""

from __future__ import annotations

GROW_AFTER_SUCCESSES = 3  # successes in a row before widening again: avoids refusal ping-pong
GROW_FACTOR = 1.5


class RangeSizer:
    """The current getLogs range width in blocks, adapted to what the provider accepts."""

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.size = max(1, min(initial, self.maximum))
        self._successes = 0

    def refused(self, start: int, end: int, suggested: tuple[int, int] | None) -> None:
        """The provider refused [start, end]: use its suggestion when it is usable, else halve."""
        self._successes = 0
        width = end - start + 1
        if suggested is not None and suggested[0] == start and start <= suggested[1] < end:
            self.size = suggested[1] - start + 1
        else:
            self.size = max(1, min(self.size, width) // 2)

    def succeeded(self, width: int) -> None:
        """A range of ``width`` blocks was served; widen after a few full-width successes."""
        if width < self.size:
            return  # a short range (the tail near head) says nothing about the provider's limit
        self._successes += 1
        if self._successes >= GROW_AFTER_SUCCESSES and self.size < self.maximum:
            self.size = min(self.maximum, max(self.size + 1, int(self.size * GROW_FACTOR)))
            self._successes = 0

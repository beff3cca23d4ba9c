"""How wide the next ``eth_getLogs`` block range is, for one endpoint.

``RangeSizer`` starts at the configured chunk size, shrinks to the provider's suggestion (or halves)
when a range is refused, and grows back gradually after a run of successes, never past
``max_chunk_size``. A refusal also teaches a *learned limit*: the width the provider said it serves
(its suggestion), or one block less than a range it refused without saying. Growth back up to that
limit is quick; past it, only one *probe* is made per ``PROBE_AFTER_SUCCESSES`` full-width
successes (a provider may have raised its limit), so a provider with a fixed cap refuses about once
per that many ranges, not once per ``GROW_AFTER_SUCCESSES``. A refused probe returns at once to the
learned limit; a served one raises it. With several ranges in flight (``take``), a width never
served yet (a probe, or growth past the configured chunk size) is handed out once: the ranges
planned while it is out get the widest width served so far, so a probe costs one refusal, not one
per range in flight.

*Result caps* are a different limit: a provider that serves at most N logs per answer ("query
returned more than 10000 results", Alchemy's "cap of 10K logs") refuses a range for the events in
it, not for its width. Such a refusal teaches the cap (the N it names; else the most logs an answer
held so far) and leaves the block limit alone; from then on the width follows the events per block
seen in the last answers: ``RESULT_TARGET`` of the cap divided by that density (the busier of the
newest answer's and the running average), so sparse stretches get wide ranges and busy ones narrow
ranges, instead of halving to a few blocks and growing back by ``GROW_FACTOR``; a refusal in a
stretch busier than expected halves the width until an answer shows its density.

A refusal in a result cap's words that suggests the same width twice, a width holding far fewer
logs than the cap at the density seen (and no answer came near the cap, and an answer that wide was
served since the first suggestion, far under the cap), is a block cap in those words (the issue's
benchmark proxy, and any provider that reuses Infura's message): it teaches a block limit instead.

The same density also bounds every range to about ``RANGE_EVENTS`` logs, cap or no cap: the
listener holds its window's ranges in memory (about 2.6 kB per log, parsed and decoded), so a
backlog ten times denser gives ten times narrower ranges, not ten times the memory. Thread-safe;
pure (no I/O), so it is unit-tested on its own. Not for waiting after errors: ``retry.py``.
"""

from __future__ import annotations

import threading
from typing import Protocol

GROW_AFTER_SUCCESSES = 3  # successes in a row before widening again: avoids refusal ping-pong
GROW_FACTOR = 1.5
PROBE_AFTER_SUCCESSES = 50  # full-width successes at the learned limit before one wider probe
PROBE_EXPIRES_AFTER = 32  # ranges handed out while a probe is out before it counts as lost (cancelled)
RESULT_TARGET = 0.85  # of a result cap: the logs a range is sized to hold (room for a busier stretch)
DENSITY_WEIGHT = 0.5  # of the newest answer in the events-per-block estimate
RANGE_EVENTS = 2_500  # the logs a range is sized to hold at most, whatever the provider serves


class RangeSizing(Protocol):
    """What ``RangeFetcher`` needs of a sizer (a ``RangeSizer``, or the endpoint pool's view of one)."""

    @property
    def size(self) -> int: ...

    def take(self) -> int: ...

    def refused(
        self, start: int, end: int, suggested: tuple[int, int] | None, *, max_results: int | None = None
    ) -> None: ...

    def succeeded(self, width: int, logs: int | None = None) -> None: ...


class RangeSizer:
    """The current getLogs range width in blocks, adapted to what the provider accepts: the smaller
    of the block-width track (refusals, growth, probes) and, once a result cap is known, the width
    the cap allows at the events per block seen."""

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self._width = max(1, min(initial, self.maximum))  # the block-width track
        self._trusted = self._width  # the widest width served so far (at first: the configured one)
        self._by_results: int | None = None  # the result-cap track; None: no constraint (yet)
        self.limit: int | None = None  # the learned limit (blocks); None until a refusal
        self.result_cap: int | None = None  # the learned logs-per-answer cap; None until such a refusal
        self._density: float | None = None  # events per block, weighted to the newest answers
        self._last_density = 0.0  # events per block of the newest answer
        self._most_logs = 0  # the most logs one answer held (a lower bound of any result cap)
        self._successes = 0
        self._at_limit = 0
        self._probe_out = 0  # ranges handed out since a probe was (0: no probe out)
        self._last_suggestion: tuple[int, int] | None = None  # a result refusal's (first block, width)
        self._logs_at_suggestion: int | None = None  # the most logs of an answer that wide since suggested
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The width of the next range, in blocks."""
        return self._width if self._by_results is None else max(1, min(self._width, self._by_results))

    def take(self) -> int:
        """The width of the next range to ask for. A width never served yet (growth past the chunk
        size, a probe past the learned limit) is handed out once; until it is answered (or
        ``PROBE_EXPIRES_AFTER`` ranges later) the others get the widest width known to be served."""
        with self._lock:
            size = self.size
            ceiling = self._trusted if self.limit is None else min(self._trusted, self.limit)
            if size <= ceiling:
                return size
            if self._probe_out == 0:
                self._probe_out = 1
                return size
            self._probe_out += 1
            if self._probe_out > PROBE_EXPIRES_AFTER:
                self._probe_out = 0
            return ceiling

    def refused(
        self, start: int, end: int, suggested: tuple[int, int] | None, *, max_results: int | None = None
    ) -> None:
        """The provider refused [start, end]: use its suggestion when it is usable, else halve
        (or, for a refused probe, go back to the learned limit). ``max_results``: the refusal was for
        the logs in the range (a result cap), 0 when the provider did not say how many it serves."""
        with self._lock:
            self._successes = 0
            self._at_limit = 0
            width = end - start + 1
            usable = suggested if suggested is not None and suggested[0] == start else None
            if max_results is not None and not self._block_cap_in_result_words(start, usable, max_results):
                self._capped(width, max_results, usable)
                return
            if width > (self._trusted if self.limit is None else min(self._trusted, self.limit)):
                self._probe_out = 0  # the probe came back refused
            if suggested is not None and suggested[0] == start and start <= suggested[1] < end:
                self._width = suggested[1] - start + 1
                learned = self._width  # the provider said what it serves
            elif self.limit is not None and self.limit < width:
                self._width = learned = self.limit  # a probe past the learned limit: back to what was served
            else:
                self._width = max(1, min(self._width, width) // 2)
                learned = max(1, width - 1)  # only known: this width is too much
            self.limit = learned if self.limit is None else min(self.limit, learned)

    def succeeded(self, width: int, logs: int | None = None) -> None:
        """A range of ``width`` blocks was served (with ``logs`` logs, when the caller counted them);
        widen after a few full-width successes; once a result cap is known, size by it too."""
        with self._lock:
            if logs is not None and width >= 1:
                density = logs / width
                before = self._density
                self._density = density if before is None else DENSITY_WEIGHT * density + (1 - DENSITY_WEIGHT) * before
                self._last_density = density
                self._most_logs = max(self._most_logs, logs)
                if self._last_suggestion is not None and width == self._last_suggestion[1]:
                    self._logs_at_suggestion = max(self._logs_at_suggestion or 0, logs)
            full = width >= self.size
            if width > self._trusted:
                self._trusted = width
                self._probe_out = 0  # the probe was served
            self._by_results = self._results_width()
            if self.limit is not None and width > self.limit and full:
                self.limit = width  # a probe was served: the provider allows more now
                self._probe_out = 0
            if not full:
                return  # a short range (the tail near head) says nothing about the provider's limit
            self._successes += 1
            if self._width >= self.maximum or self._successes < GROW_AFTER_SUCCESSES:
                return
            self._successes = 0
            if self.limit is not None and self._width >= self.limit:
                self._at_limit += 1
                if self._at_limit < PROBE_AFTER_SUCCESSES // GROW_AFTER_SUCCESSES:
                    return
            self._at_limit = 0
            grown = min(self.maximum, max(self._width + 1, int(self._width * GROW_FACTOR)))
            if self.limit is not None and self._width < self.limit:
                grown = min(grown, self.limit)  # back up to the limit first; past it only by a probe
            self._width = grown

    # ------------------------------------------------------------------------ result caps (lock held)
    def _block_cap_in_result_words(self, start: int, suggested: tuple[int, int] | None, max_results: int) -> bool:
        """Whether a refusal worded as a result cap is a block cap: the same width suggested twice
        from different first blocks, a width that holds far fewer logs than the cap at the events
        per block seen, and no answer so far near the cap. A provider counting results suggests the
        width the logs allow (about the cap's worth); one capping blocks in Infura's words ("more
        than 10000 results. Try with this block range") suggests its cap every time, and following
        the events per block instead would ask past it again after every answer (one getLogs in two
        refused)."""
        if suggested is None or suggested[1] < suggested[0]:
            return False
        width = suggested[1] - suggested[0] + 1
        last, self._last_suggestion = self._last_suggestion, (start, width)
        if last is None or last[1] != width:
            self._logs_at_suggestion = None  # a new width: no answer that wide since it was suggested
        if last is None or last[0] == start or last[1] != width or not self._density:
            return False
        cap = max_results if max_results > 0 else self._most_logs
        # No answer came near the cap either: a provider counting results suggests ranges holding
        # about its cap's worth, so once one was served, a stale (quieter) density proves nothing.
        # And a range of the suggested width was served since, far under the cap: the window's ranges
        # into a busy stretch are refused together, with the same width, before any of its answers
        # (the density seen then is the quieter stretch's before it).
        served = self._logs_at_suggestion
        quiet = served is not None and served < cap / 2
        return quiet and width * max(self._density, self._last_density) < cap / 2 and self._most_logs < cap / 2

    def _capped(self, width: int, max_results: int, suggested: tuple[int, int] | None) -> None:
        cap = max_results if max_results > 0 else self._most_logs
        if cap > 0:
            # The density is left to the answers served: a refusal of a range far too narrow to hold
            # the cap (a provider's hiccup, a proxy) would otherwise pin the width to a few blocks.
            self.result_cap = cap if self.result_cap is None else min(self.result_cap, cap)
        if suggested is not None and suggested[1] >= suggested[0]:
            self._by_results = max(1, min(suggested[1] - suggested[0] + 1, width - 1))  # the provider counted
            return
        # Halve: the stretch may be far busier than the last answers said; the next served range
        # sizes the one after by its own density again.
        self._by_results = max(1, min(self.size, width) // 2)

    def _results_width(self) -> int | None:
        """The widest range whose logs stay within ``RESULT_TARGET`` of the cap (when one is known) and
        within ``RANGE_EVENTS``, at the density seen."""
        if not self._density:
            return None  # no events seen: only the block limits apply
        logs = RANGE_EVENTS if self.result_cap is None else min(RANGE_EVENTS, RESULT_TARGET * self.result_cap)
        # The busier of the newest answer and the average: a busy stretch starting is followed at
        # once (a refusal costs a round trip), a quiet one widens the ranges over a few answers.
        density = max(self._density, self._last_density)
        return max(1, int(logs / density))

"""Range sizing is pure: table-driven unit tests."""

from __future__ import annotations

import pytest

from exporter.listener.ranges import GROW_AFTER_SUCCESSES, PROBE_AFTER_SUCCESSES, RANGE_EVENTS, RangeSizer


def test_starts_at_chunk_size_capped_by_maximum() -> None:
    assert RangeSizer(2000, 10_000).size == 2000
    assert RangeSizer(20_000, 10_000).size == 10_000


@pytest.mark.parametrize(
    ("size", "refused", "suggested", "expected"),
    [
        (2000, (100, 2099), None, 1000),  # no suggestion: halve
        (2000, (100, 2099), (100, 599), 500),  # suggestion from our start: take it
        (2000, (100, 2099), (50, 599), 1000),  # suggestion from another start: ignore, halve
        (2000, (100, 2099), (100, 5000), 1000),  # suggestion not smaller: ignore, halve
        (2000, (100, 149), None, 25),  # a short tail range refused: halve what was asked
        (1, (100, 100), None, 1),  # never below one block
    ],
)
def test_refusal_shrinks_to_suggestion_or_halves(
    size: int, refused: tuple[int, int], suggested: tuple[int, int] | None, expected: int
) -> None:
    sizer = RangeSizer(size, 10_000)
    sizer.refused(*refused, suggested)
    assert sizer.size == expected


def test_grows_back_gradually_after_successes_up_to_maximum() -> None:
    sizer = RangeSizer(500, 2000)  # a narrow start, no refusal yet: nothing learned, grows to the maximum
    sizes = []
    for _ in range(6 * GROW_AFTER_SUCCESSES):
        sizer.succeeded(sizer.size)
        sizes.append(sizer.size)
    assert sizes[GROW_AFTER_SUCCESSES - 2] == 500  # not after a single success
    assert sizes[GROW_AFTER_SUCCESSES - 1] == 750
    assert sizes == sorted(sizes)
    assert sizes[-1] == 2000


def test_a_refusal_teaches_a_limit_that_growth_passes_only_by_a_rare_probe() -> None:
    sizer = RangeSizer(2000, 10_000)
    sizer.refused(0, 1999, (0, 999))  # "limited to a 1000 range"
    assert (sizer.size, sizer.limit) == (1000, 1000)
    successes = 0
    while sizer.size <= 1000:
        sizer.succeeded(sizer.size)
        successes += 1
        assert successes <= PROBE_AFTER_SUCCESSES + GROW_AFTER_SUCCESSES, "never probed past the learned limit"
    assert successes >= PROBE_AFTER_SUCCESSES - GROW_AFTER_SUCCESSES  # only after many successes
    sizer.refused(0, sizer.size - 1, None)  # the probe is refused: straight back to the limit, not halved
    assert (sizer.size, sizer.limit) == (1000, 1000)


def test_a_served_probe_raises_the_learned_limit() -> None:
    sizer = RangeSizer(2000, 10_000)
    sizer.refused(0, 1999, (0, 999))
    assert sizer.limit == 1000
    while sizer.size <= 1000:
        sizer.succeeded(sizer.size)
    probe = sizer.size
    sizer.succeeded(probe)
    assert sizer.limit == probe


def test_after_a_blind_refusal_it_grows_back_quickly_to_just_below_the_refused_width() -> None:
    sizer = RangeSizer(2000, 10_000)
    sizer.refused(0, 1999, (0, 999))  # limit 1000
    sizer.refused(0, 999, None)  # a busy stretch, no suggestion: halve; 1000 blocks were too many
    assert (sizer.size, sizer.limit) == (500, 999)
    for _ in range(2 * GROW_AFTER_SUCCESSES):
        sizer.succeeded(sizer.size)
    assert sizer.size == 999


def _catch_up(
    sizer: RangeSizer, events_per_block: list[float], cap: int | None, blocks: int, stretch: int = 1000
) -> tuple[int, int, list[int]]:
    """Work off ``blocks`` against a provider serving at most ``cap`` logs per answer (None: any), the chain's
    density given per ``stretch`` blocks, in turn. Returns (served ranges, refusals, served widths)."""
    start, served, refusals, widths = 0, 0, 0, []
    while start < blocks:
        width = min(sizer.take(), blocks - start)
        end = start + width - 1
        logs = round(sum(events_per_block[(start + i) // stretch % len(events_per_block)] for i in range(width)))
        if cap is not None and logs > cap:
            refusals += 1
            sizer.refused(start, end, None, max_results=cap)
            continue
        served += 1
        widths.append(width)
        sizer.succeeded(width, logs)
        start = end + 1
    return served, refusals, widths


def test_a_result_cap_converges_on_the_widest_range_under_it() -> None:
    """The issue's case: 150 logs per answer at 0.43 events per block, from 2,000-block ranges: not a
    collapse to a few blocks, but ranges of about 85 % of the 350 blocks the cap allows."""
    sizer = RangeSizer(2000, 10_000)
    served, refusals, widths = _catch_up(sizer, [0.43], cap=150, blocks=20_000)
    assert sizer.result_cap == 150
    assert refusals <= 5, refusals
    steady = widths[5:-1]  # the last one is the backlog's tail
    assert min(steady) >= 0.75 * 150 / 0.43, steady
    assert served <= 1.3 * 20_000 / (150 / 0.43)
    assert sizer.limit is None  # a result cap teaches no block-width limit


def test_a_result_cap_follows_busy_and_quiet_stretches() -> None:
    """Quiet stretches get wide ranges, busy ones narrow ones; refusals stay rare."""
    sizer = RangeSizer(2000, 10_000)
    served, refusals, widths = _catch_up(sizer, [0.05, 2.0], cap=1000, blocks=80_000, stretch=20_000)
    assert max(widths) >= 5 * min(widths)
    assert refusals <= 0.15 * served, (refusals, served)


def test_an_unnamed_result_cap_is_taken_from_the_largest_answer_served() -> None:
    sizer = RangeSizer(1000, 10_000)
    sizer.succeeded(1000, 300)
    sizer.refused(1000, 1999, None, max_results=0)  # "too many results", no number
    assert sizer.result_cap == 300
    assert sizer.size <= 500


@pytest.mark.parametrize("cap", [10, 2000])
def test_a_block_cap_worded_as_a_result_cap_is_learned_as_a_block_limit(cap: int) -> None:
    """The proxy of the issue's benchmark (and Infura's wording): ranges over ``cap`` blocks refused
    with "query returned more than 10000 results. Try with this block range [start, start+cap-1]",
    however few logs they hold. Followed as a result cap, every answer's few logs said "wider", and
    one getLogs in two was refused; the same width suggested twice makes it a block limit."""
    sizer = RangeSizer(2000, 10_000)
    start, served, refused = 0, 0, 0
    while start < 500 * cap:
        width = sizer.take()
        if width > cap:
            refused += 1
            sizer.refused(start, start + width - 1, (start, start + cap - 1), max_results=10_000)
            continue
        served += 1
        sizer.succeeded(width, round(0.43 * width))
        start += width
    assert sizer.limit == cap
    assert refused <= 2 + served // 40, (refused, served)


def test_result_refusals_suggesting_widths_that_follow_the_logs_stay_a_result_cap() -> None:
    """A provider counting results suggests what the logs of each stretch allow: no block limit is
    learned, and quiet stretches still get wide ranges."""
    sizer = RangeSizer(2000, 10_000)
    densities = [0.05, 2.0]
    start, widths = 0, []
    while start < 80_000:
        density = densities[start // 20_000 % 2]
        width = min(sizer.take(), 80_000 - start)
        fits = int(1000 / density)  # the widest range under 1,000 logs here
        if width > fits:
            sizer.refused(start, start + width - 1, (start, start + fits - 1), max_results=1000)
            continue
        sizer.succeeded(width, round(density * width))
        widths.append(width)
        start += width
    assert sizer.limit is None
    assert max(widths) >= 5 * min(widths)


@pytest.mark.parametrize("density", [0.43, 4.3, 43.0])
def test_a_dense_backlog_gets_narrower_ranges_not_more_logs_per_range(density: float) -> None:
    """No provider cap at all: the window's memory is its ranges' logs, so each range holds about
    ``RANGE_EVENTS`` logs at most, however dense the backlog (ten times denser: ten times narrower)."""
    sizer = RangeSizer(2000, 10_000)
    _served, refusals, widths = _catch_up(sizer, [density], cap=None, blocks=200_000)
    assert refusals == 0
    steady = widths[15:-1]  # once the ramp from the chunk size is over
    assert max(steady) * density <= RANGE_EVENTS, (density, steady)
    assert min(steady) >= 0.9 * min(10_000, RANGE_EVENTS / density), (density, steady)


def test_a_probe_is_handed_out_once_while_ranges_are_in_flight() -> None:
    """Four ranges planned at once: one may probe past the learned limit, the other three get the limit."""
    sizer = RangeSizer(2000, 10_000)
    sizer.refused(0, 1999, (0, 999))
    while sizer.size <= 1000:
        sizer.succeeded(sizer.size)
    probe = sizer.size
    assert [sizer.take() for _ in range(4)] == [probe, 1000, 1000, 1000]
    sizer.refused(0, probe - 1, None)  # the probe comes back refused: the limit stands
    assert [sizer.take() for _ in range(2)] == [1000, 1000]


def test_a_busy_stretch_refused_across_the_window_stays_a_result_cap() -> None:
    """A provider counting results (1,000 per answer), a quiet backlog (0.05 logs per block) and then a
    busy stretch of 500 logs per block: the window's four ranges into it are refused at once, each
    with the 2 blocks that fit from its first block. The same width suggested twice is what a busy
    stretch looks like before any of its answers came in (the density seen is the quiet one's): it
    must not teach a 2-block limit, which would keep the quiet backlog after it at 2 blocks per getLogs
    for hundreds of answers."""
    sizer = RangeSizer(2000, 10_000)
    start = 0
    while start < 20_000:
        width = sizer.take()
        sizer.succeeded(width, round(0.05 * width))
        start += width
    taken = [sizer.take() for _ in range(4)]  # the window's ranges, all into the busy stretch
    for width in taken:
        sizer.refused(start, start + width - 1, (start, start + 1), max_results=1000)
        start += width
    assert sizer.limit is None

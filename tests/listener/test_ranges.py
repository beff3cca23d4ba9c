"""Range sizing is pure: table-driven unit tests."""

from __future__ import annotations

import pytest

from exporter.listener.ranges import GROW_AFTER_SUCCESSES, PROBE_AFTER_SUCCESSES, RangeSizer


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

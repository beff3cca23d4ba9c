"""Range sizing is pure: table-driven unit tests."""

from __future__ import annotations

import pytest

from exporter.listener.ranges import GROW_AFTER_SUCCESSES, RangeSizer


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
    sizer = RangeSizer(1000, 2000)
    sizer.refused(0, 999, None)
    assert sizer.size == 500
    sizes = []
    for _ in range(6 * GROW_AFTER_SUCCESSES):
        sizer.succeeded(sizer.size)
        sizes.append(sizer.size)
    assert sizes[GROW_AFTER_SUCCESSES - 2] == 500  # not after a single success
    assert sizes[GROW_AFTER_SUCCESSES - 1] == 750
    assert sizes == sorted(sizes)
    assert sizes[-1] == 2000


def test_short_tail_ranges_do_not_count_towards_growth() -> None:
    sizer = RangeSizer(100, 1000)
    for _ in range(10):
        sizer.succeeded(3)
    assert sizer.size == 100

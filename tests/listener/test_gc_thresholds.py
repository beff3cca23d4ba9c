"""The listener's process collects garbage less often than CPython's default (gc_thresholds.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from exporter.listener.gc_thresholds import LISTENER_GC_THRESHOLDS, raise_gc_thresholds


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
def test_the_defaults_are_raised_and_the_previous_ones_returned() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    assert raise_gc_thresholds() == (700, 10, 10)
    assert gc.get_threshold() == LISTENER_GC_THRESHOLDS


@pytest.mark.usefixtures("thresholds")
def test_a_threshold_set_higher_already_is_kept() -> None:
    gc.set_threshold(100_000, 5, 50)
    raise_gc_thresholds()
    assert gc.get_threshold() == (100_000, LISTENER_GC_THRESHOLDS[1], 50)

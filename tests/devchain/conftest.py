"""Fixtures for the dev-chain tooling tests: a fresh anvil with the three test contracts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.demo.devchain import DevChain


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[DevChain]:
    with DevChain.start(tmp_path / "anvil") as started:
        yield started

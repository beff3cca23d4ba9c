"""Pure parts of reorg detection: parent-hash links, recent-header trimming, the ancestor walk."""

from __future__ import annotations

import pytest

from exporter.listener.chain import ChainMovedError, check_links, find_common_ancestor, trim_recent
from exporter.store.base import BlockRef, Checkpoint


def _chain(first: int, last: int, fork: str = "a", fork_from: int | None = None) -> list[BlockRef]:
    """Headers first..last whose hashes change to branch ``fork`` from ``fork_from`` on."""

    def h(n: int) -> str:
        forked = fork_from is not None and n >= fork_from
        return f"0x{'b' + fork if forked else 'aa'}{n:062x}"

    return [BlockRef(n, h(n), h(n - 1)) for n in range(first, last + 1)]


def test_linked_headers_pass_and_a_broken_link_is_a_moved_chain() -> None:
    headers = _chain(10, 20)
    check_links(headers, Checkpoint(9, headers[0].parent_hash))
    with pytest.raises(ChainMovedError, match="block 10 does not follow block 9"):
        check_links(headers, Checkpoint(9, "0xother"))
    broken = [*headers[:5], BlockRef(15, "0xnew", "0xnot-14"), *headers[6:]]
    with pytest.raises(ChainMovedError, match="block 15"):
        check_links(broken)
    check_links(headers[3:], Checkpoint(9, "0xanything"))  # not adjacent: nothing to compare
    check_links(headers, Checkpoint(9, ""))  # no stored hash yet (fresh start)


def test_trim_recent_keeps_the_window_ascending_without_duplicates() -> None:
    refs = _chain(1, 100)
    kept = trim_recent([*refs[50:], *refs[:60]], newest=100, keep_depth=10)
    assert [r.number for r in kept] == list(range(90, 101))


@pytest.mark.parametrize(
    ("depth", "max_depth", "ancestor"), [(1, 64, 99), (5, 64, 95), (30, 64, 70), (4, 4, 96), (5, 4, None)]
)
def test_ancestor_walk(depth: int, max_depth: int, ancestor: int | None) -> None:
    ours = _chain(1, 100)
    fork_from = 101 - depth
    theirs = {ref.number: ref for ref in _chain(1, 100, fork="z", fork_from=fork_from)}
    calls: list[int] = []

    def header(number: int) -> BlockRef | None:
        calls.append(number)
        return theirs.get(number)

    checkpoint = Checkpoint(100, ours[-1].hash, trim_recent(ours, 100, max_depth))
    found = find_common_ancestor(header, checkpoint, head=100, max_depth=max_depth)
    assert (found.number if found else None) == ancestor
    assert len(calls) <= max_depth + 1  # never walks further back than allowed


def test_ancestor_walk_skips_blocks_above_a_shorter_chain() -> None:
    ours = _chain(1, 100)
    theirs = {ref.number: ref for ref in _chain(1, 95)}
    checkpoint = Checkpoint(100, ours[-1].hash, trim_recent(ours, 100, 64))
    found = find_common_ancestor(theirs.get, checkpoint, head=95, max_depth=64)
    assert found is not None and found.number == 95

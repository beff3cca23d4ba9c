"""``blocktrust-exporter checkpoint show | rewind --to N`` on both backends, against a real anvil chain:
a rewind then one poll re-ingests exactly the rewound range; bad requests are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store
from tests.listener.conftest import chain_keys, listener_settings, query, stored_checkpoint, stored_keys


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["checkpoint", *args, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_file(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", store_url)
    path = tmp_path / "config.yaml"
    path.write_text("log:\n  level: warning\n")
    return path


def test_rewind_then_one_poll_reingests_exactly_the_rewound_range(
    chain: DevChain,
    contracts_path: Path,
    store: Store,
    store_url: str,
    metrics: Metrics,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chain.emit_each_event()
    chain.mine(3)
    chain.emit_each_event()
    settings = listener_settings(chain.rpc_url, contracts_path)
    listener = Listener(settings, store, metrics, FakeClock())
    try:
        listener.poll_once()
        # Refused while a listener holds the leader lock: exit 1, one line, nothing changed.
        code, _, err = _run(capsys, config_file, "rewind", "--to", "3")
        assert code == 1 and err.count("\n") == 1 and "leader lock" in err, err
    finally:
        listener.close()
    head = stored_checkpoint(store_url)
    assert head == chain.head()
    before = stored_keys(store_url)
    ids_before = query(store_url, "SELECT id, tx_hash, log_index FROM events ORDER BY id")

    code, out, _ = _run(capsys, config_file, "show", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["block_number"] == head
    assert shown["block_hash"] == chain.rpc("eth_getBlockByNumber", [hex(head), False])["hash"]
    assert shown["recent"][-1]["number"] == head and len(shown["recent"]) == head + 1  # every block so far
    code, out, _ = _run(capsys, config_file, "show")
    assert code == 0 and f"listener checkpoint: block {head} {shown['block_hash']}" in out

    to_block = sorted({k[2] for k in before})[4]  # inside the second burst of events
    code, out, _ = _run(capsys, config_file, "rewind", "--to", str(to_block))
    rewound = [k for k in before if k[2] > to_block]
    assert code == 0 and f"{len(rewound)} events deleted" in out, out
    assert stored_checkpoint(store_url) == to_block
    assert stored_keys(store_url) == [k for k in before if k[2] <= to_block]
    kept_ids = [row for row in ids_before if (row[1], row[2]) not in {k[:2] for k in rewound}]
    assert query(store_url, "SELECT id, tx_hash, log_index FROM events ORDER BY id") == kept_ids
    _, out, _ = _run(capsys, config_file, "show", "--json")
    assert all(ref["number"] <= to_block for ref in json.loads(out)["recent"])

    again = Listener(settings, store, metrics, FakeClock())
    try:
        outcome = again.poll_once()
    finally:
        again.close()
    assert outcome.events == len(rewound) > 0  # exactly the rewound range, nothing before it again
    assert outcome.reorgs == 0 and outcome.processed_block == head
    assert stored_keys(store_url) == chain_keys(chain) == before


@pytest.mark.parametrize(
    ("to_block", "expected"),
    [("-1", "expected a block number >= 0"), ("999999", "is above the checkpoint (block ")],
)
def test_a_rewind_below_zero_or_above_the_checkpoint_is_one_line_and_exit_2(
    chain: DevChain,
    contracts_path: Path,
    store: Store,
    store_url: str,
    metrics: Metrics,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    to_block: str,
    expected: str,
) -> None:
    code, _, err = _run(capsys, config_file, "rewind", "--to", to_block)
    assert code == 2 and err.count("\n") == 1, err  # no checkpoint yet: refused too
    chain.emit_each_event()
    listener = Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, FakeClock())
    try:
        listener.poll_once()
    finally:
        listener.close()
    stored = stored_keys(store_url)
    code, _, err = _run(capsys, config_file, "rewind", "--to", to_block)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert stored_keys(store_url) == stored and stored_checkpoint(store_url) == chain.head()


def test_a_rewind_on_a_store_never_migrated_is_no_checkpoint_and_creates_nothing(
    config_file: Path,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A mistyped sqlite_path (or an empty database) has no checkpoint: exit 2, one line, and no new
    SQLite file, folder or lock file beside it (the rewind used to create them, then exit 1)."""
    if store_url.startswith("sqlite:///"):
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'typo' / 'blocktrust.db'}")
    code, out, err = _run(capsys, config_file, "rewind", "--to", "5")
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and "no listener checkpoint to rewind" in err, err
    assert not (tmp_path / "typo").exists()


def test_show_says_the_audit_has_re_read_nothing_while_its_cursor_is_before_block_0() -> None:
    # A listener that starts at block 0 sets the audit's cursor to -1 ("up to block -1" meant nothing).
    from exporter.listener.checkpoints import CheckpointView
    from exporter.store.base import Checkpoint

    fresh = CheckpointView(Checkpoint(45, "0xab"), Checkpoint(-1, "")).as_text()
    assert "block -1" not in fresh
    assert "audit: nothing re-read yet (it starts at block 0)" in fresh
    done = CheckpointView(Checkpoint(45, "0xab"), Checkpoint(12, "0xcd")).as_text()
    assert "audit: re-read up to block 12" in done

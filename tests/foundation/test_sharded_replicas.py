"""checks.run_on: shard with three exporter processes on one PostgreSQL database.

Every check runs exactly once per round across the replicas (counted in monitor_metrics), each
replica reports only its share, and when one process is killed (SIGKILL: no goodbye) its share moves
to the survivors within one interval.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.support.exporter_process import ExporterProcess
from tests.support.http_receiver import HttpReceiver

INTERVAL = 2.0  # seconds: heartbeats every 0.5 s, a silent replica expires after 1.5 s
ROUNDS = 4  # rounds per measured window
CHECKS = [f"shard.{i}" for i in range(9)]


def _counts(url: str, since: datetime, until: datetime) -> Counter[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT check_name, COUNT(*) FROM monitor_metrics WHERE ts >= %s AND ts < %s GROUP BY check_name",
            (since.replace(tzinfo=None), until.replace(tzinfo=None)),
        )
        return Counter({str(name): int(count) for name, count in cur.fetchall()})


def _replicas(url: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT replica_id FROM exporter_replicas ORDER BY replica_id")
        return [str(row[0]) for row in cur.fetchall()]


def _owned(proc: ExporterProcess) -> set[str]:
    """The checks whose blocktrust_check_up this replica reports now."""
    return {name for name in CHECKS if f'blocktrust_check_up{{check="{name}"}}' in proc.metrics()}


def _wait(what: str, probe: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _measure(url: str) -> Counter[str]:
    """The rows of each check over the next ROUNDS intervals (read once the writers flushed them)."""
    since = datetime.now(UTC)
    time.sleep(ROUNDS * INTERVAL)
    until = datetime.now(UTC)
    time.sleep(INTERVAL)  # rows are written off the check thread
    return _counts(url, since, until)


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[ExporterProcess]]:
    target = HttpReceiver()
    items = [{"name": name, "url": target.url + "/" + name} for name in CHECKS]
    checks = {"interval": f"{INTERVAL:g}s", "timeout": "1s", "include_defaults": False, "items": items}
    config = {"checks": {**checks, "run_on": "shard"}, "listener": {"enabled": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    procs = [
        ExporterProcess(["run", "--config", str(path)], env={"DATABASE_URL": postgres_url}, cwd=tmp_path)
        for _ in range(3)
    ]
    try:
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                proc.stop()
        target.close()


@pytest.mark.slow
def test_three_sharding_replicas_run_each_check_once_per_round_and_take_over_a_killed_ones_share(
    replicas: list[ExporterProcess], postgres_url: str
) -> None:
    _wait("three live replicas", lambda: len(_replicas(postgres_url)) == 3)
    time.sleep(INTERVAL)  # every replica has started a round knowing all three

    counts = _measure(postgres_url)
    assert set(counts) == set(CHECKS), counts
    assert all(ROUNDS - 1 <= counts[name] <= ROUNDS + 1 for name in CHECKS), counts  # not 0, not 2x
    shares = [_owned(proc) for proc in replicas]
    assert sorted(name for share in shares for name in share) == sorted(CHECKS)  # disjoint, complete
    # The work is spread (which replica gets what depends on their ids: with 9 checks, one replica
    # taking all of them has odds of 1 in 6561).
    assert sum(1 for share in shares if share) >= 2, shares

    victim = next(proc for proc, share in zip(replicas, shares, strict=True) if share)
    moved = shares[replicas.index(victim)]
    victim.proc.kill()  # no goodbye: its row expires
    victim.proc.wait()
    time.sleep(INTERVAL)  # within one interval the survivors own its share ...

    counts = _measure(postgres_url)  # ... and from then on run it once per round
    assert all(ROUNDS - 1 <= counts[name] <= ROUNDS + 1 for name in CHECKS), (moved, counts)
    survivors = [proc for proc in replicas if proc is not victim]
    assert sorted(name for proc in survivors for name in _owned(proc)) == sorted(CHECKS)
    assert len(_replicas(postgres_url)) == 2

"""checks.run_on: which checks a replica runs when several exporters share one store (exporter/replicas.py).

The hashing is pure; membership and the leader lock go through a real store, on both backends (two
``Placement``s on one database stand for two processes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import CheckSpec, Config
from exporter.metrics import Metrics
from exporter.probes.runner import resolve_checks
from exporter.replicas import Placement, rendezvous_owner
from exporter.store import Store, StoreError, open_store

NAMES = [f"check.{i}" for i in range(60)]
INTERVAL = 60.0


def _specs(names: list[str]) -> list[CheckSpec]:
    items = [{"name": name, "url": "https://example.org/"} for name in names]
    config = Config.model_validate({"checks": {"include_defaults": False, "items": items}})
    return resolve_checks(config)


SPECS = _specs(NAMES)


def test_rendezvous_is_stable_and_spreads_the_checks() -> None:
    replicas = ["pod-a:1", "pod-b:1", "pod-c:1"]
    owners = {name: rendezvous_owner(name, replicas) for name in NAMES}
    assert owners == {name: rendezvous_owner(name, list(reversed(replicas))) for name in NAMES}  # order-free
    shares = Counter(owners.values())
    assert set(shares) == set(replicas)
    assert min(shares.values()) >= 10  # 60 checks over 3 replicas: none is starved


def test_losing_a_replica_moves_only_its_share() -> None:
    replicas = ["pod-a:1", "pod-b:1", "pod-c:1"]
    before = {name: rendezvous_owner(name, replicas) for name in NAMES}
    after = {name: rendezvous_owner(name, replicas[:2]) for name in NAMES}
    moved = {name for name in NAMES if before[name] != after[name]}
    assert moved == {name for name in NAMES if before[name] == "pod-c:1"}
    added = {name: rendezvous_owner(name, [*replicas, "pod-d:1"]) for name in NAMES}
    assert {name for name in NAMES if added[name] != before[name]} == {
        name for name in NAMES if added[name] == "pod-d:1"
    }


def test_rendezvous_needs_a_replica() -> None:
    with pytest.raises(ValueError, match="no replicas"):
        rendezvous_owner("api.health", [])


@pytest.fixture
def second_store(store_url: str, store: Store) -> Iterator[Store]:
    """Another connection to the same (migrated) database: a second process."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def _names(specs: list[CheckSpec]) -> set[str]:
    return {spec.name for spec in specs}


def test_shard_replicas_split_the_checks_without_overlap_and_take_over_an_expired_one(
    store: Store, second_store: Store
) -> None:
    clock = FakeClock()
    a = Placement("shard", store, clock, INTERVAL, replica_id="pod-a:1")
    b = Placement("shard", second_store, clock, INTERVAL, replica_id="pod-b:1")
    a.heartbeat()
    assert _names(a.assign(SPECS)) == set(NAMES)  # alone so far
    b.heartbeat()
    a.heartbeat()
    mine, theirs = _names(a.assign(SPECS)), _names(b.assign(SPECS))
    assert mine and theirs and not mine & theirs and mine | theirs == set(NAMES)

    # b stops renewing (killed): its row lives 3/4 of an interval; a's heartbeats (every quarter)
    # see it gone within one interval, and a owns everything.
    for _ in range(3):
        clock.advance(INTERVAL / 4)
        a.heartbeat()
    assert _names(a.assign(SPECS)) == mine  # still live at exactly 3/4
    for _ in range(1):
        clock.advance(INTERVAL / 4)
        a.heartbeat()
    assert _names(a.assign(SPECS)) == set(NAMES)
    assert store.replica_heartbeat("pod-a:1", clock.now(), clock.now() + timedelta(seconds=45)) == ["pod-a:1"]


def test_a_replica_that_leaves_hands_over_at_once(store: Store, second_store: Store) -> None:
    clock = FakeClock()
    a = Placement("shard", store, clock, INTERVAL, replica_id="pod-a:1")
    b = Placement("shard", second_store, clock, INTERVAL, replica_id="pod-b:1")
    b.heartbeat()
    a.heartbeat()
    assert _names(a.assign(SPECS)) != set(NAMES)
    b.leave()
    a.heartbeat()  # no time passed: b's row is gone, not expired
    assert _names(a.assign(SPECS)) == set(NAMES)


def test_leader_mode_runs_the_checks_on_one_replica_and_fails_over(store: Store, second_store: Store) -> None:
    clock = FakeClock()
    a = Placement("leader", store, clock, INTERVAL, replica_id="pod-a:1")
    b = Placement("leader", second_store, clock, INTERVAL, replica_id="pod-b:1")
    a.heartbeat()
    b.heartbeat()
    assert _names(a.assign(SPECS)) == set(NAMES)
    assert b.assign(SPECS) == []
    a.leave()
    b.heartbeat()
    a.heartbeat()
    assert _names(b.assign(SPECS)) == set(NAMES)
    assert a.assign(SPECS) == []


def test_all_mode_runs_everything_everywhere(store: Store, second_store: Store) -> None:
    clock = FakeClock()
    for placement in (
        Placement("all", store, clock, INTERVAL, replica_id="pod-a:1"),
        Placement("all", second_store, clock, INTERVAL, replica_id="pod-b:1"),
    ):
        placement.heartbeat()
        assert _names(placement.assign(SPECS)) == set(NAMES)


class _DownStore:
    """A store that is unreachable: every call raises StoreError."""

    def __getattr__(self, name: str) -> object:
        def fail(*_args: object) -> object:
            raise StoreError("connection refused")

        return fail


@pytest.mark.parametrize("run_on", ["leader", "shard"])
def test_a_replica_that_never_reached_the_store_runs_every_check(run_on: str) -> None:
    placement = Placement(run_on, _DownStore(), FakeClock(), INTERVAL, replica_id="pod-a:1")  # type: ignore[arg-type]
    placement.heartbeat()  # logged, not raised
    assert _names(placement.assign(SPECS)) == set(NAMES)
    placement.leave()  # logged, not raised


def test_checks_handed_to_another_replica_drop_their_gauges(store: Store, second_store: Store) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    clock = FakeClock()

    def forget(names: Sequence[str]) -> None:
        for name in names:
            metrics.forget_check(name)

    a = Placement("shard", store, clock, INTERVAL, replica_id="pod-a:1", on_dropped=forget)
    a.heartbeat()
    for spec in a.assign(SPECS):
        metrics.record_check(spec.name, True, 0.1, 0.0)
    Placement("shard", second_store, clock, INTERVAL, replica_id="pod-b:1").heartbeat()
    a.heartbeat()
    kept = _names(a.assign(SPECS))
    reported = {name for name in NAMES if registry.get_sample_value("blocktrust_check_up", {"check": name}) is not None}
    assert reported == kept != set(NAMES)
    assert registry.get_sample_value("blocktrust_check_runs_total", {"check": NAMES[0], "result": "success"}) == 1


class _FlockLikeStore:
    """The SQLite leader lock's shape: "already held?", then a non-blocking flock, then "held". A second
    call inside that window (another thread of the same process) meets the flock and is refused."""

    def __init__(self) -> None:
        import threading

        self.held = False
        self.flocked = False
        self.in_window = threading.Event()

    def try_acquire_leader(self, name: str) -> bool:
        import time

        if self.held:
            return True
        if self.flocked:
            return False  # our own first call holds the flock on another file handle
        self.flocked = True
        self.in_window.set()
        time.sleep(0.3)
        self.held = True
        return True


def test_the_first_round_does_not_lose_the_leader_lock_to_the_heartbeat_job_of_its_own_process() -> None:
    # The first round asks the store itself while the scheduler's "replicas" job may be asking too: the
    # loser of that in-process race was told "another replica runs the checks" and ran nothing.
    import threading
    from typing import cast

    store = _FlockLikeStore()
    placement = Placement("leader", cast(Store, store), FakeClock(), INTERVAL, replica_id="pod-a:1")
    job = threading.Thread(target=placement.heartbeat)
    job.start()
    assert store.in_window.wait(5)
    chosen = placement.assign(SPECS)
    job.join()
    assert [spec.name for spec in chosen] == NAMES

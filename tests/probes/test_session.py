"""The JWT session over many rounds: logins follow the token lifetime, not the number of checks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from exporter.config.checks import default_checks

INTERVAL = 60.0
MARGIN = 60.0


@pytest.mark.parametrize("lifetime", [3600.0, 600.0])
def test_100_rounds_log_in_once_per_token_lifetime(harness: Any, lifetime: float) -> None:
    harness.sim.token_lifetime = lifetime
    auth_checks = [spec for spec in default_checks() if spec.auth]
    config = harness.config(auth_checks, token_refresh_margin=MARGIN)
    checks = harness.round(config)
    for _ in range(100):
        results = checks.run_once()
        assert all(result.ok for result in results), [r.details for r in results if not r.ok]
        harness.clock.advance(INTERVAL)
    # A token is renewed MARGIN seconds before it expires: one login per (lifetime - margin).
    expected = math.ceil(100 * INTERVAL / (lifetime - MARGIN))
    assert harness.sim.logins == expected  # 2 for a 1 h token, 12 for 10 min; never one per check
    assert harness.sim.failed_logins == 0
    assert harness.sample("blocktrust_check_runs_total", {"check": "api.events", "result": "success"}) == 100


def test_a_token_shorter_than_the_margin_is_renewed_half_way(harness: Any) -> None:
    harness.sim.token_lifetime = 100.0  # shorter than twice the 60 s margin
    checks = harness.only("api.stats")
    for _ in range(10):
        assert checks.run_once()[0].ok
        harness.clock.advance(40.0)
    # renewed every 50 s (half the lifetime): rounds at 0, 40, 80 ... 360 s -> logins at 0, 80, 160, 240, 320
    assert harness.sim.logins == 5
    assert harness.sim.requests["/api/explorer/stats"] == 10  # no 401 retries were needed

"""``blocktrust-exporter report`` end to end: a real process reading a real store (wall-clock
window, so the rows are placed relative to now)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exporter.store import open_store
from tests.alerting.kit import result


def test_report_subcommand_prints_the_numbers_of_the_store(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    now = datetime.now(UTC)
    store.write_results(
        [result("api.health", True, now - timedelta(minutes=m), latency_ms=100 + m) for m in range(1, 4)]
        + [result("api.health", False, now - timedelta(minutes=5))]
        + [result("api.health", False, now - timedelta(hours=30))]  # outside --window 24h
    )
    store.close()
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_", "API_", "JWT_", "POLYGON_", "SLO_"))}
    env["DATABASE_URL"] = sqlite_url
    command = Path(sys.executable).with_name("blocktrust-exporter")
    done = subprocess.run(
        [str(command), "report", "--config", str(config), "--window", "24h", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = json.loads(done.stdout)["checks"]
    assert (line["check"], line["runs"], line["failures"], line["uptime_percent"]) == ("api.health", 4, 1, 75.0)
    # Successful latencies 101, 102, 103: position 0.99 * 2 = 1.98 -> 102 + 0.98 = 102.98
    assert abs(line["p99_latency_ms"] - 102.98) < 1e-9

"""``blocktrust-exporter report`` end to end: a real process reading a real store (wall-clock
window, so the rows are placed relative to now)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

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
    done = _report(sqlite_url, tmp_path, "--window", "24h", "--format", "json")
    assert done.returncode == 0, done.stderr
    [line] = json.loads(done.stdout)["checks"]
    assert (line["check"], line["runs"], line["failures"], line["uptime_percent"]) == ("api.health", 4, 1, 75.0)
    # Successful latencies 101, 102, 103: position 0.99 * 2 = 1.98 -> 102 + 0.98 = 102.98
    assert abs(line["p99_latency_ms"] - 102.98) < 1e-9


def _report(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = cwd / "empty.yaml"
    config.write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_", "API_", "JWT_", "POLYGON_", "SLO_"))}
    env["DATABASE_URL"] = database_url
    command = Path(sys.executable).with_name("blocktrust-exporter")
    return subprocess.run(
        [str(command), "report", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def _tables(postgres_url: str) -> list[str]:
    with closing(psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return [row[0] for row in cur.fetchall()]


@pytest.mark.parametrize(
    "store", ["no sqlite file", "empty sqlite file", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("output", ["table", "json"])
def test_report_on_a_store_never_migrated_is_empty_and_creates_nothing(
    store: str, output: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Nothing recorded yet is an empty report (exit 0) with one line saying why, not a "no such
    table" failure; and a command that reads creates nothing: no SQLite file or folder, no schema."""
    if store == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        path = tmp_path / "var" / "store.db"
        if store == "empty sqlite file":
            path.parent.mkdir()
            path.touch()
        url = f"sqlite:///{path}"
    done = _report(url, tmp_path, "--format", output)
    assert done.returncode == 0, done.stderr
    if output == "json":
        assert json.loads(done.stdout)["checks"] == []
    else:
        assert done.stdout.rstrip().endswith("(no check results in the window)")
    [line] = done.stderr.splitlines()
    assert "nothing recorded yet" in line and "no schema yet" in line, line
    assert "Traceback" not in done.stderr
    if store == "postgresql":
        assert _tables(url) == []
    elif store == "empty sqlite file":
        assert path.stat().st_size == 0
    else:
        assert not path.parent.exists()

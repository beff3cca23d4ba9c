"""Grafana provisioning and dashboards: valid JSON, unique panel ids, data source uids that exist,
and every SQL panel query run on real PostgreSQL with Grafana's macros expanded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
import yaml

from exporter.store import open_store
from tests.bundle.grafana import (
    DASHBOARDS,
    REPO,
    expand_postgres_macros,
    load,
    provisioned_datasources,
    run_sql_panels,
    variable_queries,
)

CHECKS = ("api.health", "api.events", "synthetic.hash")


def test_both_dashboards_are_shipped() -> None:
    assert {p.name for p in DASHBOARDS} == {"blocktrust-slo.json", "blocktrust-postgres.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_json_with_unique_panel_ids_and_uid(path: Path) -> None:
    board = json.loads(path.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}: {ids}"
    assert board["uid"] and len(board["uid"]) <= 40
    for panel in board["panels"]:
        assert panel["targets"], f"panel {panel['id']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


def test_dashboard_uids_are_unique_and_the_alert_links_point_at_one() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
    rules = (REPO / "prometheus" / "rules" / "slo.yml").read_text()
    assert "/d/blocktrust-slo/" in rules and "blocktrust-slo" in uids


def _datasource_refs(node: object) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict):
            yield ref
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_datasource_reference_exists_in_provisioning(path: Path) -> None:
    provisioned = provisioned_datasources()
    refs = list(_datasource_refs(load(path)))
    assert refs
    for ref in refs:
        assert ref["uid"] in provisioned, f"{path.name}: unknown data source uid {ref['uid']}"
        assert ref["type"] == provisioned[ref["uid"]], f"{path.name}: {ref} vs provisioning"


def test_provisioning_files_are_consistent_with_compose() -> None:
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/blocktrust.yml").read_text())
    assert {d["uid"] for d in datasources["datasources"]} == {"blocktrust-prometheus", "blocktrust-postgres"}
    postgres = next(d for d in datasources["datasources"] if d["uid"] == "blocktrust-postgres")
    assert postgres["secureJsonData"]["password"].startswith("$"), "the password must come from the environment"
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/blocktrust.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers['providers'][0]['options']['path']}:ro" in mounts
    grafana_env = compose["services"]["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    for var in ("BLOCKTRUST_PG_USER", "BLOCKTRUST_PG_DATABASE", "BLOCKTRUST_PG_PASSWORD"):
        assert var in grafana_env


# ----------------------------------------------------------------------------- SQL on PostgreSQL
def seed_rows(database_url: str, now: datetime) -> None:
    """A few minutes of check results (one failure), a heartbeat, an incident and an event."""
    store = open_store(database_url)
    store.migrate()
    store.close()
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        for minute in range(10):
            for check in CHECKS:
                ok = not (check == "api.health" and minute == 3)
                cur.execute(
                    "INSERT INTO monitor_metrics (ts, check_name, ok, latency_ms, details) VALUES (%s, %s, %s, %s, %s)",
                    (naive - timedelta(minutes=minute), check, ok, 100 + minute * 10, json.dumps({"status": 200})),
                )
        cur.execute(
            "INSERT INTO monitor_metrics (ts, check_name, ok, latency_ms, details)"
            " VALUES (%s, 'listener.tick', TRUE, 0, %s)",
            (naive - timedelta(seconds=20), json.dumps({"processed_block": 10, "head_block": 12, "blocks_behind": 2})),
        )
        cur.execute(
            "INSERT INTO monitor_incidents (opened_at, severity, title, detail, check_name)"
            " VALUES (%s, 'crit', %s, %s, %s)",
            (naive - timedelta(minutes=3), "API /health unavailable", "Status code: 503", "api.health"),
        )
        cur.execute(
            'INSERT INTO events (type, data, "timestamp") VALUES (%s, %s, %s)',
            ("Minted", json.dumps({"blockNumber": 1, "args": {"tokenId": "1"}}), naive - timedelta(minutes=2)),
        )


def test_every_sql_panel_runs_on_postgresql_and_returns_rows(postgres_url: str) -> None:
    now = datetime.now(UTC)
    seed_rows(postgres_url, now)
    rows = run_sql_panels(postgres_url, CHECKS, now - timedelta(hours=1), now + timedelta(minutes=1))
    assert rows, "no SQL panel found"
    empty = [key for key, count in rows.items() if count == 0]
    assert not empty, f"SQL panels without rows: {empty} (all: {rows})"


def test_the_postgresql_check_variable_lists_the_checks(postgres_url: str) -> None:
    seed_rows(postgres_url, datetime.now(UTC))
    queries = list(variable_queries("blocktrust-postgres"))
    assert queries
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        for _, query in queries:
            cur.execute(query)
            assert sorted(row[0] for row in cur.fetchall()) == sorted(CHECKS)


def test_sql_panels_honour_the_time_range(postgres_url: str) -> None:
    """Far in the past the time-filtered panels are empty: the macros really filter."""
    now = datetime.now(UTC)
    seed_rows(postgres_url, now)
    rows = run_sql_panels(postgres_url, CHECKS, now - timedelta(days=30), now - timedelta(days=29))
    assert rows["blocktrust-postgres.json#1"] == 0
    assert rows["blocktrust-postgres.json#8"] == 0


def test_macro_expansion_matches_grafanas_documented_forms() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    end = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert expand_postgres_macros("WHERE $__timeFilter(ts)", start, end) == (
        "WHERE ts BETWEEN '2026-01-01T12:00:00Z' AND '2026-01-01T13:00:00Z'"
    )
    assert expand_postgres_macros("SELECT $__timeGroup(ts, '5m') AS time", start, end) == (
        "SELECT floor(extract(epoch from ts)/300)*300 AS time"
    )
    assert expand_postgres_macros("SELECT $__timeGroup(ts, 1m), x", start, end) == (
        'SELECT floor(extract(epoch from ts)/60)*60 AS "time", x'
    )
    assert expand_postgres_macros("SELECT $__timeGroupAlias(ts, 1h)", start, end) == (
        'SELECT floor(extract(epoch from ts)/3600)*3600 AS "time"'
    )


def test_every_exporter_metric_a_dashboard_queries_is_one_the_exporter_exposes() -> None:
    """A misspelt metric name only shows as an empty panel; each blocktrust_* name in a PromQL query
    must be a sample name of the exporter's registry (suffixes _total, _bucket, ... included)."""
    from prometheus_client import CollectorRegistry

    from exporter.metrics import Metrics
    from tests.bundle.grafana import targets

    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    metrics.heartbeat_seen(0.0)  # blocktrust_listener_lag_seconds is collected once a heartbeat was seen
    exposed = {sample_name for family in registry.collect() for sample_name in _sample_names(family)}
    used = {
        name
        for target in targets()
        if target.datasource_uid == "blocktrust-prometheus"
        for name in re.findall(r"(?<![:\w])blocktrust_[a-z_]+(?![:\w])", target.query)  # not recording rules
    }
    assert used, "no exporter metric found in the dashboards"
    assert not used - exposed, f"not exposed by the exporter: {sorted(used - exposed)}"


def _sample_names(family: object) -> set[str]:
    name = family.name  # type: ignore[attr-defined]
    kind = family.type  # type: ignore[attr-defined]
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    return {name, *(name + suffix for suffix in suffixes.get(kind, ()))}

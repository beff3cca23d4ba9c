"""The status document (``/api/v1/status``) and page (``/``), served over real HTTP from a store on
PostgreSQL and SQLite: the JSON validates against ``docs/status.schema.json`` and says what the
store holds (states, 24 h history buckets, SLO numbers, incidents, listener progress, events per
type); the page escapes what servers send; an unreachable store is a 503, not a traceback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import HEARTBEAT_CHECK, CheckSpec, Config
from exporter.probes.runner import resolve_checks
from exporter.runtime import build_runtime, status_builder
from exporter.server import HttpServer
from exporter.status import StatusBuilder, render_page, status_routes
from exporter.status.model import HISTORY_BUCKETS
from exporter.store import Checkpoint, CheckResult, EventRecord, Store, StoreError

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "status.schema.json").read_text())
# Real time, not a fixed date: the events table stamps rows with the database's NOW().
NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE = '<script>alert("x")</script>'


def result(name: str, ok: bool, at: datetime, **details: Any) -> CheckResult:
    return CheckResult(name, ok, int(details.pop("latency_ms", 20)), details, at, uuid.uuid4().hex)


def validate(document: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)


def populate(store: Store) -> None:
    rows = []
    for minutes in range(0, 24 * 60, 10):  # api.health: every 10 min for a day, all good
        rows.append(result("api.health", True, NOW - timedelta(minutes=minutes), latency_ms=40 + minutes % 7))
    for minutes in range(0, 120, 10):  # api.stats: failing for the last 30 minutes
        ok = minutes >= 30
        rows.append(
            result("api.stats", ok, NOW - timedelta(minutes=minutes, seconds=5), status_code=500 if not ok else 200)
        )
    rows[-12] = result("api.stats", False, NOW - timedelta(seconds=5), status_code=500, error="status", reason=HOSTILE)
    rows.append(result("api.events", True, NOW - timedelta(hours=2)))  # stale: its last run is old
    rows.append(result("api.health", False, NOW - timedelta(days=3)))  # outside every window
    store.write_results(rows)
    events = [EventRecord("Minted", {"n": n}, 100 + n, f"0x{n:064x}", f"0x{n:064x}", 0) for n in range(3)] + [
        EventRecord("ProofStored", {"n": 9}, 105, f"0x{9:064x}", f"0x{9:064x}", 1)
    ]
    heartbeat = result(
        HEARTBEAT_CHECK, True, NOW - timedelta(seconds=20), processed_block=105, head_block=1_105, blocks_behind=1_000
    )
    store.commit_blocks("main", events, Checkpoint(105, f"0x{9:064x}"), heartbeat)
    store.open_incident("api.stats", "crit", "API /stats unavailable", "Status code: 500", NOW - timedelta(minutes=25))
    store.open_incident(HOSTILE, "warn", HOSTILE, HOSTILE, NOW - timedelta(minutes=3))


def builder_for(store: Store, **config: Any) -> StatusBuilder:
    checks = [
        CheckSpec(name="api.health", path="/api/health", severity="crit"),
        CheckSpec(name="api.stats", path="/api/explorer/stats", severity="warn"),
        CheckSpec(name="api.events", path="/api/explorer/events"),
        CheckSpec(name="synthetic.hash", kind="synthetic.hash", path="/api/signature/hash-file"),
    ]
    return StatusBuilder(
        Config.model_validate(config), store, FakeClock(NOW), checks=checks, version="9.9.9", reorgs=lambda: 3.0
    )


@pytest.fixture
def served(store: Store) -> Iterator[str]:
    populate(store)
    builder = builder_for(
        store, status_page={"dashboards": [{"title": "SLO", "url": "https://grafana.example.org/d/slo"}]}
    )
    server = HttpServer(
        "127.0.0.1:0", CollectorRegistry(), lambda: (True, "ready"), extra_routes=status_routes(builder)
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_status_json_validates_against_the_schema_and_reports_the_store(served: str) -> None:
    answer = requests.get(served + "/api/v1/status", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    document = answer.json()
    validate(document)

    checks = {c["name"]: c for c in document["checks"]}
    assert list(checks) == ["api.health", "api.stats", "api.events", "synthetic.hash"]  # configured order
    assert {name: c["state"] for name, c in checks.items()} == {
        "api.health": "up",
        "api.stats": "down",
        "api.events": "stale",
        "synthetic.hash": "pending",
    }
    assert document["summary"] == {"checks": 4, "up": 1, "down": 1, "stale": 1, "pending": 1, "open_incidents": 2}
    stats = checks["api.stats"]
    assert (stats["status_code"], stats["error"], stats["reason"], stats["severity"]) == (
        500,
        "status",
        HOSTILE,
        "warn",
    )
    for check in checks.values():
        assert len(check["history"]["runs"]) == len(check["history"]["failures"]) == HISTORY_BUCKETS
    since = datetime.fromisoformat(document["history_window"]["since"])
    in_window = [m for m in range(0, 24 * 60, 10) if NOW - timedelta(minutes=m) >= since]
    assert 140 <= len(in_window) <= 144  # the window ends at the next half hour
    assert sum(checks["api.health"]["history"]["runs"]) == len(in_window)  # the row 3 days old is outside
    assert sum(checks["api.health"]["history"]["failures"]) == 0
    assert sum(checks["api.stats"]["history"]["failures"]) == 3
    assert checks["api.stats"]["history"]["failures"][-1] + checks["api.stats"]["history"]["failures"][-2] == 3
    assert checks["api.health"]["slo"]["uptime_percent"] == 100.0 and checks["api.health"]["slo"]["uptime_ok"]
    assert checks["api.stats"]["slo"]["runs"] == 12 and not checks["api.stats"]["slo"]["uptime_ok"]
    assert checks["synthetic.hash"]["slo"] is None
    assert HEARTBEAT_CHECK not in checks

    incidents = document["incidents"]
    assert [i["check"] for i in incidents] == ["api.stats", HOSTILE]  # crit first
    assert incidents[0]["age_seconds"] == 25 * 60 and incidents[0]["suppressed"] is False

    listener = document["listener"]
    assert (listener["head_block"], listener["processed_block"], listener["blocks_behind"]) == (1_105, 105, 1_000)
    assert listener["state"] == "behind" and listener["lag_seconds"] == 20 and listener["reorgs_total"] == 3
    assert listener["events_24h"] == {"Minted": 3, "ProofStored": 1}
    assert document["links"]["dashboards"] == [{"title": "SLO", "url": "https://grafana.example.org/d/slo"}]
    assert document["timezone"] == "UTC" and document["api_version"] == 1


def test_status_page_lists_every_check_and_escapes_what_servers_send(served: str) -> None:
    answer = requests.get(served + "/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    page = answer.text
    for name, state in [
        ("api.health", "up"),
        ("api.stats", "down"),
        ("api.events", "stale"),
        ("synthetic.hash", "pending"),
    ]:
        assert f'data-check="{name}" data-state="{state}"' in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "UTC" in page and 'http-equiv="refresh"' in page
    assert 'href="/metrics"' in page and 'href="https://grafana.example.org/d/slo"' in page
    assert "1105" in page and "ProofStored" in page
    assert "src=" not in page  # nothing loaded from anywhere


def test_the_schema_rejects_a_document_of_another_shape(store: Store) -> None:
    """The schema is strict enough to catch a renamed or mistyped field."""
    populate(store)
    document = builder_for(store).build()
    validate(document)
    broken = json.loads(json.dumps(document))
    broken["checks"][0]["state"] = "green"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    renamed = json.loads(json.dumps(document))
    renamed["listener"]["lag"] = renamed["listener"].pop("lag_seconds")
    with pytest.raises(jsonschema.ValidationError):
        validate(renamed)


def test_an_empty_store_gives_a_valid_document_with_pending_checks_and_no_listener(store: Store) -> None:
    document = builder_for(store).build()
    validate(document)
    assert {c["state"] for c in document["checks"]} == {"pending"}
    assert document["listener"] is None and document["incidents"] == []


class _DownStore:
    def __getattr__(self, name: str) -> Any:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise StoreError("connection refused")

        return fail


class _UntouchableStore:
    """A stalled store: any query is a test failure, since the store check said it does not answer."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the page queried a store known not to answer ({name})")


def test_a_store_known_not_to_answer_is_a_503_at_once_without_a_query() -> None:
    """``store_check`` (the runtime's bounded readiness ping) is asked first: a stalled store gives
    the page a 503 at once instead of after each query's deadline."""
    builder = StatusBuilder(
        Config(), _UntouchableStore(), FakeClock(NOW), store_check=lambda: "store did not answer within 0.5s"
    )
    with pytest.raises(StoreError, match=r"did not answer within 0\.5s"):
        builder.build()


def test_an_unreachable_store_answers_503_on_both_paths() -> None:
    builder = StatusBuilder(Config(), _DownStore(), FakeClock(NOW))
    server = HttpServer(
        "127.0.0.1:0", CollectorRegistry(), lambda: (True, "ready"), extra_routes=status_routes(builder)
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        page = requests.get(base + "/", timeout=10)
        api = requests.get(base + "/api/v1/status", timeout=10)
    finally:
        server.stop()
    assert page.status_code == 503 and "store does not answer" in page.text
    assert api.status_code == 503 and api.json() == {"error": "store unreachable"}


def test_a_sub_second_refresh_never_reloads_the_page_in_a_loop(store: Store) -> None:
    document = builder_for(store, status_page={"refresh": "200ms"}).build()
    assert '<meta http-equiv="refresh" content="1">' in render_page(document)


def test_the_runtime_serves_the_checks_it_runs_on_the_page(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "api": {"base_url": "http://127.0.0.1:9", "email": "m@example.org", "password": "pw-for-tests"},
            "listener": {"enabled": False},
            "store": {"sqlite_path": str(tmp_path / "s.db")},
        }
    )
    runtime = build_runtime(config, parts=frozenset({"checks"}))
    try:
        document = status_builder(runtime).build()
    finally:
        for stop in runtime.on_stop:
            stop()
        runtime.store.close()
    validate(document)
    assert [c["name"] for c in document["checks"]] == [spec.name for spec in resolve_checks(config)]
    assert {c["state"] for c in document["checks"]} == {"pending"}


def test_a_row_from_a_replica_whose_clock_runs_ahead_still_gives_a_valid_document(store: Store) -> None:
    store.write_results([result("api.health", True, NOW + timedelta(seconds=2))])
    document = builder_for(store).build()
    validate(document)
    assert document["checks"][0]["age_seconds"] == 0 and document["checks"][0]["state"] == "up"


def test_an_overspent_budget_reads_exhausted_on_the_page_and_stays_a_number_in_the_json(store: Store) -> None:
    """Issue: "budget left -19900%" after 3 runs, and latency_ok true with no p99 to judge."""
    store.write_results([result("api.stats", False, NOW - timedelta(minutes=m), status_code=500) for m in (1, 2, 3)])
    document = builder_for(store).build()
    validate(document)
    (stats,) = [c for c in document["checks"] if c["name"] == "api.stats"]
    assert stats["slo"]["error_budget_left_percent"] == -19900.0  # 3 failures, 0.015 allowed: honest
    assert stats["slo"]["p99_latency_ms"] is None and stats["slo"]["latency_ok"] is None
    assert stats["slo"]["enough_runs"] is False and document["slo_window"]["min_runs"] == 200
    page = render_page(document)
    assert "budget exhausted (200× the allowed failures)" in page
    assert "19900" not in page and "budget left" not in page
    assert "3 of 200 runs, too few for a verdict" in page
    assert '<span class="miss">- ms</span>' not in page  # no p99: nothing missed


def test_budget_text_reads_left_then_exhausted() -> None:
    from exporter.status.page import budget_text

    assert budget_text(100.0) == "budget left 100%"
    assert budget_text(0.0) == "budget left 0%"
    assert budget_text(-50.0) == "budget exhausted (1.5× the allowed failures)"
    assert budget_text(-19900.0) == "budget exhausted (200× the allowed failures)"
    assert budget_text(None) == "budget exhausted"


def test_a_suppressed_incident_says_so_and_names_its_dependency(store: Store) -> None:
    store.open_incident("api.health", "crit", "API /health unavailable", "Status code: 503", NOW)
    store.open_incident("api.events", "warn", "API /explorer/events failing", "503", NOW, suppressed_by="api.health")
    document = builder_for(store).build()
    validate(document)
    shown = {i["check"]: (i["suppressed"], i["suppressed_by"]) for i in document["incidents"]}
    assert shown == {"api.health": (False, None), "api.events": (True, "api.health")}
    page = render_page(document)
    assert page.count("suppressed by api.health") == 1

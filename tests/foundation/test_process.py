"""The exporter as a process: endpoints, promtool's lint, shutdown on SIGTERM, secrets kept out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.exporter_process import ExporterProcess, run_command

# Each test runs the exporter as a process.
pytestmark = pytest.mark.slow


def test_run_serves_metrics_health_and_readiness(tmp_path: Path) -> None:
    with ExporterProcess(
        ["run", "--config", "/dev/null"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}, cwd=tmp_path
    ) as exporter:
        exporter.wait_ready()
        assert requests.get(exporter.url + "/healthz", timeout=5).status_code == 200
        body = exporter.metrics()
        assert 'blocktrust_exporter_build_info{version="' in body
        assert requests.get(exporter.url + "/nope", timeout=5).status_code == 404


def test_promtool_finds_nothing_to_complain_about_in_metrics(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; `make test` installs it"
    with ExporterProcess(
        ["run", "--config", "/dev/null"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}, cwd=tmp_path
    ) as exporter:
        exporter.wait_ready()
        body = exporter.metrics()
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_a_real_scrape_has_process_metrics_no_created_series_and_no_target_labels(tmp_path: Path) -> None:
    """Issue 13, acceptance 8, on what Prometheus would really read (after the jobs ran once)."""
    from prometheus_client.parser import text_string_to_metric_families

    with ExporterProcess(
        ["run", "--config", "/dev/null"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}, cwd=tmp_path
    ) as exporter:
        exporter.wait_ready()
        body = exporter.metrics()
    samples = [s for family in text_string_to_metric_families(body) for s in family.samples]
    assert next(s.value for s in samples if s.name == "process_start_time_seconds") > 0
    assert any(s.name == "python_info" for s in samples)
    assert any(s.name == "blocktrust_job_runs_total" and "task" in s.labels for s in samples), body
    assert [s.name for s in samples if s.name.endswith("_created")] == []
    assert [s for s in samples if {"job", "instance"} & set(s.labels)] == []


def test_readyz_is_503_while_the_store_is_unreachable(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    with ExporterProcess(["run", "--config", "/dev/null"], env=env, cwd=tmp_path) as exporter:
        for _ in range(100):
            try:
                answer = requests.get(exporter.url + "/readyz", timeout=2)
                break
            except requests.ConnectionError:
                import time

                time.sleep(0.1)
        assert answer.status_code == 503
        # The cause, not its consequence (issue: it said "store not migrated yet").
        assert answer.text.startswith("store unreachable: "), answer.text
        assert requests.get(exporter.url + "/healthz", timeout=2).status_code == 200
        code, _ = exporter.stop()
    assert code == 0, "a store outage never crashes the process"


def test_json_logs_are_json_lines_only_banner_included(tmp_path: Path) -> None:
    """Issue: ``--log-format json`` printed the plain 16-line banner among the JSON lines."""
    import json

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    with ExporterProcess(["run", "--config", "/dev/null", "--log-format", "json"], env=env, cwd=tmp_path) as exporter:
        exporter.wait_ready()
        code, _ = exporter.stop()
    assert code == 0
    records = [json.loads(line) for line in exporter.output.splitlines()]  # every line parses
    banners = [record for record in records if record.get("event") == "banner"]
    assert len(banners) == 1 and banners[0]["listen"] == f"127.0.0.1:{exporter.port}", exporter.output
    assert records.index(banners[0]) < next(i for i, r in enumerate(records) if r["msg"].startswith("exporter started"))


def test_sigterm_exits_zero_within_ten_seconds(tmp_path: Path) -> None:
    with ExporterProcess(
        ["run", "--config", "/dev/null"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}, cwd=tmp_path
    ) as exporter:
        exporter.wait_ready()
        code, elapsed = exporter.stop()
    assert code == 0
    assert elapsed < 10
    assert "exporter stopped jobs_finished=True store_flushed=True" in exporter.output


def test_check_config_prints_the_effective_configuration_and_exits_zero(tmp_path: Path) -> None:
    proc = run_command(
        ["check-config", "--config", "/dev/null"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MONITOR_CHECK_INTERVAL": "30s"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "interval: 30.0" in proc.stdout


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    proc = run_command(["check-config", "--config", "missing.yaml"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "blocktrust-exporter: missing.yaml: cannot read the configuration file: No such file or directory"
    )


def test_listen_does_not_need_the_api_checks_to_be_configured(tmp_path: Path) -> None:
    """API_BASE without credentials stops `run` (its checks need a login), never `listen` or `migrate`."""
    env = {"PATH": "/usr/bin:/bin", "API_BASE": "https://api.example.org", "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    run = run_command(["check-config", "--config", "/dev/null"], env=env, cwd=tmp_path)
    assert run.returncode == 2 and "api.email and api.password" in run.stderr
    migrate = run_command(["migrate", "--config", "/dev/null"], env=env, cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    listen = run_command(["listen", "--config", "/dev/null"], env=env, cwd=tmp_path)
    # It gets past the checks and stops at what `listen` really needs.
    assert listen.returncode == 2
    assert listen.stderr.strip().endswith("listener.rpc_url: required by listen (POLYGON_RPC_URL)")

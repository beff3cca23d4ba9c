"""docker-compose.yml and the Dockerfile: Debian's docker-compose accepts the stack with and without
the demo profile, refuses to start without the passwords (no defaults), and the image runs as a
non-root user with a health check and no secret in it. There is no Docker engine here: only
``docker-compose config`` runs."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from tests.bundle.conftest import REPO, tool

PASSWORDS = {"POSTGRES_PASSWORD": "compose-test-pg", "GRAFANA_ADMIN_PASSWORD": "compose-test-grafana"}
CORE = {"exporter", "postgres", "prometheus", "alertmanager", "grafana"}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    return subprocess.run(
        [tool("docker-compose"), "-f", str(REPO / "docker-compose.yml"), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
    )


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_compose_config_is_accepted(profile: list[str]) -> None:
    result = compose(*profile, "config", env=PASSWORDS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) >= CORE
    if profile:
        assert services["simulator"]["profiles"] == ["demo"] and services["anvil"]["profiles"] == ["demo"]
    for name in CORE:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_refuses_to_start_without_passwords() -> None:
    result = compose("config")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_uses_named_volumes_and_keeps_grafana_closed() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert set(doc["volumes"]) == {
        "exporter-data",
        "postgres-data",
        "prometheus-data",
        "alertmanager-data",
        "grafana-data",
    }
    grafana = doc["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert doc["services"]["alertmanager"]["image"].endswith(":v0.25.0"), "the version the config is tested with"


def test_dockerfile_runs_unprivileged_with_a_healthcheck_and_no_secrets() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the image must not run as root"
    assert "HEALTHCHECK" in text and "/healthz" in text and "9108" in text
    for secret in ("JWT_MONITOR_PASS", "ALERT_SLACK_WEBHOOK", "ALERT_TELEGRAM_BOT", "DATABASE_URL", "PASSWORD"):
        assert not re.search(rf"^(ENV|ARG)\b.*{secret}", text, re.M), f"{secret} baked into the image"


def test_the_listener_runs_as_its_own_service_with_the_listener_profile() -> None:
    """Issue #16 item 4: with an RPC URL the listener can be its own ``listen`` service, the exporter
    told so (LISTENER_ELSEWHERE) to judge its heartbeat; by default the exporter is not told to expect
    one (it then runs the listener itself when POLYGON_RPC_URL is set, or drops the listener checks)."""
    rpc = {"POLYGON_RPC_URL": "https://polygon.example/v1/key", "LISTENER_ELSEWHERE": "true"}
    result = compose("--profile", "listener", "config", env={**PASSWORDS, **rpc})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    listener, exporter = services["listener"], services["exporter"]
    assert listener["command"][0] == "listen" and listener["profiles"] == ["listener"]
    assert "healthcheck" in listener and listener["image"] == exporter["image"]
    assert exporter["environment"]["LISTENER_ELSEWHERE"] == "true"
    for shared in ("DATABASE_URL", "POLYGON_RPC_URL"):  # one store, one chain for both
        assert listener["environment"][shared] == exporter["environment"][shared]

    # (docker-compose 1.29's `config` lists every service, whatever the profile: only the default is seen)
    plain = yaml.safe_load(compose("config", env=PASSWORDS).stdout)["services"]
    assert plain["exporter"]["environment"]["LISTENER_ELSEWHERE"] == "false"


def test_compose_passes_every_alertmanager_setting_the_entrypoint_reads() -> None:
    """Defect 5's kind: a channel the entrypoint supports but compose never passes is a channel a
    user cannot turn on; every ALERT_* variable the entrypoint reads reaches the container."""
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    passed = set(doc["services"]["alertmanager"]["environment"])
    entrypoint = (REPO / "alertmanager" / "entrypoint.sh").read_text()
    read = set(re.findall(r"\b(ALERT_[A-Z_]+?)(?:_FILE)?\b", entrypoint)) - {"ALERT_"}
    assert read - passed == set(), "the entrypoint reads these, compose never passes them"

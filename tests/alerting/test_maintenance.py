"""Maintenance windows: fixed or weekly (also past midnight), per check or global; bad ones are
rejected by the config with a clear message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.alerting.maintenance import MaintenanceCalendar
from exporter.config import AlertingSettings, ConfigError, MaintenanceWindow, load_config


def calendar(*windows: dict[str, Any]) -> MaintenanceCalendar:
    return MaintenanceCalendar([MaintenanceWindow.model_validate(w) for w in windows])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


FIXED = {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00"}
# 2026-01-05 is a Monday.
NIGHTLY = {"days": ["mon"], "from": "23:00", "to": "01:30", "checks": ["api.*"]}


@pytest.mark.parametrize(
    ("window", "check", "moment", "active"),
    [
        (FIXED, "api.health", "2026-01-05T09:59:59", False),
        (FIXED, "api.health", "2026-01-05T10:00:00", True),
        (FIXED, "listener.lag", "2026-01-05T10:59:59", True),
        (FIXED, "api.health", "2026-01-05T11:00:00", False),
        (NIGHTLY, "api.health", "2026-01-05T22:59:00", False),
        (NIGHTLY, "api.health", "2026-01-05T23:00:00", True),
        (NIGHTLY, "api.stats", "2026-01-06T01:29:00", True),  # Tuesday morning: still Monday's window
        (NIGHTLY, "api.health", "2026-01-06T01:30:00", False),
        (NIGHTLY, "api.health", "2026-01-06T23:30:00", False),  # Tuesday evening: not listed
        (NIGHTLY, "listener.lag", "2026-01-05T23:30:00", False),  # not one of its checks
        ({"days": ["sat", "sun"], "from": "00:00", "to": "24:00"}, "x", "2026-01-10T23:59:59", True),
        ({"days": ["sat", "sun"], "from": "00:00", "to": "24:00"}, "x", "2026-01-12T00:00:00", False),
    ],
)
def test_window_covers(window: dict[str, Any], check: str, moment: str, active: bool) -> None:
    assert calendar(window).active(check, at(moment)) is active


def test_no_window_means_never_in_maintenance() -> None:
    assert calendar().active("api.health", at("2026-01-05T10:00:00")) is False


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "2026-01-05T10:00:00Z"}, "needs both start and end"),
        ({"start": "2026-01-05T11:00:00Z", "end": "2026-01-05T10:00:00Z"}, "2026-01-05T10:00:00Z is not after start"),
        ({"start": "yesterday", "end": "2026-01-05T10:00:00Z"}, "ISO 8601"),
        ({"days": ["mon"], "from": "25:00", "to": "01:00"}, "time of day"),
        ({"days": ["mon"], "from": "10:00"}, "needs days, from and to"),
        ({"days": ["mon"], "from": "10:00", "to": "10:00"}, "10:00 is the same time as from"),
        ({"checks": ["api.health"]}, "either start and end, or days"),
        ({"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00Z", "days": ["mon"]}, "either"),
    ],
)
def test_bad_windows_are_rejected(window: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertingSettings.model_validate({"maintenance": [window]})


def test_unquoted_yaml_times_are_understood(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "alerting:\n  maintenance:\n"
        "    - {days: [sun], from: 22:00, to: 23:30}\n"
        "    - {start: 2026-01-05T10:00:00Z, end: 2026-01-05T11:00:00Z}\n"
    )
    windows = load_config(path, env={}).alerting.maintenance
    assert (windows[0].from_, windows[0].to) == ("22:00", "23:30")
    assert MaintenanceCalendar(windows).active("x", at("2026-01-05T10:30:00"))


def test_config_error_names_the_key(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('alerting:\n  maintenance:\n    - {days: [mon], from: "9am", to: "10:00"}\n')
    with pytest.raises(ConfigError, match=r"alerting\.maintenance\[0\].*time of day"):
        load_config(path, env={})

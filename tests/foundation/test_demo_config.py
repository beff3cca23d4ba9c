"""The demo's configuration (issue 17, items 2 and 3): on loopback unless told otherwise (it has no
web configuration), and with the console channel on, so notices show in the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.alerting.channels.console import ConsoleChannel
from exporter.alerting.notifier import channels_from_settings
from exporter.config import Config
from exporter.demo.runner import demo_config


def _demo(base: Config, tmp_path: Path, listen: str | None) -> Config:
    return demo_config(
        base,
        api_url="http://127.0.0.1:1",
        password="generated-for-the-run",
        rpc_url="http://127.0.0.1:2",
        contracts=tmp_path / "contracts_config.json",
        workdir=tmp_path,
        listen=listen,
    )


@pytest.mark.parametrize(
    ("configured", "given", "expected"),
    [
        ("0.0.0.0:9108", None, "127.0.0.1:9108"),
        ("[::]:9200", None, "127.0.0.1:9200"),
        ("0.0.0.0:9108", "0.0.0.0:9300", "0.0.0.0:9300"),
    ],
)
def test_the_demo_listens_on_loopback_unless_told(
    tmp_path: Path, configured: str, given: str | None, expected: str
) -> None:
    base = Config.model_validate({"server": {"listen": configured}})
    assert _demo(base, tmp_path, given).server.listen == expected


def test_the_demo_sends_notices_to_the_console(tmp_path: Path) -> None:
    config = _demo(Config(), tmp_path, None)
    assert [type(channel) for channel in channels_from_settings(config.alerting)] == [ConsoleChannel]

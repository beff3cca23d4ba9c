"""Every invalid configuration in tests/data/bad_config/ gives its exact one-line error and exit 2.

Each case file starts with ``# expect: <line>`` (``{path}`` stands for the file's path) and may set
environment variables with ``# env: NAME=value`` lines, as blackbox_exporter's testdata does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.cli import main
from tests.support.exporter_process import run_command

CASES = sorted((Path(__file__).parent.parent / "data" / "bad_config").glob("*.yaml"))


def _header(path: Path) -> tuple[str, dict[str, str]]:
    expect, env = None, {}
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            expect = line.removeprefix("# expect: ")
        elif line.startswith("# env: "):
            name, _, value = line.removeprefix("# env: ").partition("=")
            env[name] = value
    assert expect is not None, f"{path.name} has no '# expect:' line"
    return expect.replace("{path}", str(path)), env


def test_there_are_at_least_twelve_cases() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_check_config_rejects_with_one_exact_line_in_process(
    case: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same cases through ``main`` in this process (the fast loop's view of them)."""
    expected, extra_env = _header(case)
    for name in ("MONITOR_CHECK_INTERVAL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in extra_env.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(case)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"blocktrust-exporter: {expected}"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_check_config_rejects_with_one_exact_line(case: Path) -> None:
    expected, extra_env = _header(case)
    env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_CHECK_INTERVAL", "DATABASE_URL")}
    env.update(extra_env)
    proc = run_command(["check-config", "--config", str(case)], env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"blocktrust-exporter: {expected}"]

"""The command line as input: bad arguments are one line and exit 2 like any bad input, and the
commands that only touch the store or the rules do not ask for what only the listener needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["report", "--window", "abc"], "argument --window: expected a duration"),
        (["report", "--window", "0s"], "argument --window: the window must be longer than 0"),
        (["migrate", "--log-format", "json"], "unrecognized arguments: --log-format json"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["simulate", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert lines[0].startswith("blocktrust-exporter") and lines[0].endswith("--help)"), lines


@pytest.mark.parametrize("command", [["migrate"], ["report"], ["rules"]])
def test_store_and_rules_commands_need_no_contracts_file(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an RPC URL set the listener's contracts file is required by `run` and `listen`; `migrate`,
    `report` and `rules` read no ABI, so a missing file must not stop them."""
    config = tmp_path / "config.yaml"
    config.write_text(f"store:\n  sqlite_path: {tmp_path / 'store.db'}\n")
    monkeypatch.chdir(tmp_path)  # no contracts_config.json here
    monkeypatch.setenv("POLYGON_RPC_URL", "http://127.0.0.1:8545")
    assert main(["check-config", "--config", str(config)]) == 2  # the file is needed where the listener runs
    if command != ["migrate"]:
        assert main(["migrate", "--config", str(config)]) == 0
    assert main([*command, "--config", str(config)]) == 0

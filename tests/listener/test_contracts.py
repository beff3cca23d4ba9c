"""contracts_config.json: every problem is one line naming the file, contract and ABI entry."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError
from exporter.listener.contracts import ContractsConfigError, load_contracts
from tests.listener.spec_abi import contracts_document


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "contracts_config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_valid_file_yields_the_seven_spec_events(tmp_path: Path) -> None:
    specs = load_contracts(_write(tmp_path, contracts_document()), {"MintingEvent": "Minted"})
    assert len(specs) == 7
    minting = next(s for s in specs if s.name == "MintingEvent")
    assert minting.signature == "MintingEvent(uint256,address)"
    assert minting.stored_type == "Minted"
    assert minting.topic0 == "0x394567d00aaa992bb8ad351eeef7d57db51a0e54af3d224f7831331df65b4cf5"


def _without(contract: str) -> dict[str, Any]:
    doc = contracts_document()
    del doc[contract]
    return doc


def _patched(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(contracts_document())
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


BAD = [
    ("not-json", "{nope", "contracts_config.json:1:2: invalid JSON"),
    ("list-at-top", [], "expected an object mapping contract names"),
    ("missing-contract", _without("FailSafe"), "missing contract FailSafe"),
    ("contract-not-object", _patched(["ProofRegistry"], 3), "ProofRegistry: expected an object"),
    ("bad-address", _patched(["IdentityNFT", "address"], "0x123"), "IdentityNFT.address: expected a 0x-prefixed"),
    ("abi-not-list", _patched(["FailSafe", "abi"], {"x": 1}), "FailSafe.abi: expected a list"),
    ("abi-string-not-json", _patched(["FailSafe", "abi"], "[oops"), "FailSafe.abi: a string that is not JSON"),
    ("no-events", _patched(["FailSafe", "abi"], []), "FailSafe.abi: no events to follow"),
    ("entry-not-object", _patched(["FailSafe", "abi", 0], "event"), "FailSafe.abi[0]: expected an object"),
    ("event-without-name", _patched(["FailSafe", "abi", 0, "name"], ""), "FailSafe.abi[0]: event without a 'name'"),
    (
        "bad-type",
        _patched(["IdentityNFT", "abi", 1, "inputs", 0, "type"], "uint257"),
        "IdentityNFT.abi[1] (CancelamentoEvent).inputs[0]: unknown ABI type 'uint257'",
    ),
    (
        "input-without-type",
        _patched(["IdentityNFT", "abi", 0, "inputs", 1], {"name": "user"}),
        "IdentityNFT.abi[0] (MintingEvent).inputs[1]: expected an object with a string 'type'",
    ),
]


@pytest.mark.parametrize(("document", "message"), [(d, m) for _, d, m in BAD], ids=[i for i, _, _ in BAD])
def test_invalid_config_names_the_problem(tmp_path: Path, document: Any, message: str) -> None:
    with pytest.raises(ContractsConfigError) as info:
        load_contracts(_write(tmp_path, document), {})
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "contracts_config.json"))


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_contracts(tmp_path / "nowhere.json", {})
    assert str(info.value) == f"listener.contracts_config: {tmp_path / 'nowhere.json'}: file not found"


def test_missing_relative_file_names_the_key_and_the_absolute_path_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_contracts("contracts_config.json", {})
    assert str(info.value) == (
        f"listener.contracts_config: {tmp_path / 'contracts_config.json'}: file not found "
        "(a relative path is read from the working directory)"
    )


def test_a_file_that_is_not_utf8_is_one_line_naming_it_and_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "contracts_config.json"
    path.write_bytes(b'{"IdentityNFT": "caf\xe9"}')
    with pytest.raises(ConfigError) as info:
        load_contracts(path, {})
    assert str(info.value) == (
        f"{path}: not UTF-8 text: the first byte that is not UTF-8 is at offset 20; save it as UTF-8"
    )


def test_abi_given_as_a_json_string_is_accepted(tmp_path: Path) -> None:
    doc = contracts_document()
    doc["FailSafe"]["abi"] = json.dumps(doc["FailSafe"]["abi"])
    assert len(load_contracts(_write(tmp_path, doc), {})) == 7


@pytest.mark.parametrize(
    ("event", "wrong", "right"),
    [("MintingEvent", "FailSafe", "IdentityNFT"), ("FailsafeEvent", "ProofRegistry", "FailSafe")],
)
def test_a_spec_event_in_another_spec_contracts_abi_is_refused(
    tmp_path: Path, event: str, wrong: str, right: str
) -> None:
    """Logs are fetched by each contract's address: declared in the wrong ABI, it is never stored."""
    document = contracts_document()
    entry = next(e for e in document[right]["abi"] if e.get("name") == event)
    document[wrong]["abi"].append(copy.deepcopy(entry))  # also when the right contract declares it too
    with pytest.raises(ContractsConfigError) as info:
        load_contracts(_write(tmp_path, document), {})
    index = len(document[wrong]["abi"]) - 1
    assert str(info.value) == (
        f"{tmp_path / 'contracts_config.json'}: {wrong}.abi[{index}]: {event} is emitted by {right} (SPEC §1), "
        f"not {wrong}: declared here it would never be stored; move it to {right}'s abi"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"IdentityNFT": {}, "IdentityNFT": {}}', "IdentityNFT"),
        ('{"FailSafe": {"abi": [{"name": "a", "type": "event", "name": "b"}]}}', "FailSafe.abi[0].name"),
    ],
)
def test_a_key_given_twice_is_refused_with_its_path(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ContractsConfigError) as info:
        load_contracts(_write(tmp_path, text), {})
    assert str(info.value) == f"{tmp_path / 'contracts_config.json'}: {where}: duplicate key (JSON keeps the last)"

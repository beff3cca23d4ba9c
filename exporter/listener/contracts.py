"""Load and validate ``contracts_config.json`` into the events the listener follows.

The file maps a contract name to ``{"address": "0x…", "abi": [...]}`` (SPEC §3). Every problem
(missing file, bad JSON, missing contract, bad address, malformed ABI, an ABI type eth-abi does
not know, an event of ``listener.event_types`` that no ABI declares, a SPEC event declared in
another SPEC contract's ABI, a key given twice in one JSON object) raises ``ContractsConfigError``
with one line naming the file, the contract and the ABI entry. Not for decoding logs: ``decode.py``
turns an ``EventSpec`` into a decoder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import is_encodable_type
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from exporter.config import ConfigError
from exporter.config.files import decode_text
from exporter.config.models import EVENT_TYPE_MAX_LENGTH
from exporter.store.lossless import storable_text

REQUIRED_CONTRACTS = ("IdentityNFT", "ProofRegistry", "FailSafe")  # SPEC §1
# Where SPEC §1 declares each followed event, to name the ABI that lacks one.
SPEC_EVENT_CONTRACTS = {
    "MintingEvent": "IdentityNFT",
    "CancelamentoEvent": "IdentityNFT",
    "CancelamentoSimples": "IdentityNFT",
    "ProofRegistered": "ProofRegistry",
    "ProofRevoked": "ProofRegistry",
    "ProofStoredDual": "ProofRegistry",
    "FailsafeEvent": "FailSafe",
}
SPEC_CONTRACTS = frozenset(SPEC_EVENT_CONTRACTS.values())
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class ContractsConfigError(ConfigError):
    """``contracts_config.json`` is missing or invalid; ``str()`` is one line naming the culprit."""


@dataclass(frozen=True)
class EventInput:
    name: str
    abi_type: str  # canonical eth-abi type string, tuples collapsed to "(t1,t2)"
    indexed: bool


@dataclass(frozen=True)
class EventSpec:
    """One followed ABI event of one contract."""

    contract: str
    address: str  # checksummed
    name: str
    stored_type: str  # the ``events.type`` value (the configurable map, else the event name)
    signature: str  # e.g. "MintingEvent(uint256,address)"
    topic0: str  # 0x-hex keccak of the signature, lowercase
    inputs: tuple[EventInput, ...]


def _canonical_type(param: Any, where: str) -> str:
    if not isinstance(param, dict) or not isinstance(param.get("type"), str):
        raise ContractsConfigError(f"{where}: expected an object with a string 'type'")
    abi_type: str = param["type"]
    if abi_type.startswith("tuple"):
        components = param.get("components")
        if not isinstance(components, list):
            raise ContractsConfigError(f"{where}: tuple without 'components'")
        inner = ",".join(_canonical_type(c, f"{where}.components[{i}]") for i, c in enumerate(components))
        abi_type = f"({inner}){abi_type[len('tuple') :]}"
    # eth-abi's own grammar decides what a valid type is; no home-made list to drift from it.
    if not is_encodable_type(abi_type):
        raise ContractsConfigError(f"{where}: unknown ABI type {param['type']!r}")
    return abi_type


def _event_spec(
    contract: str, address: str, entry: dict[str, Any], where: str, event_types: Mapping[str, str]
) -> EventSpec:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ContractsConfigError(f"{where}: event without a 'name'")
    raw_inputs = entry.get("inputs", [])
    if not isinstance(raw_inputs, list):
        raise ContractsConfigError(f"{where} ({name}): 'inputs' must be a list")
    inputs = []
    for i, param in enumerate(raw_inputs):
        param_where = f"{where} ({name}).inputs[{i}]"
        abi_type = _canonical_type(param, param_where)
        inputs.append(EventInput(str(param.get("name") or f"arg{i}"), abi_type, bool(param.get("indexed"))))
    if sum(p.indexed for p in inputs) > 3:
        raise ContractsConfigError(f"{where} ({name}): more than 3 indexed inputs")
    stored_type = event_types.get(name, name)
    if len(stored_type) > EVENT_TYPE_MAX_LENGTH or not storable_text(stored_type):
        # PostgreSQL would refuse every such event (SQLite would take it): refused here, on both.
        raise ContractsConfigError(
            f"{where} ({name}): the event name is not a storable events.type (at most {EVENT_TYPE_MAX_LENGTH} "
            "characters, no NUL): map it to a shorter type in listener.event_types"
        )
    signature = f"{name}({','.join(p.abi_type for p in inputs)})"
    return EventSpec(
        contract=contract,
        address=address,
        name=name,
        stored_type=stored_type,
        signature=signature,
        topic0="0x" + keccak(text=signature).hex(),
        inputs=tuple(inputs),
    )


def _contract_events(name: str, body: Any, where: str, event_types: Mapping[str, str]) -> list[EventSpec]:
    if not isinstance(body, dict):
        raise ContractsConfigError(f"{where}: expected an object with 'address' and 'abi'")
    address = body.get("address")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ContractsConfigError(f"{where}.address: expected a 0x-prefixed 20-byte hex address, got {address!r}")
    abi = body.get("abi")
    if isinstance(abi, str):
        try:  # some deploy scripts store the ABI as a JSON string
            abi = json.loads(abi)
        except ValueError:
            raise ContractsConfigError(f"{where}.abi: a string that is not JSON") from None
    if not isinstance(abi, list):
        raise ContractsConfigError(f"{where}.abi: expected a list of ABI entries")
    checksummed = to_checksum_address(address)
    specs = []
    for index, entry in enumerate(abi):
        entry_where = f"{where}.abi[{index}]"
        if not isinstance(entry, dict):
            raise ContractsConfigError(f"{entry_where}: expected an object")
        if entry.get("type") == "event" and not entry.get("anonymous"):
            spec = _event_spec(name, checksummed, entry, entry_where, event_types)
            emitter = SPEC_EVENT_CONTRACTS.get(spec.name)
            if emitter is not None and name in SPEC_CONTRACTS and name != emitter:
                # Logs are fetched by address: FailSafe's address never emits IdentityNFT's MintingEvent.
                raise ContractsConfigError(
                    f"{entry_where}: {spec.name} is emitted by {emitter} (SPEC §1), not {name}: "
                    f"declared here it would never be stored; move it to {emitter}'s abi"
                )
            specs.append(spec)
    if not specs:
        raise ContractsConfigError(f"{where}.abi: no events to follow")
    return specs


def parse_contracts(
    document: Any, source: str, event_types: Mapping[str, str], required: Iterable[str] = REQUIRED_CONTRACTS
) -> list[EventSpec]:
    """Validate an already-parsed ``contracts_config.json`` document."""
    if not isinstance(document, dict):
        raise ContractsConfigError(f"{source}: expected an object mapping contract names to {{address, abi}}")
    missing = [name for name in required if name not in document]
    if missing:
        raise ContractsConfigError(f"{source}: missing contract {', '.join(missing)}")
    specs: list[EventSpec] = []
    for name, body in document.items():
        specs.extend(_contract_events(name, body, f"{source}: {name}", event_types))
    seen: dict[tuple[str, str], EventSpec] = {}
    for spec in specs:
        key = (spec.address, spec.topic0)
        if key in seen:
            raise ContractsConfigError(
                f"{source}: {spec.contract}: event {spec.signature} declared twice for {spec.address}"
            )
        seen[key] = spec
    _require_followed_events(specs, source, event_types)
    return specs


def _require_followed_events(specs: list[EventSpec], source: str, event_types: Mapping[str, str]) -> None:
    """Every event ``listener.event_types`` names must be in an ABI: one that is not would never be
    fetched nor stored, and nothing would say so (the seed's listener lost ``ProofStoredDual`` so)."""
    declared = {spec.name for spec in specs}
    for event in event_types:
        if event not in declared:
            contract = SPEC_EVENT_CONTRACTS.get(event)
            where = f"{source}: {contract}.abi" if contract else f"{source}: no contract's abi"
            raise ContractsConfigError(
                f"{where}: lacks the followed event {event} (listener.event_types.{event}; "
                "remove it there if it is not to be followed)"
            )


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys given more than once (``json`` would keep the last)."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Object:
        made = cls(pairs)
        keys = [key for key, _ in pairs]
        made.duplicates = tuple(key for index, key in enumerate(keys) if key in keys[:index])
        return made


def _refuse_duplicate_keys(node: Any, source: str, path: str = "") -> None:
    """The first key given twice in one object, depth first, as ``file: key.path: duplicate key``."""
    if isinstance(node, _Object):
        if node.duplicates:
            where = f"{path}.{node.duplicates[0]}" if path else node.duplicates[0]
            raise ContractsConfigError(f"{source}: {where}: duplicate key (JSON keeps the last)")
        for key, value in node.items():
            _refuse_duplicate_keys(value, source, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _refuse_duplicate_keys(item, source, f"{path}[{index}]")


def load_contracts(
    path: str | Path, event_types: Mapping[str, str], required: Iterable[str] = REQUIRED_CONTRACTS
) -> list[EventSpec]:
    """Read and validate the file; raise ``ContractsConfigError`` (one line) on any problem.

    A relative ``path`` is taken from the working directory (as it always was: the Docker image's
    ``WORKDIR /data`` holds it while its configuration is in /etc); messages name the absolute path.
    """
    source, absolute = str(path), Path(path).absolute()
    try:
        data = absolute.read_bytes()
    except FileNotFoundError:
        where = "" if Path(path).is_absolute() else " (a relative path is read from the working directory)"
        raise ContractsConfigError(f"listener.contracts_config: {absolute}: file not found{where}") from None
    except OSError as exc:
        raise ContractsConfigError(f"listener.contracts_config: {absolute}: cannot read: {exc.strerror}") from None
    try:
        text = decode_text(data, source)
    except ConfigError as exc:
        raise ContractsConfigError(str(exc)) from None
    try:
        document = json.loads(text, object_pairs_hook=_Object.of)
    except json.JSONDecodeError as exc:
        raise ContractsConfigError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    _refuse_duplicate_keys(document, source)
    return parse_contracts(document, source, event_types, required)

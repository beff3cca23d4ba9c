"""What the chain check kinds (``chain.head``, ``eth_call``, ``balance``) read the chain through.

``ChainReader`` wraps the listener's RPC client (``exporter.listener.rpc.RpcClient``, which the
runtime builds from the ``listener.*`` settings: the same URL, timeout and
``blocktrust_listener_rpc_*`` metrics, and injects with the client's error classes) behind a lock,
because the client is used from one thread at a time and the checks of a round run concurrently.
The client's errors become ``ChainCallError`` (their text never holds the RPC URL).

``resolve_view_calls`` turns each ``eth_call`` check's ``contract`` and ``function`` into call data
and an output decoder with web3's contract and ABI helpers, once, at start-up: an unknown contract or
function, or arguments that do not fit it, is a ``ConfigError`` naming the check.

Not for judging answers (each kind in ``kinds/`` does) nor for following events (the listener).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from exporter.config import CheckSpec, Config, ConfigError
from exporter.config.files import decode_text

if TYPE_CHECKING:
    from eth_typing import ABIFunction


class RpcCaller(Protocol):
    """The part of the listener's RPC client the chain checks use."""

    def call(self, method: str, params: list[Any]) -> Any: ...


class ChainAnswerError(Exception):
    """An RPC answer that is not what the call returns (a garbled block, undecodable call output)."""


class ChainCallError(Exception):
    """The RPC call failed: refused, timed out, or answered with an error (a revert too)."""


@dataclass(frozen=True)
class ViewCall:
    """One ``eth_call`` check's call: where, what (ABI-encoded) and how to read the answer."""

    contract: str
    address: str  # checksummed
    signature: str  # e.g. "triggered(uint256)"
    data: str  # 0x-hex call data
    output_types: tuple[str, ...]
    output_names: tuple[str, ...]

    def decode(self, raw: object) -> Any:
        """The answer's outputs as JSON values (ints, bools, 0x-hex bytes, lists): the only output
        itself, or an object of the outputs by name (by position when unnamed).
        ``ChainAnswerError`` when ``raw`` is not the ABI encoding of the outputs."""
        from eth_abi.abi import decode as abi_decode  # (imported by eth_call checks only)
        from eth_abi.exceptions import DecodingError

        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise ChainAnswerError(f"eth_call: expected 0x-hex output, got {str(raw)[:40]!r}")
        try:
            values = abi_decode(list(self.output_types), bytes.fromhex(raw[2:]))
        except (DecodingError, ValueError) as exc:
            reason = "no output (is there a contract at this address?)" if raw == "0x" else type(exc).__name__
            raise ChainAnswerError(f"eth_call {self.signature}: cannot decode the output: {reason}") from None
        plain = [_jsonable(value) for value in values]
        if len(plain) == 1:
            return plain[0]
        named = zip(self.output_names, plain, strict=True)
        return {name or str(index): value for index, (name, value) in enumerate(named)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


class ChainReader:
    """The chain as the checks see it: locked RPC calls and each ``eth_call`` check's ``ViewCall``."""

    def __init__(self, rpc: RpcCaller, views: Mapping[str, ViewCall], *, errors: tuple[type[Exception], ...]) -> None:
        """``errors``: the exception classes of ``rpc`` that mean the call failed."""
        self._rpc = rpc
        self._errors = errors
        self._lock = threading.Lock()
        self.views = dict(views)

    def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; ``ChainCallError`` when the client says it failed."""
        with self._lock:
            try:
                return self._rpc.call(method, params)
            except self._errors as exc:
                raise ChainCallError(str(exc)[:300]) from None

    def head(self) -> tuple[int, int]:
        """(number, timestamp in Unix seconds) of the latest block; ``ChainAnswerError`` if garbled."""
        block = self.call("eth_getBlockByNumber", ["latest", False])
        try:
            return int(block["number"], 16), int(block["timestamp"], 16)
        except (KeyError, TypeError, ValueError):
            raise ChainAnswerError("eth_getBlockByNumber: no block number and timestamp in the answer") from None

    def balance(self, address: str) -> int:
        """The native balance of ``address`` at the latest block, in wei."""
        raw = self.call("eth_getBalance", [address, "latest"])
        try:
            return int(raw, 16)
        except (TypeError, ValueError):
            raise ChainAnswerError(f"eth_getBalance: expected a hex quantity, got {str(raw)[:40]!r}") from None


def read_abis(path: str | Path) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """contract name -> (address, ABI) from ``contracts_config.json``; ``ConfigError`` naming the file.
    (The listener validates the events of the same file: ``exporter.listener.contracts``.)"""
    source = str(path)
    try:
        document = json.loads(decode_text(Path(path).read_bytes(), source))
    except OSError as exc:
        raise ConfigError(f"listener.contracts_config: {Path(path).absolute()}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected an object mapping contract names to {{address, abi}}")
    abis: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for name, body in document.items():
        abi = body.get("abi") if isinstance(body, dict) else None
        if isinstance(abi, str):  # some deploy scripts store the ABI as a JSON string
            try:
                abi = json.loads(abi)
            except ValueError:
                raise ConfigError(f"{source}: {name}.abi: a string that is not JSON") from None
        address = body.get("address") if isinstance(body, dict) else None
        if isinstance(abi, list) and isinstance(address, str):
            abis[name] = (address, abi)
    return abis


def resolve_view_calls(config: Config, checks: Sequence[CheckSpec]) -> dict[str, ViewCall]:
    """check name -> ``ViewCall`` for every ``eth_call`` check; ``ConfigError`` naming the check and
    the contract, function or argument that does not fit ``listener.contracts_config``."""
    wanted = [spec for spec in checks if spec.kind == "eth_call"]
    if not wanted:
        return {}
    # web3 (and eth-abi) take seconds to import: only a configuration with eth_call checks pays for it.
    from eth_utils.abi import abi_to_signature, get_abi_output_names, get_abi_output_types
    from web3 import Web3
    from web3.exceptions import Web3Exception
    from web3.utils.abi import get_abi_element

    abis = read_abis(config.listener.contracts_config)
    w3 = Web3()
    views: dict[str, ViewCall] = {}
    for spec in wanted:
        where = f"{config.source}: checks: {spec.name}"
        assert spec.contract is not None and spec.function is not None  # CheckSpec requires them
        if spec.contract not in abis:
            known = ", ".join(sorted(abis)) or "none"
            raise ConfigError(
                f"{where}: contract: {spec.contract!r} is not in {config.listener.contracts_config} "
                f"(contracts: {known})"
            )
        address, abi = abis[spec.contract]
        try:
            element = get_abi_element(abi, spec.function, *spec.args)  # type: ignore[arg-type]
            if element.get("type") != "function" or element.get("stateMutability") not in ("view", "pure"):
                raise ConfigError(f"{where}: function: {spec.function!r} of {spec.contract} is not a view function")
            contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
            data = contract.encode_abi(spec.function, args=list(spec.args))
        except ConfigError:
            raise
        except (Web3Exception, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: function: {spec.function!r} of {spec.contract}: {_why(exc)}") from None
        function = cast("ABIFunction", element)
        views[spec.name] = ViewCall(
            contract=spec.contract,
            address=Web3.to_checksum_address(address),
            signature=abi_to_signature(function),
            data=data,
            output_types=tuple(get_abi_output_types(function)),
            output_names=tuple(name or "" for name in get_abi_output_names(function)),
        )
    return views


def _why(exc: Exception) -> str:
    """The telling line of web3's multi-line ABI errors ("Argument 1 value `x` is not compatible
    with type `uint256`.", "No element named `paused` with 0 argument(s).")."""
    noise = ("ABI Not Found", "Provided", "Tried to find", "Signature:")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith(noise)]
    return lines[-1][:200] if lines else type(exc).__name__

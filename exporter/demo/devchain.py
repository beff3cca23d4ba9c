"""A local anvil chain with the three Blocktrust test contracts deployed on it.

For tests, the listener benchmark and ``make demo``: start anvil (from the pinned npm package in
``tools/``), deploy IdentityNFT, ProofRegistry and FailSafe from the committed build artifacts, and
drive the chain (emit events, mine, snapshot, reorg) over plain JSON-RPC. Not for production: it
relies on anvil's unlocked dev accounts and ``anvil_*``/``evm_*`` methods, and it talks only to the
anvil process it started itself.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

CONTRACT_NAMES: tuple[str, ...] = ("IdentityNFT", "ProofRegistry", "FailSafe")
BUILD_DIR = Path(__file__).resolve().parent / "contracts" / "build"
TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"  # the repository's tools/ (npm: anvil)

_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")
_START_TIMEOUT_S = 20.0
_RECEIPT_TIMEOUT_S = 30.0
_RPC_TIMEOUT_S = 120.0
# Batched emits stay well under anvil's default 30M block gas limit.
_BATCH_CHUNK = 400
# Gas of each anvil_reorg replacement transaction: above any single-event call, and 7 of them
# (one of each event type) fit one 30M block.
REORG_TX_GAS = 1_000_000
# Enough for the listener's reorg tests (depth 30, and deeper than its maximum) at small memory cost.
DEFAULT_STATE_HISTORY = 128
_NPM_PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64",
    ("Darwin", "x86_64"): "darwin-amd64",
    ("Darwin", "arm64"): "darwin-arm64",
}


class DevChainError(RuntimeError):
    """anvil is missing, did not start, or refused a call."""


@dataclass(frozen=True)
class Call:
    """A contract call to send from the dev account (also usable as an ``anvil_reorg`` replacement tx)."""

    to: str
    data: str


def anvil_path(tools_dir: Path = TOOLS_DIR) -> Path:
    """The anvil binary installed by ``cd tools && npm ci``.

    Prefers the native binary of the platform package over ``node_modules/.bin/anvil``: that one is a
    Node wrapper that spawns the binary as a child, so killing the wrapper would orphan the real anvil
    and every start would pay Node's start-up.
    """
    modules = tools_dir / "node_modules"
    suffix = _NPM_PLATFORMS.get((platform.system(), platform.machine()))
    candidates = [modules / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"] if suffix else []
    candidates.append(modules / ".bin" / "anvil")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DevChainError(f"anvil not found under {modules}: run `make tools` (cd tools && npm ci)")


def load_artifacts(build_dir: Path = BUILD_DIR) -> dict[str, dict[str, Any]]:
    """Contract name -> {"abi": [...], "bytecode": "0x..."}, from the committed build artifacts."""
    artifacts: dict[str, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        path = build_dir / f"{name}.json"
        try:
            artifacts[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DevChainError(f"{path}: cannot read contract artifact ({exc})") from exc
    return artifacts


def calldata(signature: str, types: list[str], args: list[Any]) -> str:
    """ABI-encoded call data for ``signature`` (e.g. ``"mint(address)"``)."""
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


def create_address(deployer: str, nonce: int) -> str:
    """The address of the contract ``deployer`` creates with ``nonce`` (CREATE, nonce < 128).

    Lets a chain loaded from a state dump find its contracts without a side file: they are always
    the dev account's first three deployments. RLP of [address, nonce] written out by hand because
    it is two short fields.
    """
    if not 0 <= nonce < 128:
        raise ValueError("nonce must be in [0, 128)")
    # RLP: list header (0xc0 + payload length), 20-byte string header (0x94), address, then the
    # nonce as one byte (0x80 being the empty string, i.e. zero).
    nonce_rlp = bytes([0x80]) if nonce == 0 else bytes([nonce])
    encoded = bytes([0xC0 + 21 + len(nonce_rlp), 0x94]) + bytes.fromhex(deployer[2:]) + nonce_rlp
    return to_checksum_address(keccak(encoded)[12:])


class DevChain:
    """A running anvil process plus the three deployed test contracts."""

    def __init__(
        self, process: subprocess.Popen[bytes], rpc_url: str, log_path: Path, session: requests.Session
    ) -> None:
        self._process = process
        # A test that fails before stop() must not leave anvil running after the interpreter exits.
        self._finalizer = weakref.finalize(self, _terminate, process)
        self.rpc_url = rpc_url
        self.log_path = log_path
        self.pid = process.pid  # benchmarks account anvil's CPU time by it
        self._session = session
        self._rpc_id = 0
        self.account: str = ""
        self.addresses: dict[str, str] = {}
        self.artifacts = load_artifacts()
        # Token / document ids for emitted events; each call uses fresh ones so events differ.
        self._next_id = 1

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        port: int = 0,
        block_time: float | None = None,
        load_state: Path | None = None,
        dump_state: Path | None = None,
        state_history: int = DEFAULT_STATE_HISTORY,
        session: requests.Session | None = None,
        chain_id: int | None = None,
    ) -> DevChain:
        """Start anvil (port 0 = a free one; block_time None = mine each transaction at once), deploy
        the three contracts (or find them in ``load_state``), return when ready.

        ``state_history``: how many past block states anvil keeps, which bounds the depth of
        ``reorg`` (0: none, reorgs fail; fastest mining). ``dump_state`` makes anvil write its chain
        to that file on ``stop()``; ``load_state`` starts from such a file (bench/listener_backlog.py).
        ``chain_id``: what ``eth_chainId`` answers (anvil's default: 31337).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "anvil.log"
        command = [str(anvil_path()), "--host", "127.0.0.1", "--port", str(port), "--accounts", "1"]
        # Mining cost per block grows with the chain under anvil's defaults (measured: 20,000 empty
        # blocks take minutes): Prague's EIP-2935 history contract grows the state root's storage trie
        # up to 8191 slots, and every past state is serialised to disk. Cancun (what the contracts are
        # compiled for) and a bounded in-memory history keep it at microseconds per block.
        command += ["--hardfork", "cancun", "--prune-history"] + ([str(state_history)] if state_history else [])
        if block_time is not None:
            command += ["--block-time", str(block_time)]
        if chain_id is not None:
            command += ["--chain-id", str(chain_id)]
        if load_state is not None:
            command += ["--load-state", str(load_state)]
        if dump_state is not None:
            command += ["--dump-state", str(dump_state)]
        # stdout to a file, not a pipe: anvil logs every call, and an unread pipe would block it.
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
            )
        chain: DevChain | None = None
        try:
            bound_port = _wait_listening(process, log_path)
            chain = cls(process, f"http://127.0.0.1:{bound_port}", log_path, session or requests.Session())
            chain.account = to_checksum_address(chain.rpc("eth_accounts", [])[0])
            if load_state is None:
                chain._deploy()
            else:
                chain._find_deployed()
            return chain
        except BaseException:
            _terminate(process)
            raise

    def stop(self) -> None:
        """Stop anvil (gracefully, so ``dump_state`` is written) and wait for it to exit."""
        self._finalizer()
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- raw access ------------------------------------------------------------------------------

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; raises DevChainError on an error answer."""
        self._rpc_id += 1
        body = {"jsonrpc": "2.0", "id": self._rpc_id, "method": method, "params": params}
        response = self._session.post(self.rpc_url, json=body, timeout=_RPC_TIMEOUT_S)
        response.raise_for_status()
        answer = response.json()
        if "error" in answer:
            raise DevChainError(f"{method}: {answer['error']}")
        return answer["result"]

    def send(self, call: Call) -> str:
        """Send ``call`` from the dev account, wait until mined, return the tx hash (fails if reverted)."""
        tx_hash: str = self.rpc("eth_sendTransaction", [_tx_request(self.account, call)])
        receipt = self._wait_receipt(tx_hash)
        if receipt["status"] != "0x1":
            raise DevChainError(f"transaction {tx_hash} reverted")
        return tx_hash

    # --- contracts -------------------------------------------------------------------------------

    def write_contracts_config(self, path: Path) -> Path:
        """Write the SPEC ``contracts_config.json`` (name -> {"address", "abi"}) for this chain."""
        config = {
            name: {"address": self.addresses[name], "abi": self.artifacts[name]["abi"]} for name in CONTRACT_NAMES
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return path

    def each_event_calls(self) -> list[Call]:
        """Seven calls, one per SPEC event type, with fresh ids (send them, or replay them in a reorg)."""
        token, doc = self._take_ids(2), f"doc-single-{self._take_ids(1)}"
        nft, proofs, failsafe = (self.addresses[name] for name in CONTRACT_NAMES)
        return [
            Call(nft, calldata("mint(address)", ["address"], [self.account])),
            Call(nft, calldata("reissue(uint256)", ["uint256"], [token])),
            Call(nft, calldata("cancel(uint256)", ["uint256"], [token + 1])),
            Call(proofs, calldata("registerProof(string)", ["string"], [doc])),
            Call(proofs, calldata("revokeProof(string)", ["string"], [doc])),
            Call(
                proofs,
                calldata(
                    "storeProofDual(bytes32,bytes20,bytes32,uint256)",
                    ["bytes32", "bytes20", "bytes32", "uint256"],
                    [keccak(text=doc), keccak(text=doc)[:20], keccak(text=doc + "sig"), token],
                ),
            ),
            Call(failsafe, calldata("trigger(uint256)", ["uint256"], [token])),
        ]

    def emit_each_event(self) -> list[str]:
        """One of each of the seven SPEC events, one transaction each; returns the tx hashes."""
        return [self.send(call) for call in self.each_event_calls()]

    def batch_calls(self, n_per_type: int) -> list[Call]:
        """Calls emitting ``n_per_type`` events of every type, a few hundred events per transaction."""
        calls: list[Call] = []
        remaining = n_per_type
        while remaining > 0:
            count = min(remaining, _BATCH_CHUNK)
            first = self._take_ids(count * 2)
            data = calldata("emitBatch(uint256,uint256)", ["uint256", "uint256"], [first, count])
            calls += [Call(self.addresses[name], data) for name in CONTRACT_NAMES]
            remaining -= count
        return calls

    def emit_batch(self, n_per_type: int) -> list[str]:
        """Emit ``n_per_type`` events of each of the seven types in few transactions; tx hashes."""
        return [self.send(call) for call in self.batch_calls(n_per_type)]

    # --- blocks ----------------------------------------------------------------------------------

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks at once (anvil_mine)."""
        self.rpc("anvil_mine", [hex(blocks)])

    def head(self) -> int:
        """The latest block number."""
        return int(self.rpc("eth_blockNumber", []), 16)

    def snapshot(self) -> str:
        """An id to ``revert`` to (evm_snapshot)."""
        snapshot_id: str = self.rpc("evm_snapshot", [])
        return snapshot_id

    def revert(self, snap: str) -> None:
        """Return the chain to ``snap`` (which anvil then forgets)."""
        if not self.rpc("evm_revert", [snap]):
            raise DevChainError(f"evm_revert: unknown snapshot {snap}")

    def reorg(self, depth: int, txs: list[tuple[Call, int]] | None = None) -> None:
        """Replace the last ``depth`` blocks with new ones (anvil_reorg); the head number stays.

        ``txs`` are (call, block offset) pairs placed in the new blocks, offset 0 being the first
        replaced block (head - depth + 1). The replaced blocks' own transactions are dropped.
        """
        # An explicit gas limit: anvil would estimate each replacement against the state before the
        # new blocks, where e.g. a revokeProof of a proof registered in the same new block reverts,
        # so the estimate (and then the mined transaction) fails.
        pairs = [[_tx_request(self.account, call, gas=REORG_TX_GAS), offset] for call, offset in txs or []]
        self.rpc("anvil_reorg", [depth, pairs])

    # --- internals -------------------------------------------------------------------------------

    def _take_ids(self, count: int) -> int:
        first = self._next_id
        self._next_id += count
        return first

    def _deploy(self) -> None:
        for name in CONTRACT_NAMES:
            request = {"from": self.account, "data": self.artifacts[name]["bytecode"]}
            tx_hash: str = self.rpc("eth_sendTransaction", [request])
            receipt = self._wait_receipt(tx_hash)
            if receipt["status"] != "0x1" or not receipt.get("contractAddress"):
                raise DevChainError(f"deploying {name} failed")
            self.addresses[name] = to_checksum_address(receipt["contractAddress"])

    def _find_deployed(self) -> None:
        for nonce, name in enumerate(CONTRACT_NAMES):
            address = create_address(self.account, nonce)
            if self.rpc("eth_getCode", [address, "latest"]) in ("0x", "0x0"):
                raise DevChainError(f"loaded state has no {name} at {address}")
            self.addresses[name] = address
        # Fresh ids past anything a previous run could have used, so loaded and new events differ.
        self._next_id = 1 + self.head() * 10_000

    def _wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        deadline = time.monotonic() + _RECEIPT_TIMEOUT_S
        while True:
            receipt: dict[str, Any] | None = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise DevChainError(f"transaction {tx_hash} not mined within {_RECEIPT_TIMEOUT_S} s")
            # Only reached with interval mining (block_time); automine answers at once.
            time.sleep(0.05)


def _tx_request(sender: str, call: Call, gas: int | None = None) -> dict[str, str]:
    request = {"from": sender, "to": call.to, "data": call.data}
    if gas is not None:
        request["gas"] = hex(gas)
    return request


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(encoding="utf-8", errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.02)
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise DevChainError(f"anvil did not start (exit code {process.poll()}); log tail:\n{tail}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        # Generous: with --dump-state anvil serialises the whole chain before exiting.
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""A contract of a few EVM bytes, put on anvil with ``anvil_setCode``: every call emits one log whose
topic0 is fixed and whose data is the call's input, as it is. So a test makes real anvil emit a
``string`` argument holding any bytes (NUL, invalid UTF-8) without compiling a contract."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from exporter.demo.devchain import Call, DevChain

NOTE_SIGNATURE = "Note(string)"
NOTE_ABI: list[dict[str, Any]] = [
    {
        "type": "event",
        "name": "Note",
        "anonymous": False,
        "inputs": [{"name": "text", "type": "string", "indexed": False}],
    }
]


def emitter_code(topic0: bytes) -> str:
    """CALLDATACOPY(0, 0, CALLDATASIZE); LOG1(0, CALLDATASIZE, topic0); STOP."""
    assert len(topic0) == 32
    return "0x" + "3660006000" + "37" + "7f" + topic0.hex() + "36" + "6000" + "a1" + "00"


class NoteEmitter:
    """``Note(string text)`` events with arbitrary bytes for ``text``, from ``address`` on ``chain``."""

    def __init__(self, chain: DevChain, address: str) -> None:
        self.chain = chain
        self.address = address
        chain.rpc("anvil_setCode", [address, emitter_code(keccak(text=NOTE_SIGNATURE))])

    def emit(self, text: bytes) -> str:
        """One transaction emitting ``Note(text)`` (the ABI encoding of a string is that of bytes)."""
        return self.chain.send(Call(self.address, "0x" + encode(["bytes"], [text]).hex()))

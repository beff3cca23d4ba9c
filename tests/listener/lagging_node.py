"""A real loopback JSON-RPC proxy in front of anvil that plays a node lagging ``lag`` blocks behind:
the backend of a load-balanced provider that has not seen the newest blocks yet.

``eth_blockNumber`` answers ``head - lag``; ``eth_getBlockByNumber`` answers null above that (and
"latest" means that block); everything else is forwarded unchanged. ``lag = 0`` passes all through.
"""

from __future__ import annotations

from typing import Any

from tests.support.jsonrpc_node import JsonRpcNode


class LaggingNode(JsonRpcNode):
    def __init__(self, upstream: str) -> None:
        self.lag = 0
        super().__init__(upstream)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.lag == 0:
            return self._forward(request)
        head = int(self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})["result"], 16)
        shown = head - self.lag
        method, params = request["method"], request.get("params", [])
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": request["id"], "result": hex(shown)}
        if method == "eth_getBlockByNumber":
            tag = params[0]
            number = shown if tag in ("latest", "safe", "finalized", "pending") else int(tag, 16)
            if number > shown:
                return {"jsonrpc": "2.0", "id": request["id"], "result": None}
            request = {**request, "params": [hex(number), *params[1:]]}
        return self._forward(request)

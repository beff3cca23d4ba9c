"""A real loopback JSON-RPC proxy in front of anvil that plays a load-balanced provider whose
``eth_getLogs`` backend lags behind the one that serves headers.

* headers, the head and every other call come from the up-to-date node (forwarded unchanged);
* ``eth_getLogs`` over a block range answers as a node ``logs_lag`` blocks behind would: the logs of
  the newest ``logs_lag`` blocks are left out (``[]`` for a range made only of them);
* ``eth_getLogs`` by ``blockHash`` (EIP-234) for one of those blocks answers the error a node that
  lacks the block gives (``-32000 unknown block``, like geth and anvil), unless ``lag_hash_queries``
  is False (then the hash query reaches an up-to-date backend);
* ``drop_log(tx_hash, log_index)``: the next range answer holding that log leaves it out, once.

``getlogs_calls`` counts the ``eth_getLogs`` requests; ``dropped`` lists the logs left out by
``drop_log``. Batches are answered element by element.
"""

from __future__ import annotations

from typing import Any

from tests.support.jsonrpc_node import JsonRpcNode


class LoadBalancedNode(JsonRpcNode):
    def __init__(self, upstream: str, *, logs_lag: int = 0, lag_hash_queries: bool = True) -> None:
        self.logs_lag = logs_lag
        self.lag_hash_queries = lag_hash_queries
        self.getlogs_calls = 0
        self.dropped: list[dict[str, Any]] = []
        self._drop: tuple[str, int] | None = None
        super().__init__(upstream)

    def drop_log(self, tx_hash: str, log_index: int) -> None:
        """Leave this log out of the next range answer that holds it (once)."""
        self._drop = (tx_hash, log_index)

    def _call(self, method: str, params: list[Any]) -> Any:
        return self._forward({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).get("result")

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("method") != "eth_getLogs":
            return self._forward(request)
        with self._lock:
            self.getlogs_calls += 1
        newest_served = int(self._call("eth_blockNumber", []), 16) - self.logs_lag
        query = request["params"][0]
        if "blockHash" in query:
            block = self._call("eth_getBlockByHash", [query["blockHash"], False])
            if self.lag_hash_queries and (block is None or int(block["number"], 16) > newest_served):
                return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "unknown block"}}
            return self._forward(request)
        answer = self._forward(request)
        logs = answer.get("result")
        if not isinstance(logs, list):
            return answer
        served = [entry for entry in logs if int(entry["blockNumber"], 16) <= newest_served]
        if self._drop is not None:
            kept = [e for e in served if (e["transactionHash"], int(e["logIndex"], 16)) != self._drop]
            if len(kept) < len(served):
                self.dropped += [e for e in served if e not in kept]
                self._drop = None
                served = kept
        return {**answer, "result": served}

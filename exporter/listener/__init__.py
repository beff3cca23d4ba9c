"""The chain listener: follows the Blocktrust contracts and stores their events exactly once.

``Listener`` (service.py) is the entry point the wiring uses; the other modules are its parts:
contracts (the contracts file and ABIs), rpc (JSON-RPC client), fetch (one block range: logs and
headers), chain (parent-hash links, the common ancestor after a reorg), ranges (range sizing),
retry (back-off between tries), decode (eth-abi).
"""

from exporter.listener.service import CHECKPOINT_NAME, Listener, PollOutcome

__all__ = ["CHECKPOINT_NAME", "Listener", "PollOutcome"]

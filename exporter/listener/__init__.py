"""The chain listener: follows the Blocktrust contracts and stores their events exactly once.

``Listener`` (service.py) is the entry point the wiring uses; the other modules are its parts:
contracts (config), rpc (JSON-RPC client), ranges (range sizing, back-off), decode (eth-abi),
ingest (range fetching and reorg detection).
"""

from exporter.listener.service import CHECKPOINT_NAME, Listener, PollOutcome
from exporter.store.base import HEARTBEAT_CHECK

__all__ = ["CHECKPOINT_NAME", "HEARTBEAT_CHECK", "Listener", "PollOutcome"]

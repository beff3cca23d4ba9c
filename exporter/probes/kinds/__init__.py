"""The kinds of check, one module each, and ``PROBES``: from a check's ``kind`` to its probe function
(blackbox_exporter's prober table).

Adding a kind is one module here with a ``ProbeFn`` (``exporter.probes.probe``), one line in
``PROBES`` and its name in ``exporter.config.CHECK_KINDS`` (config validation rejects unknown kinds
at load time; a test keeps the two lists equal). Not for running probes: ``runner.py`` does that.
"""

from __future__ import annotations

from exporter.probes.kinds.balance import probe_balance
from exporter.probes.kinds.chain_head import probe_chain_head
from exporter.probes.kinds.eth_call import probe_eth_call
from exporter.probes.kinds.http import probe_http
from exporter.probes.kinds.listener_lag import probe_lag
from exporter.probes.kinds.listener_progress import probe_progress
from exporter.probes.kinds.synthetic_hash import probe_hash
from exporter.probes.probe import ProbeFn

PROBES: dict[str, ProbeFn] = {
    "http": probe_http,
    "synthetic.hash": probe_hash,
    "listener.lag": probe_lag,
    "listener.progress": probe_progress,
    "chain.head": probe_chain_head,
    "eth_call": probe_eth_call,
    "balance": probe_balance,
}

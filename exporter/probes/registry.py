"""From a check's ``kind`` to its probe function (blackbox_exporter's prober table).

Adding a kind is one module with a ``ProbeFn``, one line here and its name in
``exporter.config.CHECK_KINDS`` (config validation rejects unknown kinds at load time; a test
keeps the two lists equal). Not for running probes: ``round.py`` does that.
"""

from __future__ import annotations

from exporter.probes.base import ProbeFn
from exporter.probes.http import probe_http
from exporter.probes.listener_lag import probe_lag
from exporter.probes.listener_progress import probe_progress
from exporter.probes.synthetic_hash import probe_hash

PROBES: dict[str, ProbeFn] = {
    "http": probe_http,
    "synthetic.hash": probe_hash,
    "listener.lag": probe_lag,
    "listener.progress": probe_progress,
}

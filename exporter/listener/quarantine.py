"""What the listener does with the events the store quarantined: count them and raise an incident.

The store keeps them (``quarantined_events``, with the raw log and the database's reason) in the same
transaction as the range's other events and checkpoint, so ingestion goes on; this module makes sure
nobody has to look into the table to learn of them. Not for storing (``exporter.store``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from exporter.metrics import Metrics
from exporter.store.base import QuarantinedEvent

log = logging.getLogger(__name__)

IncidentCallback = Callable[[str, str], None]  # (title, detail)
TITLE = "Events quarantined: the store refused them"


def describe(items: Sequence[QuarantinedEvent]) -> str:
    """The incident's detail: how many, the first one's place and the database's reason."""
    first = items[0]
    where = f"block {first.event.block_number}, tx {first.event.tx_hash!a}, log {first.event.log_index}"
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return (
        f"{len(items)} {first.event.type!a} event(s) kept in quarantined_events instead of events{more}: "
        f"{where}: {first.reason}. Ingestion goes on; fix the cause, then re-insert or drop the rows."
    )


class QuarantineReporter:
    """Counts quarantined events (``blocktrust_listener_quarantined_events_total``), logs them and
    raises an incident through ``on_incident`` (title, detail; None: the log line only), logging if
    that fails (the count stays)."""

    def __init__(self, metrics: Metrics, on_incident: IncidentCallback | None) -> None:
        self._metrics = metrics
        self._on_incident = on_incident

    def report(self, items: Sequence[QuarantinedEvent]) -> None:
        if not items:
            return
        self._metrics.listener_quarantined.inc(len(items))
        detail = describe(items)
        log.error("listener: %s: %s", TITLE, detail)
        if self._on_incident is None:
            return
        try:
            self._on_incident(TITLE, detail)
        except Exception:
            log.exception("listener: raising the quarantine incident failed")

"""What the listener does with the events the store quarantined: count them, raise an incident, and
resolve it once an operator has emptied the quarantine.

The store keeps them (``quarantined_events``, with the raw log and the database's reason) in the same
transaction as the range's other events and checkpoint, so ingestion goes on; this module makes sure
nobody has to look into the table to learn of them. Not for storing (``exporter.store``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from exporter.metrics import Metrics
from exporter.store.base import QuarantinedEvent, StoreError

log = logging.getLogger(__name__)

IncidentCallback = Callable[[str, str], None]  # (title, detail)
ClearedCallback = Callable[[], None]
TITLE = "Events quarantined: the store refused them"


def describe(items: Sequence[QuarantinedEvent]) -> str:
    """The incident's detail: how many, the first one's place and the database's reason."""
    first = items[0]
    where = f"block {first.event.block_number}, tx {first.event.tx_hash!a}, log {first.event.log_index}"
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return (
        f"{len(items)} {first.event.type!a} event(s) kept in quarantined_events instead of events{more}: "
        f"{where}: {first.reason}. Ingestion goes on; fix the cause, then re-insert or delete the rows "
        "(the incident resolves once the table is empty)."
    )


class QuarantineReporter:
    """Counts quarantined events (``blocktrust_listener_quarantined_events_total``), logs them and
    raises an incident through ``on_incident`` (title, detail). ``review`` (once per poll) calls
    ``on_cleared`` once ``count`` (the rows waiting in quarantine) is 0 again; it asks only while an
    incident may be open (after a report, and once after start). A failing callback is logged."""

    def __init__(
        self,
        metrics: Metrics,
        count: Callable[[], int],
        on_incident: IncidentCallback | None = None,
        on_cleared: ClearedCallback | None = None,
    ) -> None:
        self._metrics = metrics
        self._count = count
        self._on_incident = on_incident
        self._on_cleared = on_cleared
        self._may_be_open = on_cleared is not None  # an incident of an earlier run may still be open

    def report(self, items: Sequence[QuarantinedEvent]) -> None:
        if not items:
            return
        self._metrics.listener_quarantined.inc(len(items))
        detail = describe(items)
        log.error("listener: %s: %s", TITLE, detail)
        if self._on_incident is None:
            return
        self._may_be_open = self._on_cleared is not None
        try:
            self._on_incident(TITLE, detail)
        except Exception:
            log.exception("listener: raising the quarantine incident failed")

    def review(self) -> None:
        """Resolve the incident when nothing waits in quarantine any more. Never raises."""
        if not self._may_be_open or self._on_cleared is None:
            return
        try:
            if self._count():
                return
        except StoreError:
            return  # asked again at the next poll
        try:
            self._on_cleared()
        except Exception:
            log.exception("listener: resolving the quarantine incident failed")
            return
        self._may_be_open = False

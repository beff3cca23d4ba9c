"""The dead man's switch: ``alerting.heartbeat_url`` is called after each healthy check round
(healthchecks.io, Cronitor, Uptime Kuma's push monitors), so that an exporter that died, hangs or can
no longer record or notify is noticed from outside: the service there alerts when the pings stop.

A *healthy round* says the monitor works, not that the monitored API does (its failures are the
notices' business): the round ran every check to a verdict (none cut short by the round's deadline
or crashed in a probe), the process is healthy (no stalled job, the alert engine's and every
channel's thread alive: ``/healthz``), and the store took the last write. The runtime judges that
(``round_healthy``) and calls ``round_done``.

The request goes out from this module's own thread (a slow or dead ping service never delays a
round), at most one at a time; a round ending while one is in flight asks for one more after it.
A failing ping is logged once per failing streak (and when it works again), counted in
``blocktrust_heartbeat_pings_total{outcome}``, and never raises. The URL may carry a token: it is a
secret, never logged; errors are masked with ``redact``. Not for deciding what is healthy beyond
the round's own results (``runtime.py`` passes that in).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Literal

import requests

from exporter.metrics import Metrics
from exporter.redact import no_redaction
from exporter.store.base import CheckResult

log = logging.getLogger(__name__)

# Results whose error says the round itself did not work (not that a checked service failed).
ROUND_FAILURES = frozenset({"round_timeout", "internal_error"})


def round_healthy(results: Sequence[CheckResult], process_healthy: bool, store_writing: bool) -> bool:
    """Whether a round counts for the heartbeat: it gave results, none of them an error of the round
    itself (``ROUND_FAILURES``), and the process and the store were fine."""
    if not results or not process_healthy or not store_writing:
        return False
    return not any(r.details.get("error") in ROUND_FAILURES for r in results)


class HeartbeatPinger:
    """Pings ``url`` (GET, or POST with an empty body) after each healthy round, from its own thread."""

    def __init__(
        self,
        url: str,
        session: requests.Session,
        metrics: Metrics,
        *,
        method: Literal["GET", "POST"] = "GET",
        timeout: float = 10.0,
        redact: Callable[[str], str] = no_redaction,
    ) -> None:
        self._url = url
        self._session = session
        self._metrics = metrics
        self._method = method
        self._timeout = timeout
        self._redact = redact
        self._due = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        for outcome in ("success", "failure"):
            metrics.heartbeat_pings.labels(outcome=outcome)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """No ping after this returns (one in flight is given ``timeout`` real seconds to end)."""
        self._stopped.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def round_done(self, healthy: bool) -> None:
        """A round ended: ping if it was healthy (never blocks)."""
        if healthy and not self._stopped.is_set():
            self._due.set()

    def ping(self) -> bool:
        """One request now; True when the service answered 2xx. Never raises."""
        try:
            with self._session.request(
                self._method, self._url, timeout=self._timeout, allow_redirects=False, stream=True
            ) as response:
                ok = 200 <= response.status_code < 300
                problem = f"HTTP {response.status_code}"
        except (requests.RequestException, OSError) as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        self._metrics.heartbeat_pings.labels(outcome="success" if ok else "failure").inc()
        if ok and self._failing:
            self._failing = False
            log.info("heartbeat ping works again")
        elif not ok and not self._failing:
            self._failing = True  # once per streak: a ping service down must not flood the log
            log.warning("heartbeat ping failed (logged once until it works again): %s", self._redact(problem))
        return ok

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stopped.is_set():
                return
            try:
                self.ping()
            except Exception:  # a bug must not end the switch silently: the pings would stop
                log.exception("heartbeat: unexpected error (carrying on)")

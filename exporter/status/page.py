"""The status page (``/``) and its JSON (``/api/v1/status``) as WSGI apps for ``exporter.server``.

The page is one Jinja2 template shipped in the package (``templates/status.html``), rendered with
autoescaping on (check names, reasons and incident texts come from servers and configuration), with
inline CSS, no script and no external asset, so that it works offline and behind a firewall; a
Content-Security-Policy header lets the browser enforce that. It reloads itself with a meta refresh.
Not for building the data: ``model.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2

from exporter.status.model import StatusBuilder
from exporter.store import StoreError

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

STATUS_PATH = "/"
STATUS_JSON_PATH = "/api/v1/status"
# Nothing may load from elsewhere, and nothing runs: the page is HTML and inline CSS only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("exporter.status", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def ago(seconds: float | None) -> str:
    """``75`` -> ``"1m 15s"``: an age short enough for a phone's line."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{hours // 24}d {hours % 24}h"


def utc_text(value: str | None) -> str:
    """An ISO ``...Z`` time of the document as ``2026-11-29 21:05:09 UTC``."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def bucket_cells(check: Mapping[str, Any], window: Mapping[str, Any]) -> list[dict[str, str]]:
    """One cell per history bucket: its state (none/up/partial/down) and a tooltip."""
    start = datetime.fromisoformat(window["since"]).timestamp()
    width = float(window["bucket_seconds"])
    cells = []
    for index, (runs, failures) in enumerate(zip(check["history"]["runs"], check["history"]["failures"], strict=True)):
        begin = datetime.fromtimestamp(start + index * width, UTC).strftime("%H:%M")
        end = datetime.fromtimestamp(start + (index + 1) * width, UTC).strftime("%H:%M")
        if runs == 0:
            state, text = "none", "no runs"
        else:
            state = "up" if failures == 0 else "down" if failures == runs else "partial"
            text = f"{runs} runs, {failures} failed"
        cells.append({"state": state, "title": f"{begin}-{end} UTC: {text}"})
    return cells


def budget_text(left_percent: float | None) -> str:
    """The error budget for a person: ``budget left 42%``, or once overspent ``budget exhausted (200×
    the allowed failures)`` rather than ``budget left -19900%`` (``None``: no failure was allowed)."""
    if left_percent is None:
        return "budget exhausted"
    if left_percent >= 0:
        return f"budget left {left_percent:.0f}%"
    used = (100.0 - left_percent) / 100.0  # times the allowed failures
    times = f"{used:.0f}" if used >= 10 else f"{used:.1f}"
    return f"budget exhausted ({times}× the allowed failures)"


_ENVIRONMENT.filters["ago"] = ago
_ENVIRONMENT.filters["budget"] = budget_text
_ENVIRONMENT.filters["utc"] = utc_text
_ENVIRONMENT.globals["bucket_cells"] = bucket_cells


def render_page(document: Mapping[str, Any]) -> str:
    """The HTML page for a status document (see ``model.py``)."""
    return _ENVIRONMENT.get_template("status.html").render(status=document)


def render_unavailable(generated_at: str) -> str:
    return _ENVIRONMENT.get_template("unavailable.html").render(generated_at=generated_at)


def status_routes(builder: StatusBuilder) -> dict[str, WsgiApp]:
    """``{path: app}`` for ``exporter.server``: the page and its JSON. When the store does not
    answer, both say so with a 503 (the page as a short HTML notice) instead of failing."""

    def page(_environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body, status = render_page(builder.build()), "200 OK"
        except StoreError as exc:
            log.warning("status page: store unreachable error=%r", str(exc))
            body = render_unavailable(utc_text(datetime.now(UTC).isoformat()))
            status = "503 Service Unavailable"
        start_response(
            status,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                *_COMMON_HEADERS,
            ],
        )
        return [body.encode()]

    def api(_environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            payload: dict[str, Any] = builder.build()
            status = "200 OK"
        except StoreError as exc:
            log.warning("status api: store unreachable error=%r", str(exc))
            payload, status = {"error": "store unreachable"}, "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), *_COMMON_HEADERS])
        return [json.dumps(payload, separators=(",", ":")).encode()]

    return {STATUS_PATH: page, STATUS_JSON_PATH: api}

"""Process-wide logging set-up: one line per event, logfmt by default or JSON, secrets masked.

The redaction filter sits on the handler, so it sees records from every library too (requests and
urllib3 print URLs, and a Telegram URL holds the bot token). Not for choosing what is secret:
``Config.secrets()`` does that.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from exporter.redact import RedactingFilter, Redactor


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t\\'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…"``; a traceback becomes one escaped ``exc`` field."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields.append(("exc", record.exc_text))
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields)


# Attributes every LogRecord has; the others came through ``extra=`` (the JSON record carries them).
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, exc, and the scalar fields given with
    ``extra=`` (``log.info("...", extra={"listen": "0.0.0.0:9108"})``), which never replace those four."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, str | int | float | bool] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            body["exc"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in body and isinstance(value, str | int | float | bool):
                body[key] = value
        return json.dumps(body, ensure_ascii=False)


def setup_logging(
    *,
    fmt: str = "logfmt",
    level: str = "info",
    secrets: list[str] | None = None,
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one that formats, and masks ``secrets``, every record.
    With ``redactor``, that one masks instead (so secrets it learns while running, the monitoring JWT,
    are masked in the logs too)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RedactingFilter(redactor if redactor is not None else Redactor(secrets or [])))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Per-request chatter from these libraries is noise at info level.
    for noisy in ("urllib3", "web3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler

"""Faults the simulator can inject per endpoint, and their one-line text form.

Text form (``--fail PATH=SPEC``, the admin endpoint): comma-separated parts, e.g. ``500``,
``latency:200ms``, ``latency:2s,503``, ``malformed``, ``wrong-shape``, ``wrong-hash``,
``expired`` (401 as for an expired token), ``reset``, ``trickle``, ``endless``, ``oversized``,
and ``once`` / ``times:N`` to apply it to the next N requests only. Not for serving requests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Literal

from exporter.config import parse_duration

BodyFault = Literal["malformed", "wrong_shape", "wrong_hash", "trickle", "endless", "oversized"]
_BODY_FAULTS: tuple[BodyFault, ...] = ("malformed", "wrong_shape", "wrong_hash", "trickle", "endless", "oversized")


@dataclass(frozen=True)
class Fault:
    """What goes wrong on one endpoint. ``times=None`` means until cleared."""

    latency: float = 0.0  # seconds added before answering
    status: int | None = None  # answer this status (with a small JSON error body)
    body: BodyFault | None = None
    reset: bool = False  # close the connection with a TCP RST instead of answering
    times: int | None = None

    def text(self) -> str:
        """The text form ``parse_fault`` reads back."""
        parts = [f"latency:{self.latency:g}s"] if self.latency else []
        parts += [str(self.status)] if self.status is not None else []
        parts += [self.body.replace("_", "-")] if self.body else []
        parts += ["reset"] if self.reset else []
        parts += [f"times:{self.times}"] if self.times is not None else []
        return ",".join(parts) or "none"


def parse_fault(text: str) -> Fault:
    """``"latency:200ms,503"`` -> ``Fault(latency=0.2, status=503)``; ``ValueError`` when unknown."""
    fault = Fault()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, arg = part.partition(":")
        key = name.replace("-", "_")
        if name.isdigit() and 100 <= int(name) <= 599:
            fault = replace(fault, status=int(name))
        elif key in ("latency", "delay") and arg:
            fault = replace(fault, latency=parse_duration(arg))
        elif key == "expired":
            fault = replace(fault, status=401)
        elif key == "reset":
            fault = replace(fault, reset=True)
        elif key == "once":
            fault = replace(fault, times=1)
        elif key == "times" and arg.isdigit():
            fault = replace(fault, times=int(arg))
        elif key in _BODY_FAULTS:
            fault = replace(fault, body=key)
        else:
            raise ValueError(
                f"unknown fault {part!r} (a status code, latency:DURATION, malformed, wrong-shape, "
                "wrong-hash, expired, reset, trickle, endless, oversized, once, times:N)"
            )
    return fault


def parse_fail_flag(text: str) -> tuple[str, Fault]:
    """``"/api/explorer/stats=500"`` -> (path, fault)."""
    path, sep, spec = text.partition("=")
    if not sep or not path.startswith("/"):
        raise ValueError(f"expected PATH=FAULT like /api/explorer/stats=500, got {text!r}")
    return path, parse_fault(spec)


class FaultTable:
    """Thread-safe map from path to its current fault; counts down ``times``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def set(self, path: str, fault: Fault) -> None:
        with self._lock:
            self._faults[path] = fault

    def clear(self, path: str | None = None) -> None:
        with self._lock:
            if path is None:
                self._faults.clear()
            else:
                self._faults.pop(path, None)

    def take(self, path: str) -> Fault | None:
        """The fault for one request to ``path`` (consuming one use of a counted fault)."""
        with self._lock:
            fault = self._faults.get(path)
            if fault is None or fault.times is None:
                return fault
            if fault.times <= 1:
                del self._faults[path]
            else:
                self._faults[path] = replace(fault, times=fault.times - 1)
            return fault

    def snapshot(self) -> dict[str, Fault]:
        with self._lock:
            return dict(self._faults)

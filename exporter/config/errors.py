"""The errors the configuration raises."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the culprit."""


class KeyPathError(ValueError):
    """A model validator's complaint about one of the model's own keys (``keys``, relative to the
    model), so that the error names ``checks.interval`` rather than ``checks``, and the origin of
    that key (the file or an environment variable) is the one reported."""

    def __init__(self, keys: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.keys = keys

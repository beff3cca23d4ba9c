"""The one error the configuration raises."""


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the culprit."""

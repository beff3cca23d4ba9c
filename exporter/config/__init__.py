"""Configuration: typed, frozen, validated; plain data that imports no feature of the exporter.

``load_config`` (load.py) reads the file, expands ``${VAR}`` inside its parsed text values, overlays
SPEC §3's variables (or their ``X_FILE``), and raises ``ConfigError`` (errors.py) with one line naming
the culprit. files.py reads any file a user gives (strict UTF-8, YAML without duplicate keys); the
web configuration file and ``contracts_config.json`` use it too. The
sections are in models.py, value types (durations, URLs, times) in types.py, checks and the nine
defaults of SPEC §1 in checks.py, the accepted ``DATABASE_URL`` forms in database_url.py.
"""

from exporter.config.checks import (
    CHAIN_HEAD_CHECK,
    CHAIN_KINDS,
    CHECK_KINDS,
    CHECK_NAME_CHARSET,
    HEARTBEAT_CHECK,
    LISTENER_QUARANTINE_INCIDENT,
    LISTENER_REORG_INCIDENT,
    SLO_INCIDENT_PREFIX,
    CheckSpec,
    check_name_problem,
    default_checks,
)
from exporter.config.errors import ConfigError
from exporter.config.load import DEFAULT_CONFIG_PATH, ENV_VARS, SECRET_ENV_VARS, load_config
from exporter.config.models import (
    AlertingSettings,
    ApiSettings,
    ChecksSettings,
    Config,
    EventRule,
    ListenerSettings,
    LogSettings,
    MaintenanceWindow,
    ServerSettings,
    SlackSettings,
    SloSettings,
    StatusPageSettings,
    StoreSettings,
    TelegramSettings,
    WebhookSettings,
)
from exporter.config.types import Severity, parse_clock_time, parse_duration, parse_instant

__all__ = [
    "CHAIN_HEAD_CHECK",
    "CHAIN_KINDS",
    "CHECK_KINDS",
    "CHECK_NAME_CHARSET",
    "DEFAULT_CONFIG_PATH",
    "ENV_VARS",
    "HEARTBEAT_CHECK",
    "LISTENER_QUARANTINE_INCIDENT",
    "LISTENER_REORG_INCIDENT",
    "SECRET_ENV_VARS",
    "SLO_INCIDENT_PREFIX",
    "AlertingSettings",
    "ApiSettings",
    "CheckSpec",
    "ChecksSettings",
    "Config",
    "ConfigError",
    "EventRule",
    "ListenerSettings",
    "LogSettings",
    "MaintenanceWindow",
    "ServerSettings",
    "Severity",
    "SlackSettings",
    "SloSettings",
    "StatusPageSettings",
    "StoreSettings",
    "TelegramSettings",
    "WebhookSettings",
    "check_name_problem",
    "default_checks",
    "load_config",
    "parse_clock_time",
    "parse_duration",
    "parse_instant",
]

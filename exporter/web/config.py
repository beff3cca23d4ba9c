"""The web configuration file (``--web.config.file``, ``WEB_CONFIG_FILE``, ``server.web_config_file``),
in the format of the Prometheus exporter-toolkit, and the ``WebSecurity`` it describes.

The subset supported::

    tls_server_config:
      cert_file: server.crt          # PEM; both or neither of cert_file and key_file
      key_file: server.key
      client_auth_type: NoClientCert # or VerifyClientCertIfGiven, RequireAndVerifyClientCert
      client_ca_file: ca.crt         # required by the two verifying client_auth_types
      min_version: TLS12             # TLS10, TLS11, TLS12 (default), TLS13
      max_version: TLS13
    basic_auth_users:                # empty or absent: no authentication
      alice: $2y$10$...              # bcrypt hashes, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`

Relative file names are read from the web configuration file's folder, as the toolkit does. The
toolkit's other keys (inline ``cert``/``key``/``client_ca``, ``cipher_suites``, ``curve_preferences``,
``client_allowed_sans``, ``http_server_config``, ``rate_limit``...) are refused, as are unknown
keys: each problem is one ``WebConfigError`` line naming the file and the key. A key given twice (a
repeated ``basic_auth_users:`` would otherwise silently replace the users, turning auth off) and text
that is not UTF-8 are refused as in the main configuration (``exporter.config.files``). A hash is never
quoted back (a password pasted by mistake would land in a log). The file is read once, at start:
restart to pick up new certificates.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.config.errors import ConfigError
from exporter.config.files import decode_text, parse_yaml
from exporter.web.auth import BasicAuth, WsgiApp, bcrypt_cost_problem

BCRYPT_HASH = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")  # the cost: bcrypt_cost_problem
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# The toolkit's keys we know but do not implement: refused with a reason rather than ignored.
_UNSUPPORTED = {
    "": {"http_server_config", "rate_limit"},
    "tls_server_config": {
        "cert",
        "key",
        "client_ca",
        "client_allowed_sans",
        "cipher_suites",
        "prefer_server_cipher_suites",
        "curve_preferences",
    },
}
_UNSUPPORTED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}


class WebConfigError(Exception):
    """One line: the file, the key path and what is wrong."""


@dataclass(frozen=True)
class WebSecurity:
    """What the server applies: ``tls`` (None: plain HTTP) and ``auth`` (None: open)."""

    source: str | None = None
    tls: ssl.SSLContext | None = None
    auth: BasicAuth | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` with access control in front (itself when no user is configured)."""
        return self.auth.wrap(app) if self.auth is not None else app

    def describe(self) -> str:
        """``https, basic auth`` / ``http, open``: for the banner."""
        return f"{self.scheme}, {'basic auth' if self.auth is not None else 'no auth'}"


def load_web_config(path: str | None) -> WebSecurity:
    """Read and check the web configuration file; ``None`` means no file: plain HTTP, no auth.

    Raises ``WebConfigError`` (one line) for an unreadable file, bad YAML, an unknown or unsupported
    key, a value of the wrong type, a malformed bcrypt hash, or certificates that do not load.
    """
    if not path:
        return WebSecurity()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read the web configuration file: {exc.strerror}") from None
    try:  # the main configuration's reading: strict UTF-8, and a key given twice is an error
        tree = parse_yaml(decode_text(data, path), path)
    except ConfigError as exc:
        raise WebConfigError(str(exc)) from None
    tree = {} if tree is None else tree
    problem = _Problems(path)
    root = problem.mapping(tree, "")
    problem.keys(root, "", _TOP_KEYS)
    folder = Path(path).resolve().parent
    tls_tree = root.get("tls_server_config")
    tls = _tls_context(problem, problem.mapping(tls_tree, "tls_server_config"), folder) if tls_tree else None
    users = _users(problem, root.get("basic_auth_users"))
    return WebSecurity(source=path, tls=tls, auth=BasicAuth(users) if users else None)


class _Problems:
    """Raising helpers that phrase every problem as ``file: key.path: what``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, what: str) -> WebConfigError:
        return WebConfigError(f"{self.source}: {key}: {what}" if key else f"{self.source}: {what}")

    def mapping(self, node: object, key: str) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise self.fail(key, f"expected a mapping, got {type(node).__name__}")
        return node

    def keys(self, node: Mapping[Any, Any], key: str, allowed: set[str]) -> None:
        for name in node:
            where = f"{key}.{name}" if key else str(name)
            if name in _UNSUPPORTED.get(key, set()):
                raise self.fail(where, "not supported by blocktrust-exporter")
            if name not in allowed:
                raise self.fail(where, "unknown key")

    def string(self, node: Mapping[str, Any], key: str, name: str) -> str | None:
        value = node.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key}.{name}", "expected a non-empty string")
        return value


def _tls_context(problem: _Problems, node: dict[str, Any], folder: Path) -> ssl.SSLContext:
    key = "tls_server_config"
    problem.keys(node, key, _TLS_KEYS)
    cert_file, key_file = problem.string(node, key, "cert_file"), problem.string(node, key, "key_file")
    if cert_file is None or key_file is None:
        missing = "cert_file" if cert_file is None else "key_file"
        raise problem.fail(f"{key}.{missing}", "required: TLS needs both cert_file and key_file")
    auth_type = problem.string(node, key, "client_auth_type") or "NoClientCert"
    if auth_type in _UNSUPPORTED_CLIENT_AUTH:
        raise problem.fail(
            f"{key}.client_auth_type",
            f"{auth_type} is not supported (it accepts unverified certificates); use RequireAndVerifyClientCert",
        )
    if auth_type not in CLIENT_AUTH_TYPES:
        raise problem.fail(
            f"{key}.client_auth_type", f"expected one of {', '.join(CLIENT_AUTH_TYPES)}, got {auth_type!r}"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = problem.string(node, key, name) or default
        if text not in TLS_VERSIONS:
            raise problem.fail(f"{key}.{name}", f"expected one of {', '.join(TLS_VERSIONS)}, got {text!r}")
        versions[name] = TLS_VERSIONS[text]
    if versions["min_version"] > versions["max_version"]:
        raise problem.fail(f"{key}.min_version", "must not be above max_version")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = versions["min_version"]
        context.maximum_version = versions["max_version"]
    except (ValueError, ssl.SSLError) as exc:
        raise problem.fail(f"{key}.min_version", f"not available in this Python's OpenSSL: {exc}") from None
    cert_path, key_path = folder / cert_file, folder / key_file
    for name, file in (("cert_file", cert_path), ("key_file", key_path)):
        _readable(problem, f"{key}.{name}", file)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise problem.fail(
            f"{key}.cert_file", f"cannot load the certificate and key ({cert_path}, {key_path}): {exc.reason or exc}"
        ) from None
    ca_file = problem.string(node, key, "client_ca_file")
    if CLIENT_AUTH_TYPES[auth_type] != ssl.CERT_NONE and ca_file is None:
        raise problem.fail(f"{key}.client_ca_file", f"required by client_auth_type {auth_type}")
    if ca_file is not None:
        ca_path = folder / ca_file
        _readable(problem, f"{key}.client_ca_file", ca_path)
        try:
            context.load_verify_locations(cafile=ca_path)
        except ssl.SSLError as exc:
            raise problem.fail(
                f"{key}.client_ca_file", f"cannot load the CA certificates ({ca_path}): {exc.reason or exc}"
            ) from None
    context.verify_mode = CLIENT_AUTH_TYPES[auth_type]
    return context


def _readable(problem: _Problems, key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise problem.fail(key, f"cannot read {path}: {exc.strerror}") from None


def _users(problem: _Problems, node: object) -> dict[str, str]:
    if node is None:
        return {}
    users: dict[str, str] = {}
    for name, hashed in problem.mapping(node, "basic_auth_users").items():
        where = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name:
            raise problem.fail(where, "a user name must be a non-empty string")
        if ":" in name:
            raise problem.fail(where, "a user name cannot contain ':' (basic auth separates it from the password)")
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            # Never quote it: a plain password pasted here by mistake would end up in a log.
            raise problem.fail(where, 'expected a bcrypt hash like "$2y$10$" and 53 characters (value hidden)')
        cost_problem = bcrypt_cost_problem(hashed)
        if cost_problem:
            raise problem.fail(where, cost_problem)
        users[name] = hashed
    return users

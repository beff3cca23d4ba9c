"""Access control for the exporter's HTTP server: the web configuration file (``--web.config.file``,
the format of the Prometheus exporter-toolkit) and what it turns into, a TLS context and a basic-auth
layer wrapped around the whole WSGI app, so every route, present or future, is covered.

Not for routes or serving (``exporter.server``); the runtime hands what this builds to the server.
"""

from exporter.web.auth import BasicAuth
from exporter.web.config import WebConfigError, WebSecurity, load_web_config

__all__ = ["BasicAuth", "WebConfigError", "WebSecurity", "load_web_config"]

"""The status page: ``/`` (HTML) and ``/api/v1/status`` (JSON, API version 1) for operators.

``model.StatusBuilder`` reads the store and the SLO report into one document; ``page.status_routes``
serves it as WSGI apps that ``runtime`` hands to ``exporter.server``. It sits beside ``runtime``
(layer 3) because it reads the outputs of several features (the SLO report, the listener's
heartbeat, the alert engine's incidents); no feature imports it.
"""

from exporter.status.model import API_VERSION, StatusBuilder
from exporter.status.page import STATUS_JSON_PATH, STATUS_PATH, render_page, status_routes

__all__ = ["API_VERSION", "STATUS_JSON_PATH", "STATUS_PATH", "StatusBuilder", "render_page", "status_routes"]

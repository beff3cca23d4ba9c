"""The start-up banner (the seed's ``BLOCKTRUST MONITORING SYSTEM``) and safe renderings of URLs.

The banner is 16 plain lines for a person (logfmt), or one JSON log record with the same fields
(``--log-format json``): ``banner_fields`` holds what it says, ``banner_lines`` lays it out.

Secret-bearing URLs are shown as scheme, host and port only: enough for an operator to see where
the exporter points, never the credentials or API keys in userinfo, path or query.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from exporter.config import Config


def exporter_version() -> str:
    try:
        return version("blocktrust-exporter")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def public_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, with ``/…`` when a path was hidden."""
    if url.startswith("sqlite:///"):
        return url
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def _without_userinfo(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def store_display(config: Config) -> str:
    if config.store.url is None:
        return f"sqlite (embedded) {config.store.sqlite_path}"
    url = config.store.url.get_secret_value()
    if url.startswith("sqlite:///"):
        return f"sqlite {url[len('sqlite:///') :]}"
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or "(default)"
    return f"postgresql {public_url(url).removesuffix('/…')}/{database}"


def base_url(listen: str, scheme: str = "http") -> str:
    """Where a person on this machine opens the server: ``0.0.0.0:9108`` -> ``http://localhost:9108``."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):  # noqa: S104 - recognising the wildcard, not binding to it
        host = "localhost"
    return f"{scheme}://{host}:{port}"


def banner_fields(
    config: Config,
    parts: dict[str, bool],
    *,
    title: str = "BLOCKTRUST MONITORING SYSTEM",
    scheme: str = "http",
    access: str = "http, no auth",
) -> dict[str, str]:
    """What the banner says, as name -> text (the lines of ``banner_lines``, and one JSON log record's
    fields with ``--log-format json``). ``parts`` says which components run (name -> enabled);
    ``scheme`` and ``access`` describe the web configuration (TLS, basic auth)."""
    alerting = config.alerting
    channels = [
        name
        for name, on in (
            ("slack", alerting.slack.webhook_url is not None),
            ("telegram", alerting.telegram.bot_token is not None),
            ("webhook", alerting.webhook.url is not None),
            ("console", alerting.console.enabled),
        )
        if on
    ]
    rpc = config.listener.rpc_endpoints
    return {
        "title": title,
        "version": exporter_version(),
        "config": str(config.source),
        "listen": config.server.listen,
        "access": access,
        "store": store_display(config),
        "api": _without_userinfo(config.api.base_url) or "(not set: API checks disabled)",
        "rpc": ", ".join(public_url(url) for url in rpc) if rpc else "(not set: listener and chain checks off)",
        "checks": f"every {config.checks.interval:g}s",
        "listener": listener_line(config, parts),
        "slo": f"uptime {config.slo.uptime_target:g}%, latency {config.slo.latency_ms} ms, "
        f"report every {config.slo.report_interval:g}s",
        "alerts": ", ".join(channels) if channels else "(no channel configured)",
        "parts": ", ".join(f"{name}={'on' if on else 'off'}" for name, on in parts.items()),
        "status_page": f"{base_url(config.server.listen, scheme)}/",
        "metrics": f"{base_url(config.server.listen, scheme)}/metrics",
    }


def listener_line(config: Config, parts: dict[str, bool]) -> str:
    """Where the listener runs, and whether the listener.* checks run (they judge its heartbeat)."""
    settings = config.listener
    timing = f"every {settings.poll_interval:g}s, max lag {settings.max_lag:g}s"
    if parts.get("listener"):
        return timing
    if settings.elsewhere:
        return f"in another process (listener.elsewhere), its heartbeat judged here; max lag {settings.max_lag:g}s"
    not_run = "listener.lag and listener.progress not run"
    if not settings.enabled:
        return f"off (listener.enabled: false); {not_run}"
    if not settings.rpc_endpoints:
        return f"off (no POLYGON_RPC_URL); {not_run} (set LISTENER_ELSEWHERE=true if `listen` runs elsewhere)"
    return f"not in this process; {timing}"


def banner_lines(
    config: Config,
    parts: dict[str, bool],
    *,
    title: str = "BLOCKTRUST MONITORING SYSTEM",
    scheme: str = "http",
    access: str = "http, no auth",
) -> list[str]:
    """The banner, one string per line, ending with where to look (see ``banner_fields``)."""
    f = banner_fields(config, parts, title=title, scheme=scheme, access=access)
    rule = "=" * 60
    return [
        rule,
        f"🎯 {f['title']} v{f['version']}",
        rule,
        f"  config:      {f['config']}",
        f"  listen:      {f['listen']}  ({f['access']})",
        f"  store:       {f['store']}",
        f"  api:         {f['api']}",
        f"  rpc:         {f['rpc']}",
        f"  checks:      {f['checks']}",
        f"  listener:    {f['listener']}",
        f"  slo:         {f['slo']}",
        f"  alerts:      {f['alerts']}",
        f"  parts:       {f['parts']}",
        rule,
        f"  status page: {f['status_page']}",
        f"  metrics:     {f['metrics']}   (also /healthz, /readyz)",
    ]

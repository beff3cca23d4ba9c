"""What Grafana does to a panel's query before a data source sees it, for the bundle tests.

Dashboard variables and Grafana's global variables (``$__interval``, ``$__rate_interval``,
``$__range``, ``$check``) are replaced first, as Grafana's frontend does; then the PostgreSQL
macros as Grafana's PostgreSQL data source expands them (pkg/tsdb/grafana-postgresql-datasource/
macros.go, TimescaleDB off): ``$__timeFilter(c)`` -> ``c BETWEEN '<from RFC3339>' AND '<to>'``,
``$__timeGroup(c, '5m')`` -> ``floor(extract(epoch from c)/300)*300``, ``$__timeGroupAlias`` adds
``AS "time"`` (so does ``$__timeGroup`` directly followed by a comma), ``$__timeFrom()``/``$__timeTo()``,
``$__unixEpochFilter(c)``. Not a Grafana: fill modes and the other macros are not modelled, and an
unknown macro is an error, as in Grafana.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "blocktrust.yml"

_MACRO = re.compile(r"\$(__[_a-zA-Z0-9]+)\(([^)]*)\)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel_id: int
    panel_title: str
    datasource_uid: str
    query: str  # PromQL expr or raw SQL, variables not yet replaced
    instant: bool


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every provisioned data source."""
    doc = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in doc["datasources"]}


def targets() -> Iterator[Target]:
    for path in DASHBOARDS:
        board = load(path)
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel["datasource"])["uid"]
                query = target.get("expr") or target.get("rawSql")
                assert query, f"{path.name} panel {panel['id']} target {target.get('refId')} has no query"
                yield Target(path.name, panel["id"], panel["title"], uid, query, bool(target.get("instant")))


def variable_queries(datasource_uid: str) -> Iterator[tuple[str, str]]:
    """(dashboard file, query) of every templating variable on ``datasource_uid``."""
    for path in DASHBOARDS:
        for variable in load(path)["templating"]["list"]:
            if variable.get("datasource", {}).get("uid") == datasource_uid:
                query = variable["query"]
                yield path.name, query["query"] if isinstance(query, dict) else query


def constant_variables(dashboard: str) -> dict[str, str]:
    """name -> value of the ``constant`` variables of ``dashboard`` (a file name), as Grafana replaces them."""
    board = load(REPO / "grafana" / "dashboards" / dashboard)
    return {v["name"]: str(v["query"]) for v in board["templating"]["list"] if v.get("type") == "constant"}


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().strip("'\""))
    if not match:
        raise ValueError(f"error parsing interval {text}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def replace_variables(query: str, variables: dict[str, str]) -> str:
    """Longest names first, so ``$__interval_ms`` is not eaten by ``$__interval``."""
    for name in sorted(variables, key=len, reverse=True):
        query = query.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return query


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand_postgres_macros(sql: str, start: datetime, end: datetime) -> str:
    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        followed_by_comma = sql[match.end() : match.end() + 1] == ","
        if name == "__timeGroup" and followed_by_comma:
            name = "__timeGroupAlias"
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{_rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{_rfc3339(end)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = interval_seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{seconds:g})*{seconds:g}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        raise ValueError(f"unknown macro {name!r}")

    return _MACRO.sub(expand, sql)


def sql_variables(checks: tuple[str, ...]) -> dict[str, str]:
    """Grafana's SQL formatting of a multi-value variable: quoted, comma-separated."""
    return {"check": ",".join(f"'{c}'" for c in checks), "__interval": "1m", "__interval_ms": "60000"}


def run_sql_panels(database_url: str, checks: tuple[str, ...], start: datetime, end: datetime) -> dict[str, int]:
    """Rows returned by each SQL target, keyed ``<dashboard>#<panel id>``; any SQL error fails."""
    rows: dict[str, int] = {}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        for target in targets():
            if target.datasource_uid != "blocktrust-postgres":
                continue
            sql = expand_postgres_macros(replace_variables(target.query, sql_variables(checks)), start, end)
            assert "$" not in sql, f"unexpanded variable or macro in {target.dashboard}#{target.panel_id}: {sql}"
            try:
                cur.execute(sql)
            except psycopg2.Error as exc:
                pytest.fail(f"{target.dashboard} panel {target.panel_id} ({target.panel_title}): {exc}\n{sql}")
            rows[f"{target.dashboard}#{target.panel_id}"] = len(cur.fetchall())
    return rows

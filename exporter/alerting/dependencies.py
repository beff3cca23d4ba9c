"""Which checks depend on which: the map the alert engine's suppression reads.

A check *depends on* another when the other's failure explains its own: with the API down, every
``api.*`` and ``synthetic.*`` check fails too, and one notice (``api.health``) says everything. The
engine then records the dependant's incident with ``suppressed_by`` and sends no notice for it
(``engine.py`` holds the three rules: suppression touches notices only, never checking or
recording; a resolution is never suppressed; suppression passes through the real state of the
check in between).

Defaults (``default_dependencies``, a pure function of the check names): every ``api.*`` and
``synthetic.*`` check depends on ``api.health`` and on the login, ``listener.*`` on ``chain.head``.
A check's own ``depends_on`` replaces its defaults (``[]``: none).

The login is not a check of its own: its failure shows in the results of the checks that need it
(``details.error == "login_failed"``, the same reason for all of a round's checks, as a round makes
one login attempt). ``login_result`` derives from a round's results one result named ``api.login``
(``LOGIN``), which the engine accounts like any check (thresholds, an incident, notices), but which
is never recorded in ``monitor_metrics``, so it changes no row, metric or SLO.

Not for deciding anything (``engine.py``) nor for the configuration's syntax (``exporter.config``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence

from exporter.config import CheckSpec, ConfigError
from exporter.store.base import CheckResult

log = logging.getLogger(__name__)

LOGIN = "api.login"  # the derived result of the monitoring account's JWT login
API_HEALTH = "api.health"
CHAIN_HEAD = "chain.head"
LOGIN_FAILED = "login_failed"  # the ``details.error`` of a check whose login failed (probes/probe.py)

Dependencies = Mapping[str, tuple[str, ...]]


def default_dependencies(check_names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The default ``depends_on`` of each check name: ``api.*`` and ``synthetic.*`` (but ``api.health``
    itself) -> (``api.health``, ``api.login``); ``api.login`` -> (``api.health``,); ``listener.*`` ->
    (``chain.head``,); any other -> (). Whether those exist is not this function's concern."""
    defaults: dict[str, tuple[str, ...]] = {}
    for name in check_names:
        if name == API_HEALTH:
            defaults[name] = ()
        elif name == LOGIN:
            defaults[name] = (API_HEALTH,)
        elif name.startswith(("api.", "synthetic.")):
            defaults[name] = (API_HEALTH, LOGIN)
        elif name.startswith("listener."):
            defaults[name] = (CHAIN_HEAD,)
        else:
            defaults[name] = ()
    return defaults


def resolve_dependencies(
    declared: Mapping[str, Sequence[str] | None], *, login: bool, source: str = "config.yaml"
) -> dict[str, tuple[str, ...]]:
    """The dependency map of the configured checks.

    ``declared``: each configured check's ``depends_on`` (None: its defaults). ``login``: whether some
    check logs in (then ``api.login`` exists, with its own default dependency). A dependency on a name
    that is neither configured nor ``api.login`` counts as none, with one log line (a check kind not
    enabled here, such as ``chain.head`` without an RPC URL). Raises ``ConfigError`` (one line naming
    the cycle) when the dependencies go round in a circle."""
    names = set(declared) | ({LOGIN} if login else set())
    defaults = default_dependencies(names)
    graph: dict[str, tuple[str, ...]] = {}
    for name in sorted(names):
        wanted = declared.get(name)
        chosen = defaults[name] if wanted is None else tuple(dict.fromkeys(wanted))
        missing = [dep for dep in chosen if dep not in names]
        if missing:
            log.info(
                "check %s: depends on %s, which is not configured here: no dependency on it",
                name,
                ", ".join(missing),
            )
        graph[name] = tuple(dep for dep in chosen if dep in names)
    cycle = find_cycle(graph)
    if cycle is not None:
        raise ConfigError(f"{source}: checks: depends_on goes round in a circle: {' -> '.join(cycle)}")
    return graph


def check_dependencies(checks: Sequence[CheckSpec], source: str = "config.yaml") -> dict[str, tuple[str, ...]]:
    """``resolve_dependencies`` for the enabled checks (``runner.resolve_checks``): ``api.login``
    exists when one of them logs in (``auth: true``)."""
    declared = {spec.name: spec.depends_on for spec in checks}
    return resolve_dependencies(declared, login=any(spec.auth for spec in checks), source=source)


def find_cycle(graph: Dependencies) -> list[str] | None:
    """A cycle of ``graph`` as its names in order, the first repeated at the end
    (``["a", "b", "a"]``), or None. Depth-first, in sorted order, so the answer is stable."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for dep in graph.get(name, ()):
            found = visit(dep, [*path, name])
            if found is not None:
                return found
        done.add(name)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found is not None:
            return found
    return None


def login_result(results: Sequence[CheckResult], dependencies: Dependencies) -> CheckResult | None:
    """The login's result for a round, from the results of the checks that depend on it: failed
    when one of them failed with ``login_failed`` (its reason and status), passed when at least one
    of them ran and none did; None when none of them ran (nothing to say about the login) or a
    configured check named ``api.login`` reported itself."""
    relying = [r for r in results if LOGIN in dependencies.get(r.check_name, ())]
    if not relying or any(r.check_name == LOGIN for r in results):
        return None  # nothing relied on the login, or a configured check of that name speaks for it
    failed = next((r for r in relying if not r.ok and r.details.get("error") == LOGIN_FAILED), None)
    first = relying[0]
    if failed is None:
        details = {"status_code": None, "error": None, "reason": "logged in", "bytes": 0}
        return CheckResult(LOGIN, True, 0, details, first.ts, uuid.uuid4().hex)
    details = {
        "status_code": failed.details.get("status_code"),
        "error": LOGIN_FAILED,
        "reason": failed.details.get("reason"),
        "bytes": failed.details.get("bytes", 0),
    }
    return CheckResult(LOGIN, False, failed.latency_ms, details, failed.ts, uuid.uuid4().hex)

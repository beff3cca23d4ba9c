"""The status page in a real headless Chromium (Debian's ``chromium``, driven by Playwright with the
system browser), served by a running exporter probing the bundled API simulator: every check listed
with its state, a failing endpoint's row red within two rounds, no console error, no request leaving
the exporter, no horizontal scrolling at 390 px (issue 17, acceptance 1). Twice: ``run`` as a
subprocess against an in-process simulator (SQLite store), and the real ``demo`` (what ``make demo``
runs: its own simulator, anvil chain and listener, so all nine checks), whose simulator is made to
fail through its admin endpoint while it runs.
The screenshots in ``docs/`` (healthy, one check failing, the listener behind, the demo) are written here.

Slow (a browser and an exporter process); never skipped: a missing Chromium is a failure.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page, ViewportSize, sync_playwright

from exporter.clock import SystemClock
from exporter.config import HEARTBEAT_CHECK, Config
from exporter.demo.simulator.server import BlocktrustSimulator
from exporter.status import StatusBuilder, render_page
from exporter.store import Checkpoint, CheckResult, EventRecord, open_store
from tests.support.exporter_process import ExporterProcess

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
EMAIL = "monitor@example.org"
PASSWORD = "browser-test-Pa55word"
PHONE: ViewportSize = {"width": 390, "height": 844}
FAILING_CHECK, FAILING_PATH = "api.stats", "/api/explorer/stats"
EXPECTED_CHECKS = {
    "api.health",
    "api.events",
    "api.contracts",
    "api.stats",
    "synthetic.hash",
    "synthetic.wallet_info",
    "synthetic.nft_status",
}
# The demo also runs the listener's two checks against its own anvil chain.
DEMO_CHECKS = EXPECTED_CHECKS | {"chain.head", "listener.lag", "listener.progress"}  # the demo has an RPC URL
HANG_GUARD_SECONDS = 90.0  # only bounds a hang; the assertions count rounds, not seconds


@dataclass
class Browsing:
    """What the page did: every request URL, console errors and uncaught exceptions."""

    page: Page
    base: str
    requested: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def load(self) -> None:
        answer = self.page.goto(self.base + "/", wait_until="load")
        assert answer is not None and answer.status == 200

    def row_state(self, check: str) -> str | None:
        row = self.page.locator(f'li[data-check="{check}"]')
        return row.get_attribute("data-state") if row.count() else None

    def assert_clean(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        foreign = [url for url in self.requested if not url.startswith(self.base + "/") and not url.startswith("data:")]
        assert foreign == [], f"requests that leave the exporter: {foreign}"
        overflow = self.page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]"
        )
        assert overflow[0] <= overflow[1] <= PHONE["width"], f"horizontal scrolling at 390 px: {overflow}"

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(DOCS / name), full_page=True)


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` (scripts/ensure-system-deps.sh) installs Debian's chromium")


@contextmanager
def _chromium(base: str) -> Iterator[Browsing]:
    """A phone-sized page in the system Chromium, recording what it requests and every error."""
    _require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=1)
            browsing = Browsing(page, base)
            page.on("request", lambda request: browsing.requested.append(request.url))
            page.on("console", lambda message: _console(browsing, message))
            page.on("pageerror", lambda error: browsing.errors.append(f"pageerror: {error}"))
            yield browsing
        finally:
            browser.close()


def _turns_red_within_two_rounds(
    browsing: Browsing, exporter: ExporterProcess, fail: Callable[[], None], listed: set[str]
) -> None:
    """``fail()`` breaks the endpoint of ``FAILING_CHECK``; reloading the page, its row must be red
    before two more of its rounds completed (a round in flight may finish with the old answer, so the
    deadline is that round plus two more: rounds counted on /metrics), every other row still up."""
    runs_before = _runs(exporter, FAILING_CHECK)
    fail()
    hang_guard = time.monotonic() + HANG_GUARD_SECONDS
    while browsing.row_state(FAILING_CHECK) != "down":
        past_deadline = _runs(exporter, FAILING_CHECK) >= runs_before + 3
        browsing.load()
        if past_deadline:
            break
        assert time.monotonic() < hang_guard, f"{FAILING_CHECK} ran no round: {_runs(exporter, FAILING_CHECK)}"
        time.sleep(0.3)
    assert browsing.row_state(FAILING_CHECK) == "down", "the failing check's row did not turn red in 2 rounds"
    colour = browsing.page.locator(f'li[data-check="{FAILING_CHECK}"]').evaluate(
        "row => getComputedStyle(row).borderLeftColor"
    )
    assert _is_red(colour), f"the failing row's colour is {colour}"
    others = {name: browsing.row_state(name) for name in listed - {FAILING_CHECK}}
    assert others == dict.fromkeys(listed - {FAILING_CHECK}, "up")
    assert browsing.page.locator("li[data-check]").count() == len(listed)


def _runs(exporter: ExporterProcess, check: str) -> float:
    """Completed runs of ``check`` (both results), from the exporter's own /metrics."""
    total = 0.0
    pattern = re.compile(r'^blocktrust_check_runs_total\{check="' + re.escape(check) + r'",result="\w+"\} (\S+)$')
    for line in exporter.metrics().splitlines():
        match = pattern.match(line)
        if match:
            total += float(match.group(1))
    return total


def _status(exporter: ExporterProcess) -> dict[str, Any]:
    answer = requests.get(exporter.url + "/api/v1/status", timeout=10)
    assert answer.status_code == 200
    return dict(answer.json())


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[ExporterProcess, BlocktrustSimulator, str]]:
    with BlocktrustSimulator(email=EMAIL, password=PASSWORD, clock=SystemClock()) as simulator:
        config = tmp_path / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "api": {"base_url": simulator.url, "email": EMAIL},
                    "checks": {"interval": "2s", "timeout": "1500ms"},
                    "listener": {"enabled": False},
                    "alerting": {"failure_threshold": 2},
                    "status_page": {"dashboards": [{"title": "Grafana", "url": "https://grafana.example.org/d/slo"}]},
                }
            )
        )
        store_url = f"sqlite:///{tmp_path}/status.db"
        env = {"JWT_MONITOR_PASS": PASSWORD, "DATABASE_URL": store_url}
        with ExporterProcess(["run", "--config", str(config)], env=env, cwd=tmp_path) as process:
            process.wait_ready()
            yield process, simulator, store_url


def test_status_page_in_chromium_healthy_failing_and_listener_behind(
    exporter: tuple[ExporterProcess, BlocktrustSimulator, str],
) -> None:
    process, simulator, store_url = exporter
    _wait_for(
        lambda: {c["name"] for c in _status(process)["checks"] if c["state"] == "up"} >= EXPECTED_CHECKS,
        "every check up",
    )
    with _chromium(process.url) as browsing:
        page = browsing.page
        # Healthy: every check listed, each with its state.
        browsing.load()
        states = {name: browsing.row_state(name) for name in EXPECTED_CHECKS}
        assert states == dict.fromkeys(EXPECTED_CHECKS, "up")
        assert page.locator("li[data-check]").count() == len(EXPECTED_CHECKS)
        assert "UTC" in page.inner_text("body")
        browsing.assert_clean()
        browsing.screenshot("status-healthy.png")

        # One endpoint fails: its row is red within two rounds.
        _turns_red_within_two_rounds(
            browsing, process, lambda: simulator.set_fault(FAILING_PATH, "500"), EXPECTED_CHECKS
        )
        _wait_for(lambda: any(i["check"] == FAILING_CHECK for i in _status(process)["incidents"]), "the incident")
        browsing.load()
        assert page.locator(f'li[data-incident="{FAILING_CHECK}"]').count() == 1
        browsing.assert_clean()
        browsing.screenshot("status-check-failing.png")

        # The listener (another process on the same store) is far behind the chain head.
        simulator.clear_faults()
        _wait_for(lambda: not _status(process)["incidents"], "the incident to resolve")
        _write_listener_behind(store_url)
        browsing.load()
        assert page.locator("#listener").get_attribute("data-state") == "behind"
        assert "18204" in page.inner_text("#listener")
        browsing.assert_clean()
        browsing.screenshot("status-listener-behind.png")


SIMULATOR_LINE = re.compile(r"demo: simulator=(http://[^\s\"]+)")


@pytest.mark.anvil
def test_the_demo_page_in_chromium_lists_its_ten_checks_and_a_failing_endpoint_turns_red(tmp_path: Path) -> None:
    """``blocktrust-exporter demo`` as ``make demo`` runs it (10 s rounds; ``--duration`` only bounds a
    leftover process): all its checks up on the page, then its simulator fails ``FAILING_PATH``
    through the admin endpoint (``POST /_simulator/faults``) and the row turns red within two rounds.
    (Ten: the nine of SPEC §1 and chain.head, the demo having an RPC URL.)"""
    _require_chromium()
    args = ["demo", "--duration", "300s", "--workdir", str(tmp_path / "demo")]
    with ExporterProcess(args, cwd=tmp_path) as demo:
        demo.wait_ready(timeout=HANG_GUARD_SECONDS)
        announced = SIMULATOR_LINE.search(demo.read_log())
        assert announced, f"the demo did not log its simulator's URL:\n{demo.read_log()}"
        simulator_url = announced.group(1)
        _wait_for(
            lambda: {c["name"] for c in _status(demo)["checks"] if c["state"] == "up"} >= DEMO_CHECKS,
            "all nine checks of the demo up",
        )
        with _chromium(demo.url) as browsing:
            browsing.load()
            assert {name: browsing.row_state(name) for name in DEMO_CHECKS} == dict.fromkeys(DEMO_CHECKS, "up")
            assert browsing.page.locator("li[data-check]").count() == len(DEMO_CHECKS)
            assert browsing.page.locator("#listener").get_attribute("data-state") == "ok"
            assert "Minted" in browsing.page.inner_text("#events"), "the demo's trickle of events is not listed"
            browsing.assert_clean()

            def fail() -> None:
                answer = requests.post(
                    simulator_url + "/_simulator/faults", json={"path": FAILING_PATH, "fault": "500"}, timeout=10
                )
                assert answer.status_code == 200, answer.text

            _turns_red_within_two_rounds(browsing, demo, fail, DEMO_CHECKS)
            browsing.assert_clean()
            browsing.screenshot("status-demo.png")
        code, _ = demo.stop()
    assert code == 0, demo.output
    assert "Traceback" not in demo.output, demo.output


def _console(browsing: Browsing, message: ConsoleMessage) -> None:
    if message.type == "error":
        browsing.errors.append(message.text)


def _is_red(css_colour: str) -> bool:
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return red > 150 and green < 100 and blue < 100


def _write_listener_behind(store_url: str) -> None:
    """What a `listen` process catching up writes: events and its heartbeat, in one transaction."""
    store = open_store(store_url)
    try:
        kinds = ["Minted"] * 14 + ["ProofStored"] * 31 + ["ProofStoredDual"] * 6 + ["FailSafeTriggered"]
        events = [
            EventRecord(kind, {"args": {}}, 16_000 + n, f"0x{n:064x}", f"0x{uuid.uuid4().hex:0>64}", 0)
            for n, kind in enumerate(kinds)
        ]
        heartbeat = CheckResult(
            HEARTBEAT_CHECK,
            True,
            180,
            {"processed_block": 18_204, "head_block": 21_950, "blocks_behind": 3_746},
            datetime.now(UTC),
            uuid.uuid4().hex,
        )
        store.commit_blocks("main", events, Checkpoint(18_204, f"0x{18_204:064x}"), heartbeat)
    finally:
        store.close()


def test_long_names_and_reasons_wrap_instead_of_scrolling_sideways_at_390_px(tmp_path: Path) -> None:
    """Whatever servers and configuration send (a 100-character check name, a 300-character reason
    without a space, a long incident title and dashboard title) wraps inside a phone's width."""
    _require_chromium()
    store = open_store(f"sqlite:///{tmp_path}/long.db")
    store.migrate()
    long_name = "custom." + "x" * 93
    unbroken = "E" * 300
    now = datetime.now(UTC)
    try:
        store.write_results(
            [CheckResult(long_name, False, 12, {"error": unbroken, "reason": unbroken}, now, uuid.uuid4().hex)]
        )
        store.open_incident(long_name, "crit", unbroken, unbroken, now)
        _write_listener_behind(f"sqlite:///{tmp_path}/long.db")
        config = Config.model_validate(
            {"status_page": {"dashboards": [{"title": "D" * 100, "url": "https://grafana.example.org/" + "p" * 200}]}}
        )
        html = render_page(StatusBuilder(config, store, SystemClock(), version="test").build())
    finally:
        store.close()
    assert unbroken in html
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=1)
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.set_content(html, wait_until="load")
            widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1] <= PHONE["width"], f"horizontal scrolling at 390 px: {widths}"
            assert page.locator(f'li[data-check="{long_name}"]').get_attribute("data-state") == "down"
            assert errors == []
        finally:
            browser.close()

"""``/readyz`` answers fast while the store hangs (issue 13, kind 1 item 7).

Kubernetes' default probe timeout is 1 s; a stalled PostgreSQL (a TCP proxy that accepts and then
stops forwarding) makes every store call wait for its deadline (``store.call_timeout``, 60 s
here). Readiness must not wait that long: it gives the store's ping ``READY_PING_SECONDS`` and
says not ready when it has not answered by then. Join timeouts only detect a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from exporter.config import Config
from exporter.runtime import READY_PING_SECONDS, Runtime, build_runtime
from tests.support.tcp_proxy import TcpProxy

HANG = 30.0  # well under the 60 s call_timeout: a ready() still waiting after this waited for the store


def _within_hang(call: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    answers: list[tuple[bool, str]] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    thread.join(HANG)
    assert answers, "ready() waited for the stalled store"
    return answers[0]


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[Runtime, TcpProxy]]:
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        config = Config.model_validate(
            {
                "store": {"url": f"postgresql://postgres@{proxy.address}/{database}", "call_timeout": "60s"},
                "listener": {"enabled": False},
                "checks": {"include_defaults": False},
            }
        )
        rt = build_runtime(config, parts=frozenset())
        rt.scheduler.start()
        try:
            yield rt, proxy
        finally:
            proxy.restore()
            rt.scheduler.stop(5.0)
            rt.store.close()


def test_readyz_answers_within_its_ping_deadline_while_postgresql_is_stalled(
    proxied: tuple[Runtime, TcpProxy],
) -> None:
    rt, proxy = proxied
    assert rt.ready() == (True, "ready")
    proxy.stall()
    expected = (False, f"store did not answer within {READY_PING_SECONDS:g}s")
    assert _within_hang(rt.ready) == expected
    # Probes keep coming while the store hangs: each answers the same way, and they share one ping.
    assert _within_hang(rt.ready) == expected
    assert sum(thread.name == "readyz-ping" for thread in threading.enumerate()) == 1
    proxy.restore()
    _eventually(lambda: rt.ready() == (True, "ready"), "ready again once the store answers")

"""Issue: ``/readyz`` said ``store not migrated yet`` when the store was unreachable at start; it names
the real cause, redacted. PostgreSQL only: an SQLite file that cannot be opened ends the start (exit 1),
there is no "unreachable at start" for the embedded store."""

from __future__ import annotations

from exporter.config import Config
from exporter.runtime import build_runtime

SECRET = "s3cr3t-pw"


def test_readyz_names_an_unreachable_store_at_start() -> None:
    store = {"url": f"postgresql://monitor:{SECRET}@127.0.0.1:1/blocktrust", "connect_timeout": "2s"}
    config = Config.model_validate({"store": store})
    rt = build_runtime(config, parts=frozenset())
    rt.scheduler.start()
    try:
        ready, reason = rt.ready()
    finally:
        rt.scheduler.stop(5)
        rt.store.close()
    assert not ready
    assert reason.startswith("store unreachable: "), reason
    assert "migrated" not in reason and "127.0.0.1" in reason
    assert SECRET not in reason

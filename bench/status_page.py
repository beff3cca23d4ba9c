"""Status page benchmark (issue 17, acceptance 5): the page over 30 days of rows for 50 checks on
PostgreSQL. Not a test.

    .venv/bin/python bench/status_page.py [--checks 50 --days 30 --every 60] [--repeat 7] [--keep]

Fills a fresh PostgreSQL database (``BLOCKTRUST_TEST_PG``'s server) with ``--checks`` checks run
every ``--every`` seconds for ``--days`` days (defaults: 50 x 43,200 = 2.16 M ``monitor_metrics``
rows, 0.5% failures, a ``listener.tick`` heartbeat every 15 s, 20 events an hour, a few open
incidents), runs ``VACUUM ANALYZE`` as autovacuum would, then times, ``--repeat`` times each:

  (page)     what ``GET /`` does: ``StatusBuilder.build()`` (newest result per check, 24 h of
             results bucketed in the database, the SLO report, incidents, listener heartbeat and
             events per type) and ``render_page``;
  (baseline) one aggregate over the whole ``monitor_metrics`` table (runs and failures per check),
             i.e. what one pass over the stored rows costs on this machine right now.

It prints the first (cold) and median times of both, the share of each store query in the page's
time, and page/baseline: under 1 s for the page is the target; the ratio shows that the page reads
the last day through the indexes rather than the 30 days.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter.clock import SystemClock  # noqa: E402
from exporter.config import CheckSpec, Config  # noqa: E402
from exporter.status import StatusBuilder, render_page  # noqa: E402
from exporter.store import Store, open_store  # noqa: E402

PG_ADMIN_URL = os.environ.get("BLOCKTRUST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def fill(url: str, checks: int, days: int, every: int) -> int:
    """Rows generated inside PostgreSQL (generate_series): seconds, not minutes, for 2 M rows."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                INSERT INTO monitor_metrics (ts, check_name, ok, latency_ms, details, uid)
                SELECT t, 'bench.check_' || lpad(c::text, 2, '0'), ok, latency,
                       jsonb_build_object('status_code', CASE WHEN ok THEN 200 ELSE 503 END,
                                          'bytes', 512, 'reason', CASE WHEN ok THEN NULL ELSE 'HTTP 503' END),
                       md5(c::text || '/' || t::text)
                FROM generate_series(1, %s) AS c,
                     generate_series(now() AT TIME ZONE 'UTC' - make_interval(days => %s),
                                     now() AT TIME ZONE 'UTC', make_interval(secs => %s)) AS t,
                     LATERAL (SELECT random() > 0.005 AS ok, (20 + random() * 400)::int AS latency) AS r
                """,
                (checks, days, every),
            )
            cur.execute(
                """
                INSERT INTO monitor_metrics (ts, check_name, ok, latency_ms, details, uid)
                SELECT t, 'listener.tick', true, 150,
                       jsonb_build_object('processed_block', n, 'head_block', n + 3, 'blocks_behind', 3),
                       md5('tick/' || t::text)
                FROM generate_series(now() AT TIME ZONE 'UTC' - make_interval(days => %s),
                                     now() AT TIME ZONE 'UTC', interval '15 seconds') WITH ORDINALITY AS g(t, n)
                """,
                (days,),
            )
            cur.execute(
                """
                INSERT INTO events (type, data, timestamp, block_number, block_hash, tx_hash, log_index)
                SELECT (ARRAY['Minted','ProofStored','ProofStoredDual','FailSafeTriggered'])[1 + n %% 4],
                       '{}'::jsonb, t, n, md5(n::text), md5('tx' || n::text), 0
                FROM generate_series(now() AT TIME ZONE 'UTC' - make_interval(days => %s),
                                     now() AT TIME ZONE 'UTC', interval '3 minutes') WITH ORDINALITY AS g(t, n)
                """,
                (days,),
            )
            for c in range(1, 4):
                cur.execute(
                    "INSERT INTO monitor_incidents (check_name, severity, title, detail, opened_at) "
                    "VALUES (%s, 'crit', 'bench incident', 'Status code: 503', now() AT TIME ZONE 'UTC')",
                    (f"bench.check_{c:02d}",),
                )
            cur.execute("SELECT COUNT(*) FROM monitor_metrics")
            counted = cur.fetchone()
            assert counted is not None
            rows = int(counted[0])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    return rows


def baseline_query(url: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)

    def run() -> None:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT check_name, COUNT(*), COUNT(*) FILTER (WHERE NOT ok) FROM monitor_metrics GROUP BY check_name"
            )
            cur.fetchall()
        conn.rollback()

    return run


class TimedStore:
    """Wraps a store and adds up the time spent in each of its methods."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.spent: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not callable(method):
            return method

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - started

        return timed


def timings(action: Callable[[], object], repeat: int) -> list[float]:
    spent = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        spent.append(time.perf_counter() - started)
    return spent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=int, default=60, help="seconds between runs of a check")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = parser.parse_args(argv)

    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    name = f"bt_bench_status_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    store = open_store(url)
    try:
        store.migrate()
        started = time.monotonic()
        rows = fill(url, args.checks, args.days, args.every)
        print(
            f"store: {rows:,} monitor_metrics rows ({args.checks} checks, {args.days} days), "
            f"filled and analyzed in {time.monotonic() - started:.1f} s"
        )

        timed = TimedStore(store)
        checks = [CheckSpec(name=f"bench.check_{c:02d}", path="/x") for c in range(1, args.checks + 1)]
        builder = StatusBuilder(Config(), timed, SystemClock(), checks=checks, version="bench")
        size = [0]

        def page() -> None:
            size[0] = len(render_page(builder.build()))

        page_times = timings(page, args.repeat)
        base_times = timings(baseline_query(url), args.repeat)
        median_page, median_base = statistics.median(page_times), statistics.median(base_times)
        print(f"{'run':<34} {'first s':>8} {'median s':>9} {'min-max s':>14}")
        for label, spent in (("(page) build + render", page_times), ("(baseline) one pass over the table", base_times)):
            print(
                f"{label:<34} {spent[0]:>8.3f} {statistics.median(spent):>9.3f} {min(spent):>6.3f}-{max(spent):<6.3f}"
            )
        total = sum(timed.spent.values())
        shares = ", ".join(f"{k} {v / len(page_times) * 1000:.0f} ms" for k, v in sorted(timed.spent.items()))
        print(f"store time per page: {total / len(page_times) * 1000:.0f} ms ({shares}); page {size[0] / 1024:.0f} KiB")
        print(
            f"page/baseline = {median_page / median_base:.3f}   page median {median_page:.3f} s (target < 1 s): "
            f"{'OK' if median_page < 1.0 else 'MISSED'}"
        )
    finally:
        store.close()
        if args.keep:
            print(f"kept: {url}")
        else:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

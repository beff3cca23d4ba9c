"""Peak RSS and CPU time of local processes, sampled from /proc, for the benchmarks (Linux only).

``Sampler`` samples, every ``period`` seconds on a thread, named groups of processes: a process and
its descendants (``tree(pid)``), a fixed pid, or the PostgreSQL backends of one database. Per group
it keeps the peak of the summed RSS and the CPU time (user + system) each pid had when last seen, so
the CPU of a process that exits between two samples is short by at most one period.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds, RSS KiB) of ``pid``; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21, pages)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, int(fields[21]) * _PAGE_KIB


def cpu_seconds(pid: int) -> float | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def tree(root: int) -> Callable[[], list[int]]:
    """The pids of ``root`` and of all its descendants, found anew at each call."""

    def pids() -> list[int]:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(int(entry))
                if stat is not None:
                    parents[int(entry)] = stat[0]
        found, frontier = {root}, [root]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
            found.update(children)
            frontier.extend(children)
        return sorted(pid for pid in found if pid in parents)

    return pids


def fixed(pid: int) -> Callable[[], list[int]]:
    return lambda: [pid]


class pg_backends:  # noqa: N801 - used like tree() and fixed()
    """The server processes of the other sessions of ``db_url``'s database (PostgreSQL on this host),
    but for the backend pids in ``exclude`` (the benchmark's own sessions); ``close()`` at the end."""

    def __init__(self, db_url: str, exclude: frozenset[int] = frozenset()) -> None:
        self._db_url = db_url
        self._exclude = exclude
        self._conn: Any = None

    def __call__(self) -> list[int]:
        if self._conn is None:
            self._conn = psycopg2.connect(self._db_url)
            self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [int(row[0]) for row in cur.fetchall() if int(row[0]) not in self._exclude]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass
class Group:
    pids: Callable[[], list[int]]
    peak_rss_kib: int = 0
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds when last seen
    cpu_before: dict[int, float] = field(default_factory=dict)  # pid -> at the first sample

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values()) - sum(self.cpu_before.get(pid, 0.0) for pid in self.cpu)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib / 1024


class Sampler:
    """``with Sampler({"node": tree(pid), "anvil": fixed(apid)}) as s: ...``; then
    ``s.groups[name].peak_rss_mb`` and ``.cpu_seconds`` (CPU used since the sampler started)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], period: float = 0.1) -> None:
        self.groups = {name: Group(pids) for name, pids in groups.items()}
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._first = True

    def sample(self) -> None:
        for group in self.groups.values():
            try:
                pids = group.pids()
            except Exception:
                continue
            rss = 0
            for pid in pids:
                stat = _stat(pid)
                if stat is None:
                    continue
                if self._first:
                    group.cpu_before[pid] = stat[1]
                group.cpu[pid] = stat[1]
                rss += stat[2]
            group.peak_rss_kib = max(group.peak_rss_kib, rss)
        self._first = False

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        for group in self.groups.values():
            close = getattr(group.pids, "close", None)
            if close is not None:
                close()

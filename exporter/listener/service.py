"""The chain listener: one ``poll_once`` per scheduler tick, every event stored exactly once.

A poll: take (or keep) the leader lock, read the head, check the stored checkpoint is still on the
chain (else roll back to the common ancestor, or halt and raise ``on_critical`` if the reorg is
deeper than ``max_reorg_depth``), then fetch ranges up to the target block and commit each range's
events together with the checkpoint and a ``listener.tick`` heartbeat in one transaction.

The window: up to ``fetch_window`` ranges (per endpoint of the pool) are fetched and decoded at once
on worker threads while this thread stores the oldest one; ranges are committed strictly in block
order, so the checkpoint only ever covers contiguous stored ranges, and a new range is only planned
when one is committed: a slow store stops the fetching, and memory holds at most the window's ranges
(each of at most ``ranges.RANGE_EVENTS`` logs) whatever the backlog. A range the provider refuses
comes back empty; it is planned again at the width learned and fetched across the window, before any
range after it (holding up to twice the window's ranges meanwhile), not one piece after another on
one thread. A range that ends short before an unconfirmed block (bloom check) ends the
window: the ranges after it are dropped unstored. Deep ranges (more than ``max_reorg_depth`` below
the head) are fetched without headers; their commits carry a block hash only when the range's last
block has a log, and the last one of a poll is given its header's hash before the poll returns.
A poll that ends with backlog left (``PollOutcome.backlog``) asks the scheduler to run again at once.

A node that is only behind our checkpoint (a load-balanced provider with a lagging backend) is
not a reorg: the poll waits (status idle, heartbeat still written); only a hash that differs at a
block the node has is. ``request_stop`` makes a running poll return within about a second (no new
range, back-off waits cut short, an in-flight fetch abandoned); a range is committed whole or not
at all either way.

``poll_once`` never raises for RPC or store trouble: it logs one line and returns, and the
checkpoint stays at the last fully stored range. Not for scheduling (``scheduler.py`` runs it) or
for the ``listen`` command's wiring and banner (``exporter.runtime``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, TypeVar

import requests
import requests.adapters

from exporter.clock import Clock
from exporter.config import HEARTBEAT_CHECK, ConfigError, ListenerSettings
from exporter.listener.audit import LogAudit
from exporter.listener.chain import ChainMovedError, check_links, find_common_ancestor, trim_recent
from exporter.listener.confirm import EmptyBlockConfirmer
from exporter.listener.contracts import EventSpec, load_contracts
from exporter.listener.decode import LogDecoder
from exporter.listener.endpoints import EndpointPool
from exporter.listener.fetch import HEADER_BATCH, FetchedRange, RangeFetcher
from exporter.listener.finality import ReorgDepth, resolve_reorg_depth
from exporter.listener.quarantine import QuarantineReporter
from exporter.listener.ranges import RangeSizer
from exporter.listener.retry import Backoff, FetchCancelledError, Retrier
from exporter.listener.rpc import LogFilter, RangeRefusedError, RpcError, TransientRpcError
from exporter.metrics import Metrics
from exporter.store.base import BlockRef, Checkpoint, CheckResult, EventRecord, Store, StoreError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "listener"  # the checkpoint row and the leader lock
MAX_CHAIN_RETRIES = 3
MIN_POLL_BUDGET_SECONDS = 10.0  # a reorg racing our fetch is retried this often within one poll
STOP_CHECK_SECONDS = 0.05  # how often a poll waiting on RPC work looks at the stop request
CLOSE_WAIT_SECONDS = 30.0  # close() waits this long for a running poll's commit to finish

Status = Literal["ingested", "idle", "standby", "halted", "error", "stopped"]
CriticalCallback = Callable[[str, str], None]
RecoveredCallback = Callable[[], None]
ProgressCallback = Callable[[int, int, int], None]  # (head, processed block, events stored): for the log
_T = TypeVar("_T")


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did, for logs, tests and the scheduler."""

    status: Status
    head_block: int | None = None
    processed_block: int | None = None
    events: int = 0
    reorgs: int = 0
    message: str = ""
    backlog: bool = False  # the poll used its time budget with blocks left to fetch: run again at once


def _quantity(value: object) -> int:
    """A JSON-RPC hex quantity (``eth_chainId``); a malformed one is a transient answer error."""
    try:
        return int(str(value), 16)
    except ValueError:
        raise TransientRpcError(f"expected a hex quantity, got {str(value)[:40]!r}", "invalid_response") from None


def _session_for(workers: int) -> requests.Session:
    """A session keeping a connection per worker of the window (and the poll's own calls) to each
    endpoint: requests' default pool of 10 would drop and reopen connections past that."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=workers + 2)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def backlog_left(outcome: object) -> bool:
    """``scheduler.Job.again`` for ``poll_once``: the poll stopped for its time budget with blocks
    left, so the next one starts at once (back to back) instead of an interval later."""
    return isinstance(outcome, PollOutcome) and outcome.backlog


def _quantity_or_none(value: object) -> int | None:
    try:
        return int(str(value), 16)
    except ValueError:
        return None


def _log_critical(title: str, detail: str) -> None:
    log.critical("%s: %s", title, detail)


def _nothing() -> None:
    """The default ``on_recovered``: nothing to resolve."""


class _NodeBehindError(Exception):
    """The node does not (yet) have our checkpoint block, and nothing it has contradicts it."""


class _ReorgTooDeepError(Exception):
    """A reorg deeper than ``max_reorg_depth``: stop advancing until an operator steps in."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail


class Listener:
    """Follows the configured contracts and stores their events (see the module docstring)."""

    def __init__(
        self,
        settings: ListenerSettings,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        *,
        on_critical: CriticalCallback = _log_critical,
        on_recovered: RecoveredCallback = _nothing,
        on_progress: ProgressCallback | None = None,
        on_quarantined: CriticalCallback | None = None,
        on_quarantine_cleared: RecoveredCallback | None = None,
        session: requests.Session | None = None,
        specs: list[EventSpec] | None = None,
        poll_budget: float | None = None,
    ) -> None:
        if not settings.rpc_endpoints:
            raise ConfigError("listener.rpc_url (POLYGON_RPC_URL) is not set")
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._on_critical = on_critical
        self._on_recovered = on_recovered
        self._on_progress = on_progress  # (head, processed block, events stored) after each commit
        # Rows the store refused for good: counted, an incident opened, resolved once they are dealt with.
        self._quarantine = QuarantineReporter(metrics, store.quarantined_count, on_quarantined, on_quarantine_cleared)
        self.specs = specs if specs is not None else load_contracts(settings.contracts_config, settings.event_types)
        self._own_session = session is None
        self._session = session or _session_for(settings.fetch_window * len(settings.rpc_endpoints))
        self._rpc = EndpointPool.for_listener(settings, self._session, metrics, clock)
        self._decoder = LogDecoder(self.specs, metrics)
        log_filter = LogFilter(
            addresses=tuple(sorted({s.address for s in self.specs})),
            topics0=tuple(sorted({s.topic0 for s in self.specs})),
        )
        self._stop = threading.Event()
        # Set once the first poll has returned or stored its first heartbeat: until then the listener
        # checks of this process have nothing of this listener to judge (see ``ListenerStartGrace``).
        self.first_poll_done = threading.Event()
        self._retry = Retrier(Backoff(max_retry_after=settings.max_retry_after), clock, stop=self._stop)
        confirmer = EmptyBlockConfirmer(self._rpc, log_filter, metrics) if settings.bloom_check else None
        self._fetcher = RangeFetcher(self._rpc, log_filter, self._rpc.sizer, self._retry, confirmer, deep_headers=False)
        self._audit = self._make_audit(log_filter) if settings.audit.enabled else None
        self._depth: ReorgDepth | None = None  # read from the node at the first poll (finality.py)
        self._serves_finalized = False
        self._unconfirmed: tuple[int, str] | None = None  # the block a range stopped before, and why
        # The window's workers: fetch_window per endpoint (the pool spreads them), plus the audit's.
        workers = settings.fetch_window * len(settings.rpc_endpoints)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="listener-fetch")
        # The poll's own RPC calls (head, headers) run here too, so a stop request never waits
        # for a slow answer: the call is abandoned and its thread ends at the RPC deadline.
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="listener-rpc")
        self._poll_lock = threading.Lock()  # close() waits for a running poll's commit
        # A long backlog is worked off over several polls, so that one poll never holds the
        # scheduler (or a shutdown) for long; every committed range keeps the heartbeat fresh.
        # ``poll_budget`` (seconds) overrides it (tests, benchmarks).
        default_budget = max(settings.poll_interval, MIN_POLL_BUDGET_SECONDS)
        self._poll_budget = poll_budget if poll_budget is not None else default_budget
        self._leader = False
        self._halted: str | None = None
        self._recovery_pending = True  # on_recovered is due at the first commit after start or halt

    # ---------------------------------------------------------------------------- public
    def check_chain(self) -> None:
        """At start: every RPC endpoint serves the expected chain, else ``ConfigError`` (endpoints.py)."""
        self._rpc.check_chain()

    @property
    def rpc(self) -> EndpointPool:
        """The listener's endpoint pool: the process's other users of the chain (contract-event rules,
        chain checks) call through it, so endpoint state and metrics are one."""
        return self._rpc

    def poll_once(self) -> PollOutcome:
        """One scheduler tick (see the module docstring). Never raises for RPC or store trouble."""
        with self._poll_lock:
            if self._stop.is_set():
                return PollOutcome("stopped", message="stop requested")
            try:
                return self._poll()
            finally:
                self.first_poll_done.set()

    def request_stop(self) -> None:
        """Ask a running (and every later) ``poll_once`` to return soon; returns at once, any thread.

        The poll starts no new range, cuts back-off waits short and abandons an in-flight RPC call;
        a range being committed is committed whole. Call ``close()`` afterwards to release resources.
        """
        if not self._stop.is_set():
            log.info("listener: stop requested")
        self._stop.set()

    def close(self) -> None:
        """Stop (as ``request_stop``), wait for a running poll to return, release everything.

        Safe from another thread while ``poll_once`` runs, and more than once."""
        self._stop.set()
        finished = self._poll_lock.acquire(timeout=CLOSE_WAIT_SECONDS)
        try:
            # Abandoned RPC work ends on its own at the RPC deadline; nothing waits for it.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._calls.shutdown(wait=False, cancel_futures=True)
            if self._own_session:
                self._session.close()
            if not finished:
                # A commit still running would hold the lock; closing the store releases it.
                log.warning("listener: a poll is still running; the leader lock is left to the store")
                return
            try:
                self._store.release_leader(CHECKPOINT_NAME)
            except StoreError as exc:
                log.warning("listener: could not release the leader lock: %s", exc)
        finally:
            if finished:
                self._poll_lock.release()

    # ---------------------------------------------------------------------------- one poll
    def _poll(self) -> PollOutcome:
        try:
            if not self._store.try_acquire_leader(CHECKPOINT_NAME):
                if self._leader:
                    log.warning("listener: lost the leader lock; another replica ingests now")
                self._leader = False
                return PollOutcome("standby")
            if not self._leader:
                log.info("listener: this replica is the leader and ingests")
                self._leader = True
            return self._poll_as_leader()
        except StoreError as exc:
            self._metrics.store_write_errors.inc()
            log.error("listener: store unavailable, checkpoint kept: %s", exc)
            return PollOutcome("error", message=str(exc))
        except (TransientRpcError, RpcError, RangeRefusedError) as exc:
            log.error("listener: RPC failed, checkpoint kept: %s", exc)
            return PollOutcome("error", message=str(exc))
        except FetchCancelledError:
            log.info("listener: poll stopped on request; the checkpoint is at the last stored range")
            return PollOutcome("stopped", message="stop requested")

    def _poll_as_leader(self) -> PollOutcome:
        started = self._clock.monotonic()
        head: int | None = None
        if self._depth is None:
            self._depth, head = self._first_reads()
        head, target = self._head_and_target(head)
        self._metrics.listener_head_block.set(head)
        events = 0
        reorgs = 0
        cursor = self._store.load_checkpoint(CHECKPOINT_NAME)
        before = cursor.block_number if cursor is not None else None
        fresh: int | None = None  # the block before a fresh start (nothing stored yet)
        backlog = False
        for _ in range(MAX_CHAIN_RETRIES):
            try:
                if cursor is not None and cursor.block_hash:
                    rolled_back = self._ensure_on_chain(cursor, head)
                    if rolled_back is not None:
                        cursor = rolled_back
                        reorgs += 1
                if cursor is None:
                    cursor = self._initial_cursor(target, head)
                    fresh = cursor.block_number
                    if self._audit is not None:
                        self._audit.starts_at(cursor.block_number + 1)
                cursor, stored, backlog = self._ingest(cursor, head, target, started)
                events += stored
                anchored = fresh is None or cursor.block_number != fresh
                if anchored and not cursor.block_hash:
                    cursor = self._sealed(cursor, head, started)
                break
            except ChainMovedError as exc:
                log.info("listener: %s; checking for a reorg", exc)
                cursor = self._store.load_checkpoint(CHECKPOINT_NAME)
                fresh = None
            except _NodeBehindError as behind:
                if cursor is None:  # no checkpoint, stored events above the head (_initial_cursor)
                    log.warning("listener: %s", behind)
                    return PollOutcome("idle", head, message=str(behind))  # no heartbeat: see _behind
                return self._behind(cursor, head, started, str(behind), reorgs)
            except _ReorgTooDeepError as halt:
                return self._halt(halt, head)
        else:
            return PollOutcome("error", head, message="the chain kept changing during the poll")
        if self._halted is not None:
            log.warning("listener: the chain agrees with our checkpoint again; resuming")
            self._halted = None
        self._quarantine.review()
        processed = cursor.block_number if fresh is None or cursor.block_number != fresh else None
        if processed is not None:
            self._metrics.listener_processed_block.set(processed)
        status: Status = "ingested" if processed != before or reorgs else "idle"
        if processed is not None:
            self._audit_if_due(processed, head)
        waiting = self._waiting_message()
        return PollOutcome(status, head, processed, events, reorgs, message=waiting, backlog=backlog)

    def _behind(self, cursor: Checkpoint, head: int, started: float, why: str, reorgs: int) -> PollOutcome:
        """The node lags behind our checkpoint: store nothing, roll nothing back, wait for it."""
        if self._halted is not None:
            return PollOutcome("halted", head, message=self._halted)  # nothing proves the chain agrees
        log.warning("listener: %s; waiting for the node to catch up", why)
        # No heartbeat: the listener sees no chain progress, and a node that never catches up (a stuck
        # backend, an RPC URL of another chain) must turn listener.lag red after max_lag, not stay green.
        return PollOutcome("idle", head, cursor.block_number, reorgs=reorgs, message=why)

    def _head_and_target(self, head: int | None = None) -> tuple[int, int]:
        """The head (read now unless given) and the block this poll ingests up to."""
        if head is None:
            head = self._rpc_call(self._rpc.block_number)
        followed = head
        if self._settings.follow != "latest":
            tag = self._settings.follow
            tagged = self._rpc_call(lambda: self._rpc.block(tag))
            if tagged is None:
                raise RpcError(f"the node does not know the {self._settings.follow!r} block tag")
            followed = tagged.number
        return head, followed - self._settings.confirmations

    def _initial_cursor(self, target: int, head: int) -> Checkpoint:
        """Where a fresh listener starts: just before ``start_block``; for 'latest', just after the newest
        stored event (a database adopted from the seed: nothing between its last block and ours is
        missed), else at the target. ``_NodeBehindError`` when that event is above the chain's head."""
        start = self._settings.start_block
        newest = self._store.newest_event_block() if start == "latest" else None
        if newest is not None and newest > head:
            raise _NodeBehindError(
                f"the newest stored event is in block {newest}, above the chain's head {head} (a database "
                "of another network, or a node far behind); waiting"
            )
        if start != "latest":
            first = start
        elif newest is not None:
            first = newest + 1
        else:
            first = max(0, target)
        log.info("listener: no checkpoint yet; starting at block %d (newest stored event: %s)", first, newest)
        return Checkpoint(first - 1, "")  # no hash: nothing stored yet to compare with the chain

    def _ensure_on_chain(self, cursor: Checkpoint, head: int) -> Checkpoint | None:
        """None if the checkpoint block is still on the chain, else the checkpoint after rolling back.

        Raises ``_NodeBehindError`` when the node cannot show a difference: it lacks the checkpoint
        block, and the newest block we stored at or below its head is unknown to it or the same.
        """
        if cursor.block_number <= head:
            compared = BlockRef(cursor.block_number, cursor.block_hash, "")
        else:
            known = [ref for ref in cursor.recent if ref.number <= head]
            if not known:
                raise _NodeBehindError(f"the node's head {head} is below our checkpoint {cursor.block_number}")
            compared = known[-1]
        current = self._header(compared.number)
        if current is None:
            raise _NodeBehindError(f"the node does not know block {compared.number} (its head: {head})")
        if current.hash == compared.hash:
            if compared.number == cursor.block_number:
                return None
            raise _NodeBehindError(f"the node's head {head} is below our checkpoint {cursor.block_number}")
        max_depth = self._max_reorg_depth
        ancestor = find_common_ancestor(self._header, cursor, head, max_depth)
        if ancestor is None:
            raise _ReorgTooDeepError(
                "Chain reorganisation deeper than max_reorg_depth",
                f"block {cursor.block_number} ({cursor.block_hash}) is no longer on the chain and no common "
                f"ancestor was found within {max_depth} blocks; the listener stopped advancing. "
                "Check the RPC node (a node of another chain or far behind looks the same), then stop the "
                "listener and run `blocktrust-exporter checkpoint rewind --to N` with N below the fork (at most "
                f"{max(0, cursor.block_number - max_depth - 1)}; `checkpoint show` lists the stored hashes), "
                "and start it again (docs/runbooks.md#listener-reorg-deeper-than-max_reorg_depth).",
            )
        rolled_back = Checkpoint(
            ancestor.number, ancestor.hash, tuple(r for r in cursor.recent if r.number <= ancestor.number)
        )
        deleted = self._store.rewind(CHECKPOINT_NAME, rolled_back)
        self._metrics.listener_reorgs.inc()
        log.warning(
            "listener: reorg of depth %d: rolled back from block %d to %d, %d orphaned events deleted",
            cursor.block_number - ancestor.number,
            cursor.block_number,
            ancestor.number,
            deleted,
        )
        return rolled_back

    # ---------------------------------------------------------------------------- completeness
    def _make_audit(self, log_filter: LogFilter) -> LogAudit:
        # The audit reads deep (final) ranges only: no per-block headers, no bloom re-reads; its own
        # range sizer, since it runs between polls' ranges on the same worker thread.
        settings = self._settings
        fetcher = RangeFetcher(
            self._rpc, log_filter, RangeSizer(settings.chunk_size, settings.max_chunk_size), self._retry
        )

        def fetch(start: int, last: int) -> FetchedRange:
            never = threading.Event()
            return self._await(self._submit(self._pool, lambda: fetcher.fetch(start, last, last + 1, never)))

        floor = settings.start_block if isinstance(settings.start_block, int) else 0
        return LogAudit(
            settings.audit, fetch, self._decoder, self._store, metrics=self._metrics, clock=self._clock, floor=floor
        )

    def _audit_if_due(self, processed: int, head: int) -> None:
        """Run the audit when due; its failure is logged and leaves the poll's outcome alone."""
        if self._audit is None or not self._audit.due() or self._stop.is_set():
            return
        try:
            self._audit.run(processed, self._final_block(head))
        except (StoreError, TransientRpcError, RpcError, RangeRefusedError, ChainMovedError) as exc:
            log.warning("listener: the audit failed, retried at its next run: %s", exc)

    def _final_block(self, head: int) -> int:
        """The newest block that can no longer be reorganised: the node's ``finalized`` block when
        it serves the tag, else ``max_reorg_depth`` blocks below the head."""
        if self._serves_finalized:
            finalized = self._rpc_call(lambda: self._rpc.block("finalized"))
            if finalized is not None:
                return finalized.number
        return head - self._max_reorg_depth

    def _first_reads(self) -> tuple[ReorgDepth, int]:
        """The reorg depth in use (``finality.py``) and the head, at the first poll as leader: the chain
        id, the head and (when no depth is configured) the ``finalized`` block are read side by side,
        one round trip rather than one after the other (each a provider's latency), and retried
        together."""
        configured = self._settings.max_reorg_depth

        def finalized() -> BlockRef | Exception | None:
            try:
                return self._rpc.block("finalized")
            except (RpcError, TransientRpcError) as exc:
                return exc  # the tag's own answer: it must not fail the other reads

        reads: list[Callable[[], object]] = [lambda: self._rpc.call("eth_chainId", []), self._rpc.block_number]
        if configured is None:
            reads.append(finalized)

        def together() -> list[object]:
            futures = [self._submit(self._pool, read) for read in reads]
            return [future.result() for future in futures]

        answers = self._rpc_call(together)
        head = answers[1]
        assert isinstance(head, int)

        def finality_distance() -> int | None:
            block = answers[2]
            if isinstance(block, TransientRpcError):
                try:  # a passing error, or a node's "not found" for the tag that reads as transient
                    block = self._rpc_call(lambda: self._rpc.block("finalized"))
                except (RpcError, TransientRpcError):
                    block = None
            if not isinstance(block, BlockRef):
                # A node without the tag refuses it: the table's depth then stands, and the audit
                # counts from the head.
                return None
            self._serves_finalized = True
            return max(0, head - block.number)

        depth = resolve_reorg_depth(configured, lambda: _quantity(answers[0]), finality_distance)
        log.info(
            "listener: chain id %s; reorgs rolled back up to %d blocks (%s)", depth.chain_id, depth.blocks, depth.source
        )
        return depth, head

    @property
    def _max_reorg_depth(self) -> int:
        assert self._depth is not None  # resolved at the start of every poll as leader
        return self._depth.blocks

    def _note_unconfirmed(self, fetched: FetchedRange) -> None:
        """Log once per block that a range had to stop before it (and once when it is confirmed)."""
        if fetched.unconfirmed is not None:
            if self._unconfirmed is None or self._unconfirmed[0] != fetched.unconfirmed:
                log.warning(
                    "listener: block %d may hold events (its logsBloom matches) but eth_getLogs returned none "
                    "and no node confirmed it yet (%s); waiting before storing past it",
                    fetched.unconfirmed,
                    fetched.reason,
                )
            self._unconfirmed = (fetched.unconfirmed, fetched.reason)
        elif self._unconfirmed is not None and fetched.start <= self._unconfirmed[0] <= fetched.end:
            log.info("listener: block %d is confirmed now", self._unconfirmed[0])
            self._unconfirmed = None

    def _waiting_message(self) -> str:
        if self._unconfirmed is None:
            return ""
        number, reason = self._unconfirmed
        return f"waiting for block {number}: its logsBloom matches but no node confirmed its logs yet ({reason})"

    def _header(self, number: int) -> BlockRef | None:
        return self._rpc_call(lambda: self._rpc.block(number))

    def _rpc_call(self, call: Callable[[], _T]) -> _T:
        """One RPC call of the poll itself, retried, abandoned at a stop request."""
        return self._retry(lambda: self._await(self._submit(self._calls, call)))

    def _submit(self, pool: ThreadPoolExecutor, call: Callable[..., _T], *args: int) -> Future[_T]:
        """``pool.submit``, or ``FetchCancelledError`` once stopping (a pool shut down by ``close()``
        after its wait for a stuck poll ran out refuses new work)."""
        if self._stop.is_set():
            raise FetchCancelledError()
        try:
            return pool.submit(call, *args)
        except RuntimeError:
            raise FetchCancelledError() from None

    def _await(self, future: Future[_T]) -> _T:
        """The future's result; ``FetchCancelledError`` as soon as a stop is requested."""
        return self._await_any([future]).result()

    def _await_any(self, futures: Iterable[Future[_T]]) -> Future[_T]:
        """One of ``futures`` that is done (waiting for the first); ``FetchCancelledError`` as soon as
        a stop is requested."""
        pending = list(futures)
        while True:
            done, _ = wait(pending, timeout=STOP_CHECK_SECONDS, return_when=FIRST_COMPLETED)
            if done:
                return next(iter(done))
            if self._stop.is_set():
                raise FetchCancelledError()

    def _halt(self, halt: _ReorgTooDeepError, head: int) -> PollOutcome:
        if self._halted is None:
            self._halted = halt.detail
            self._recovery_pending = True
            log.critical("listener: %s: %s", halt.title, halt.detail)
            try:
                self._on_critical(halt.title, halt.detail)
            except Exception:
                # The halt itself must hold even if raising the incident fails; retry next poll.
                log.exception("listener: raising the critical incident failed")
                self._halted = None
        return PollOutcome("halted", head, message=halt.detail)

    # ---------------------------------------------------------------------------- ranges
    def _ingest(self, cursor: Checkpoint, head: int, target: int, started: float) -> tuple[Checkpoint, int, bool]:
        """Fetch and commit every range after ``cursor`` up to ``target`` through the window (see the
        module docstring). Returns the new cursor, how many events were stored, and whether the poll
        stopped for its time budget with blocks left (the backlog goes on at once)."""
        if cursor.block_number >= target:
            self._commit(cursor, [], cursor, head, started)
            return cursor, 0, False
        unsafe_from = self._unsafe_from(head, target)
        cancel = threading.Event()

        def fetch(start: int, end: int) -> tuple[FetchedRange, list[EventRecord]]:
            fetched = self._fetcher.fetch_span(start, end, unsafe_from, cancel)
            return fetched, self._decoder.decode_all(fetched.logs)

        window = self._rpc.fetch_window
        flights: dict[int, tuple[int, Future[tuple[FetchedRange, list[EventRecord]]]]] = {}  # first -> (last, fetch)
        # Ascending (first, last, widest first piece or 0); blocks below ``following`` no flight covers any more.
        gaps: list[tuple[int, int, int]] = []
        following = cursor.block_number + 1  # the first block no range planned so far covers
        planning = True
        waiting = False  # a range stopped before an unconfirmed block: the rest waits for the next poll
        stored = 0
        try:
            while True:
                while planning:
                    planned = self._next_range(
                        cursor.block_number + 1, flights, gaps, following=following, target=target, window=window
                    )
                    if planned is None:
                        break
                    first, last = planned
                    end = self._plan(first, last, unsafe_from)
                    if gaps and gaps[0][0] == first:
                        # Its refused first piece no wider than the refusing endpoint taught: the plan
                        # sizes by another endpoint's sizer when several serve, and the same width
                        # would be refused again (the pieces after it: as the sizer hands out).
                        if gaps[0][2]:
                            end = min(end, first + gaps[0][2] - 1)
                        gaps[0:1] = [(end + 1, last, 0)] if end < last else []
                    else:
                        following = end + 1
                    flights[first] = (end, self._submit(self._pool, fetch, first, end))
                if cursor.block_number + 1 not in flights:
                    break  # every block up to the target is stored, or the poll stopped planning
                planned_end, future = flights[cursor.block_number + 1]  # commits stay in block order
                if not future.done() and self._await_any(f for _, f in flights.values() if not f.done()) is not future:
                    continue  # another range came in first: its slot may take a gap's next piece meanwhile
                fetched, records = self._await(future)
                del flights[fetched.start]
                self._note_unconfirmed(fetched)
                if fetched.end >= fetched.start:
                    after = self._after(cursor, fetched)
                    stored += self._commit(cursor, records, after, head, started)
                    cursor = after
                if fetched.unconfirmed is not None:
                    waiting = True  # the window stops before the block; the ranges after it are dropped
                    break
                if fetched.end < planned_end:
                    # The provider refused that width: the range is planned again, at the width it
                    # taught, across the whole window rather than one piece after another.
                    gaps.insert(0, (fetched.end + 1, planned_end, fetched.retry_width))
                if self._stop.is_set():
                    raise FetchCancelledError()  # the ranges fetched meanwhile are not stored
                if planning and (gaps or following <= target) and self._out_of_time(started):
                    planning = False  # the ranges in flight are still stored
        finally:
            if flights:
                cancel.set()
                for _, pending in flights.values():
                    # The worker stops at its next check; its result (or error) no longer matters.
                    pending.add_done_callback(lambda f: f.exception())
        backlog = not planning and not waiting and cursor.block_number < target and not self._stop.is_set()
        return cursor, stored, backlog

    @staticmethod
    def _next_range(
        needed: int,
        flights: dict[int, tuple[int, Future[tuple[FetchedRange, list[EventRecord]]]]],
        gaps: list[tuple[int, int, int]],
        *,
        following: int,
        target: int,
        window: int,
    ) -> tuple[int, int] | None:
        """The blocks the window fetches next (a first block and the last one it may reach), or None
        while it is full. A gap (a range the provider refused, planned again) comes first: its blocks are
        due before any planned after them. Gap pieces are fetched ``window`` at a time beside the
        ranges already fetched and waiting for their turn, up to twice the window in memory; the piece
        the next commit needs is always fetched. Ranges past ``following`` only start when no gap is
        left and fewer than ``window`` ranges are held."""
        fetching = sum(1 for _, future in flights.values() if not future.done())
        if gaps:
            first, last, _ = gaps[0]
            due = first == needed and first not in flights
            return (first, last) if due or (fetching < window and len(flights) < 2 * window) else None
        return (following, target) if following <= target and len(flights) < window else None

    def _plan(self, start: int, target: int, unsafe_from: int) -> int:
        """The last block of the next range of the window: as wide as the range sizer hands out,
        never past ``target`` nor across ``unsafe_from`` (deep ranges need no headers, others all).
        A range from ``unsafe_from`` on is at most one header batch wide: its headers come before
        its logs, so the window fetches the reorganisable blocks a batch at a time, side by side,
        rather than one batch after another in a single range."""
        if start >= unsafe_from:
            return min(target, start + min(self._rpc.sizer.size, HEADER_BATCH) - 1)
        return min(target, unsafe_from - 1, start + self._rpc.sizer.take() - 1)

    def _after(self, cursor: Checkpoint, fetched: FetchedRange) -> Checkpoint:
        """The checkpoint once ``fetched`` is stored. A deep range has no headers: its hash is the one
        of its last block's log if it has one, else unknown ("", given at the end of the poll)."""
        if fetched.headers:
            check_links(fetched.headers, cursor)
            block_hash = fetched.headers[-1].hash
        else:
            last = fetched.logs[-1] if fetched.logs else {}
            same_block = _quantity_or_none(last.get("blockNumber")) == fetched.end
            block_hash = str(last.get("blockHash") or "") if same_block else ""
        recent = trim_recent((*cursor.recent, *fetched.headers), fetched.end, self._max_reorg_depth)
        return Checkpoint(fetched.end, block_hash, recent)

    def _sealed(self, cursor: Checkpoint, head: int, started: float) -> Checkpoint:
        """A checkpoint stored without a hash (a deep range's last block had no log) gets its block's
        hash: one header per poll, so the next poll can compare it with the chain."""
        header = self._header(cursor.block_number)
        if header is None:
            return cursor  # the node lacks it now; the next poll tries again
        sealed = Checkpoint(cursor.block_number, header.hash, cursor.recent)
        self._commit(cursor, [], sealed, head, started)
        return sealed

    def _out_of_time(self, started: float) -> bool:
        if self._stop.is_set():
            return True
        if self._clock.monotonic() - started > self._poll_budget:
            log.info("listener: poll time budget used; the backlog continues in the next poll, started at once")
            return True
        return False

    def _unsafe_from(self, head: int, target: int) -> int:
        """The first block that may still be reorganised (and so needs every header)."""
        if self._settings.follow != "latest":
            return target + 1  # safe/finalized blocks do not reorganise
        return max(0, head - self._max_reorg_depth)

    def _commit(
        self,
        before: Checkpoint,
        records: list[EventRecord],
        after: Checkpoint,
        head: int,
        started: float,
        *,
        resumes: bool = True,
    ) -> int:
        """Store one range (or only a heartbeat) in one transaction. ``resumes``: this commit shows the
        listener agrees with the chain again (``on_recovered`` is due if it was pending)."""
        if not self._store.try_acquire_leader(CHECKPOINT_NAME):
            raise StoreError("lost the leader lock before committing; another replica ingests")
        processed = after.block_number
        heartbeat = CheckResult(
            check_name=HEARTBEAT_CHECK,
            ok=True,
            latency_ms=int((self._clock.monotonic() - started) * 1000),
            details={"processed_block": processed, "head_block": head, "blocks_behind": max(0, head - processed)},
            ts=self._clock.now(),
            uid=uuid.uuid4().hex,
        )
        if not after.block_hash and after.block_number == before.block_number:  # nothing to store: heartbeat
            self._store.write_results([heartbeat])
            inserted = 0
        else:
            by_type = self._store.commit_blocks(CHECKPOINT_NAME, records, after, heartbeat)
            self._count_inserted(by_type)
            self._quarantine.report(by_type.quarantined)
            inserted = sum(by_type.values())
            self._metrics.listener_processed_block.set(processed)
        self._metrics.heartbeat_seen(heartbeat.ts.timestamp())
        self.first_poll_done.set()  # a first poll working through a backlog has written a heartbeat
        if resumes:
            self._resumed()
        if self._on_progress is not None:
            self._on_progress(head, processed, inserted)
        if after.block_number != before.block_number:
            log.debug(
                "listener: stored blocks %d-%d: %d events (%d new)",
                before.block_number + 1,
                after.block_number,
                len(records),
                inserted,
            )
        return inserted

    def _count_inserted(self, inserted: dict[str, int]) -> None:
        """Count the rows actually inserted (a re-fetched range's duplicates are not new events)."""
        for event_type, count in inserted.items():
            self._metrics.listener_events.labels(type=event_type).inc(count)

    def _resumed(self) -> None:
        if not self._recovery_pending:
            return
        self._recovery_pending = False
        try:
            self._on_recovered()
        except Exception:
            # Like on_critical: the incident stays open; try again at the next commit.
            log.exception("listener: the on_recovered callback failed")
            self._recovery_pending = True

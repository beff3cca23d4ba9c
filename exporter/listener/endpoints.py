"""A pool of JSON-RPC endpoints with failover, behind the calls the listener makes.

``EndpointPool`` offers ``RpcClient``'s calls (``call``, ``batch``, ``block_number``, ``block``,
``blocks``, ``get_logs``) plus ``chain_id`` and ``check_chain``, over one ``RpcClient`` per URL of
``listener.rpc_urls``. Each call goes to the first usable endpoint in configuration order; the
others serve when it fails:

* a rate limit (429, a quota message) cools the endpoint for its ``Retry-After`` (capped at
  ``max_retry_after``) and the call moves on at once; a range is never narrowed for it;
* a transient failure (5xx, timeout, refused connection, garbled answer) or a JSON-RPC error the
  classifier calls permanent cools it for 1 s, doubling per failure in a row up to 60 s, and the
  call moves on; when every endpoint failed, the last error is raised (``Retrier`` backs off);
* ``block_number`` asks every usable endpoint and answers the best (highest) head; an endpoint is
  used only for blocks at or below its own head (a node behind its load balancer answers ``[]``
  or ``null`` for blocks it lacks: the event loss this avoids), and one whose head has not moved
  for ``head_stall_timeout`` while the best did is *stalled*: used only when nothing else can serve;
* ``eth_chainId`` is checked before an endpoint's first use, after each failure and every 10
  minutes; an endpoint on another chain is dropped for good (one error line). ``check_chain`` does
  it for all at start and raises ``ConfigError`` (exit 2) on a mismatch;
* a provider that refuses JSON-RPC batches gets single calls from then on (remembered per endpoint);
* every endpoint has its own ``RangeSizer``: ``sizer`` is the view ``RangeFetcher`` uses, sized by
  the endpoint that served (or refused) the calling thread's last ``eth_getLogs``;
* ranges fetched concurrently are spread: an endpoint with ``fetch_window`` getLogs in flight passes
  the next one to the following usable endpoint (``fetch_window`` per endpoint in all).

With one URL and no ``expected_chain_id`` the pool behaves as the single client did: no chain id
call, no cool-down, every error goes to the caller. Metrics: ``blocktrust_listener_rpc_endpoint_*``
with the endpoint's index as label (URLs carry API keys); logs name an endpoint by index and
``scheme://host``. Thread-safe: the poll's own calls and the fetch worker use it at once. Not for
classifying answers (``refusals.py``) or waiting between retries (``retry.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from exporter.clock import Clock
from exporter.config import ConfigError
from exporter.listener.ranges import RangeSizer
from exporter.listener.rpc import (
    BatchRefusedError,
    LogFilter,
    RangeRefusedError,
    RpcClient,
    RpcError,
    TransientRpcError,
)
from exporter.metrics import Metrics
from exporter.store.base import BlockRef

log = logging.getLogger(__name__)

_T = TypeVar("_T")
FIRST_COOLDOWN_SECONDS = 1.0
MAX_COOLDOWN_SECONDS = 60.0
CHAIN_RECHECK_SECONDS = 600.0


class WrongChainError(RpcError):
    """An endpoint answered ``eth_chainId`` with another chain than expected."""


def shown_endpoint(url: str) -> str:
    """``scheme://host[:port]`` of an endpoint URL: no path, query or userinfo (API keys live there)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass
class _Endpoint:
    index: int
    shown: str  # for logs: index and scheme://host
    client: RpcClient
    sizer: RangeSizer
    head: int | None = None
    head_moved_at: float = 0.0  # monotonic time the head last rose
    cooling_until: float = 0.0
    failures: int = 0  # in a row
    batch_ok: bool = True
    chain_checked_at: float | None = None
    dropped: bool = False
    stalled: bool = False
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = str(self.index)

    def __str__(self) -> str:
        return f"endpoint {self.index} ({self.shown})"


class _PoolSizer:
    """``RangeSizer``'s interface for ``RangeFetcher``: the sizer of the endpoint that served (or
    refused) the calling thread's last getLogs; before its first, the preferred endpoint's."""

    def __init__(self, pool: EndpointPool) -> None:
        self._pool = pool

    @property
    def size(self) -> int:
        return self._pool.logs_endpoint().sizer.size

    def take(self) -> int:
        return self._pool.logs_endpoint().sizer.take()

    def refused(
        self, start: int, end: int, suggested: tuple[int, int] | None, *, max_results: int | None = None
    ) -> None:
        endpoint = self._pool.logs_endpoint()
        endpoint.sizer.refused(start, end, suggested, max_results=max_results)
        self._pool.show_limit(endpoint)

    def succeeded(self, width: int, logs: int | None = None) -> None:
        endpoint = self._pool.logs_endpoint()
        endpoint.sizer.succeeded(width, logs)
        self._pool.show_limit(endpoint)


class EndpointPool:
    """Several JSON-RPC endpoints of one chain, used as one client (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        session: requests.Session,
        metrics: Metrics,
        clock: Clock,
        *,
        timeout: float,
        chunk_size: int,
        max_chunk_size: int,
        expected_chain_id: int | None = None,
        max_retry_after: float = 300.0,
        head_stall_timeout: float = 60.0,
        fetch_window: int = 1,
    ) -> None:
        if not urls:
            raise ConfigError("listener.rpc_urls: no RPC endpoint configured (POLYGON_RPC_URL)")
        self._metrics = metrics
        self._clock = clock
        self._max_chunk = max_chunk_size
        self._expected = expected_chain_id
        self._chain_id = expected_chain_id
        self._max_retry_after = max_retry_after
        self._stall_after = head_stall_timeout
        self._lock = threading.RLock()
        self._endpoints = [
            _Endpoint(
                i,
                shown_endpoint(url),
                RpcClient(url, session, metrics, clock, timeout=timeout),
                RangeSizer(chunk_size, max_chunk_size),
            )
            for i, url in enumerate(urls)
        ]
        self._window = max(1, fetch_window)  # getLogs in flight per endpoint before the next one serves
        self._logs_in_flight = dict.fromkeys(range(len(self._endpoints)), 0)
        self._last_logs = threading.local()  # .endpoint: the one of this thread's last getLogs
        self.sizer = _PoolSizer(self)
        for endpoint in self._endpoints:
            self.show_limit(endpoint)
            self._metrics.rpc_endpoint_up.labels(endpoint=endpoint.label).set(1)

    # ------------------------------------------------------------------------ the client's calls
    def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call on the first usable endpoint (``RpcClient.call``)."""
        return self._run(method, lambda e: e.client.call(method, params))

    def batch(self, method: str, params_list: list[list[Any]]) -> list[Any]:
        """A batch of one method (``RpcClient.batch``); single calls where batches are refused."""
        return self._run(method, lambda e: self._batched(e, method, params_list))

    def block_number(self) -> int:
        """The best head of the pool; asks every usable endpoint and records each one's head."""
        answered: dict[int, int] = {}
        last: Exception | None = None
        for endpoint in self._usable(None):
            try:
                self._ensure_chain(endpoint)
                answered[endpoint.index] = self._counted(endpoint, endpoint.client.block_number)
            except (TransientRpcError, RpcError) as exc:
                last = exc
                self._failed(endpoint, exc, rotate=len(self._endpoints) > 1)
        if not answered:
            raise last if last is not None else self._none_usable("eth_blockNumber")
        self._heads(answered)
        return max(answered.values())

    def block(self, number_or_tag: int | str) -> BlockRef | None:
        """A header by number or tag; a tag is asked of the endpoint with the best head."""
        needs = number_or_tag if isinstance(number_or_tag, int) else None
        return self._run(
            "eth_getBlockByNumber", lambda e: e.client.block(number_or_tag), needs=needs, best_first=needs is None
        )

    def blocks(self, numbers: list[int]) -> list[BlockRef | None]:
        """Headers of several blocks (one batch, or single calls where batches are refused)."""
        return self._run("eth_getBlockByNumber", lambda e: self._headers(e, numbers), needs=max(numbers))

    def get_logs(self, start: int, end: int, log_filter: LogFilter) -> list[dict[str, Any]]:
        """Logs of [start, end] from an endpoint whose head is at least ``end``. With several ranges
        in flight, an endpoint serving ``fetch_window`` of them already passes the next to another."""

        def fetch(endpoint: _Endpoint) -> list[dict[str, Any]]:
            self._last_logs.endpoint = endpoint
            with self._lock:
                self._logs_in_flight[endpoint.index] += 1
            try:
                return endpoint.client.get_logs(start, end, log_filter)
            finally:
                with self._lock:
                    self._logs_in_flight[endpoint.index] -= 1

        return self._run("eth_getLogs", fetch, needs=end, spread=True)

    @property
    def fetch_window(self) -> int:
        """Ranges the listener may have in flight: ``fetch_window`` per endpoint still in the pool."""
        with self._lock:
            return self._window * max(1, sum(1 for e in self._endpoints if not e.dropped))

    def chain_id(self) -> int | None:
        """The chain id every endpoint must serve: configured, or the first one answered (cached)."""
        with self._lock:
            return self._chain_id

    def check_chain(self) -> None:
        """At start: ask every endpoint for its chain id. ``ConfigError`` if one serves another chain;
        an endpoint that does not answer is checked at its first use instead."""
        if len(self._endpoints) == 1 and self._expected is None:
            return
        for endpoint in self._endpoints:
            try:
                found = self._ask_chain_id(endpoint)
            except (TransientRpcError, RpcError) as exc:
                log.warning("listener: %s: chain id not checked at start (%s); checked at first use", endpoint, exc)
                continue
            with self._lock:
                expected = self._chain_id
                if expected is None:
                    self._chain_id = found
                    continue
            if found != expected:
                source = "listener.expected_chain_id" if self._expected is not None else "endpoint 0"
                raise ConfigError(
                    f"listener.rpc_urls[{endpoint.index}] ({endpoint.shown}): serves chain id {found} "
                    f"(eth_chainId), expected {expected} ({source})"
                )
            endpoint.chain_checked_at = self._clock.monotonic()

    def logs_endpoint(self) -> _Endpoint:
        """The endpoint that served or refused this thread's last getLogs (its sizer sizes the next
        range); before the thread's first, the first usable one."""
        endpoint: _Endpoint | None = getattr(self._last_logs, "endpoint", None)
        if endpoint is not None:
            return endpoint
        usable = self._usable(None)
        return usable[0] if usable else self._endpoints[0]

    def show_limit(self, endpoint: _Endpoint) -> None:
        limit = endpoint.sizer.limit if endpoint.sizer.limit is not None else self._max_chunk
        self._metrics.rpc_endpoint_range_limit.labels(endpoint=endpoint.label).set(limit)

    # ------------------------------------------------------------------------ failover
    def _run(
        self,
        method: str,
        call: Callable[[_Endpoint], _T],
        *,
        needs: int | None = None,
        best_first: bool = False,
        spread: bool = False,
    ) -> _T:
        """``call`` on the first usable endpoint, moving on after each failure but a range refusal."""
        last: Exception | None = None
        tried: set[int] = set()
        while True:
            candidates = [e for e in self._usable(needs, best_first) if e.index not in tried]
            if not candidates:
                break
            if spread:
                with self._lock:  # stable: in order among those with room, then the least busy
                    candidates.sort(key=lambda e: (e.stalled, max(0, self._logs_in_flight[e.index] - self._window + 1)))
            endpoint = candidates[0]
            tried.add(endpoint.index)
            try:
                self._ensure_chain(endpoint)
                result = self._counted(endpoint, partial(call, endpoint))
            except RangeRefusedError:
                self._error(endpoint, "range")
                raise  # the fetcher narrows the range (on this endpoint's sizer)
            except (TransientRpcError, RpcError) as exc:
                last = exc
                more = any(e.index not in tried for e in self._usable(needs, best_first))
                self._failed(endpoint, exc, rotate=more)
                continue
            self._succeeded(endpoint)
            return result
        if last is not None:
            raise last
        raise self._none_usable(method, needs)

    def _usable(self, needs: int | None, best_first: bool = False) -> list[_Endpoint]:
        """Endpoints to try, in order: not dropped, not cooling, with the block ``needs``; stalled last.

        A single endpoint is always usable (as the single client was): its errors reach the caller."""
        now = self._clock.monotonic()
        with self._lock:
            alive = [e for e in self._endpoints if not e.dropped]
            if len(self._endpoints) == 1:
                return alive
            ready = [e for e in alive if e.cooling_until <= now]
            if needs is not None and any(e.head is not None for e in alive):
                # A head not (yet) known is no proof the endpoint has the block: a node behind its
                # load balancer would answer [] for it. It serves again once it told its head.
                ready = [e for e in ready if e.head is not None and e.head >= needs]
            if best_first:
                return sorted(ready, key=lambda e: (e.stalled, -(e.head or 0), e.index))
            return sorted(ready, key=lambda e: (e.stalled, e.index))

    def _none_usable(self, method: str, needs: int | None = None) -> Exception:
        now = self._clock.monotonic()
        with self._lock:
            alive = [e for e in self._endpoints if not e.dropped]
            if not alive:
                return RpcError(f"{method}: every RPC endpoint was dropped (another chain id)")
            waits = [e.cooling_until - now for e in alive if e.cooling_until > now]
        what = f"block {needs}" if needs is not None else "an answer"
        retry_after = min(waits) if waits else None
        return TransientRpcError(f"{method}: no usable RPC endpoint for {what} yet", retry_after=retry_after)

    def _counted(self, endpoint: _Endpoint, call: Callable[[], _T]) -> _T:
        self._metrics.rpc_endpoint_requests.labels(endpoint=endpoint.label).inc()
        return call()

    def _succeeded(self, endpoint: _Endpoint) -> None:
        with self._lock:
            endpoint.failures = 0
        self._metrics.rpc_endpoint_up.labels(endpoint=endpoint.label).set(0 if endpoint.stalled else 1)

    def _failed(self, endpoint: _Endpoint, exc: Exception, *, rotate: bool) -> None:
        """Count the failure; with other endpoints, cool this one down and count the rotation."""
        kind = _kind(exc)
        self._error(endpoint, kind)
        if isinstance(exc, WrongChainError) or len(self._endpoints) == 1:
            return
        with self._lock:
            endpoint.failures += 1
            endpoint.chain_checked_at = None  # it may come back pointing elsewhere: check again
            if kind == "rate_limit" and isinstance(exc, TransientRpcError) and exc.retry_after is not None:
                wait = min(exc.retry_after, self._max_retry_after)
            else:
                wait = min(MAX_COOLDOWN_SECONDS, FIRST_COOLDOWN_SECONDS * 2 ** (endpoint.failures - 1))
                if kind == "rate_limit":
                    wait = min(wait, self._max_retry_after)
            endpoint.cooling_until = self._clock.monotonic() + wait
        self._metrics.rpc_endpoint_up.labels(endpoint=endpoint.label).set(0)
        if rotate:
            self._metrics.rpc_endpoint_rotations.labels(endpoint=endpoint.label, reason=kind).inc()
        log.warning("listener: %s: %s; %s for %.1fs", endpoint, exc, "moving on" if rotate else "cooling", wait)

    def _error(self, endpoint: _Endpoint, kind: str) -> None:
        self._metrics.rpc_endpoint_errors.labels(endpoint=endpoint.label, **{"class": kind}).inc()

    # ------------------------------------------------------------------------ heads
    def _heads(self, answered: dict[int, int]) -> None:
        """Record each endpoint's head, its lag to the best one, and which ones stalled."""
        best = max(answered.values())
        now = self._clock.monotonic()
        with self._lock:
            for endpoint in self._endpoints:
                head = answered.get(endpoint.index)
                if head is not None and (endpoint.head is None or head > endpoint.head):
                    endpoint.head = head
                    endpoint.head_moved_at = now
                elif head is not None:
                    endpoint.head = head  # a lower head (another backend): believe it
                if endpoint.head is None:
                    continue
                lag = max(0, best - endpoint.head)
                self._metrics.rpc_endpoint_head_lag.labels(endpoint=endpoint.label).set(lag)
                stalled = lag > 0 and now - endpoint.head_moved_at >= self._stall_after
                if stalled and not endpoint.stalled and len(self._endpoints) > 1:
                    log.warning(
                        "listener: %s: head stalled at %d (best %d); used only as a last resort",
                        endpoint,
                        endpoint.head,
                        best,
                    )
                    self._metrics.rpc_endpoint_rotations.labels(endpoint=endpoint.label, reason="stalled").inc()
                elif endpoint.stalled and not stalled:
                    log.info("listener: %s: head moves again (%d)", endpoint, endpoint.head)
                endpoint.stalled = stalled
                up = not (endpoint.dropped or endpoint.stalled or endpoint.cooling_until > now)
                self._metrics.rpc_endpoint_up.labels(endpoint=endpoint.label).set(1 if up else 0)

    # ------------------------------------------------------------------------ chain id
    def _ensure_chain(self, endpoint: _Endpoint) -> None:
        """Check the endpoint's chain id when due; drop it (``WrongChainError``) if it is another chain."""
        if len(self._endpoints) == 1 and self._expected is None:
            return
        now = self._clock.monotonic()
        checked = endpoint.chain_checked_at
        if checked is not None and now - checked < CHAIN_RECHECK_SECONDS:
            return
        found = self._ask_chain_id(endpoint)
        with self._lock:
            if self._chain_id is None:
                self._chain_id = found
            expected = self._chain_id
            if found == expected:
                endpoint.chain_checked_at = now
                return
            endpoint.dropped = True
        self._metrics.rpc_endpoint_up.labels(endpoint=endpoint.label).set(0)
        self._metrics.rpc_endpoint_rotations.labels(endpoint=endpoint.label, reason="wrong_chain").inc()
        log.error("listener: %s serves chain id %d, expected %d: dropped from the pool", endpoint, found, expected)
        raise WrongChainError(f"{endpoint} serves chain id {found}, expected {expected}")

    def _ask_chain_id(self, endpoint: _Endpoint) -> int:
        value = self._counted(endpoint, lambda: endpoint.client.call("eth_chainId", []))
        try:
            return int(str(value), 16)
        except ValueError:
            raise TransientRpcError("eth_chainId: expected a hex quantity", "invalid_response") from None

    # ------------------------------------------------------------------------ batches
    def _batched(self, endpoint: _Endpoint, method: str, params_list: list[list[Any]]) -> list[Any]:
        return self._batch_or_single(
            endpoint,
            partial(endpoint.client.batch, method, params_list),
            lambda: [endpoint.client.call(method, params) for params in params_list],
        )

    def _headers(self, endpoint: _Endpoint, numbers: list[int]) -> list[BlockRef | None]:
        return self._batch_or_single(
            endpoint, partial(endpoint.client.blocks, numbers), lambda: [endpoint.client.block(n) for n in numbers]
        )

    def _batch_or_single(
        self, endpoint: _Endpoint, batched: Callable[[], list[_T]], single: Callable[[], list[_T]]
    ) -> list[_T]:
        """``batched`` while the endpoint takes batches; ``single`` (one call each) once it refused one."""
        if endpoint.batch_ok:
            try:
                return batched()
            except BatchRefusedError as exc:
                self._batch_refused(endpoint, exc)
        return single()

    def _batch_refused(self, endpoint: _Endpoint, exc: BatchRefusedError) -> None:
        with self._lock:
            first, endpoint.batch_ok = endpoint.batch_ok, False
        if not first:
            return  # another range's batch, sent at the same time, already told us (counted once)
        self._error(endpoint, "batch")
        log.warning("listener: %s refuses JSON-RPC batches (%s); single calls from now on", endpoint, exc)


def _kind(exc: Exception) -> str:
    """The error class of a failed call, for metrics and cool-downs."""
    if isinstance(exc, WrongChainError):
        return "wrong_chain"
    if isinstance(exc, TransientRpcError):
        return "rate_limit" if exc.rate_limited else "transient"
    if isinstance(exc, BatchRefusedError):
        return "batch"
    return "permanent"

"""A small Ethereum JSON-RPC client over an injected ``requests.Session``.

It does exactly the calls the listener needs (``eth_blockNumber``, ``eth_getBlockByNumber``,
``eth_getLogs``), counts every call in ``rpc_requests{method,outcome}`` and times it in
``rpc_duration``, and turns every way a provider can fail into one of three exceptions:

* ``RangeRefusedError``: the provider will not serve that block range (too many results, range too
  wide; e.g. codes -32005 / -32614), possibly with a range it suggests instead;
* ``TransientRpcError``: 429, 5xx, timeouts, refused connections, garbled JSON, an answer larger
  than ``max_response_bytes``: retry later;
* ``RpcError``: anything else the node answered with an error (``BatchRefusedError``: the provider
  refuses JSON-RPC batches).

What each answer means is ``refusals.py``'s decision (a corpus-tested classifier); this module only
raises the matching exception. A wide ``eth_getLogs`` that times out, overflows the byte cap or gets
a 502/504 is a range refusal, so the range narrows instead of failing the same way again.

``timeout`` bounds each call as a whole, not only each socket read: the answer is streamed and
reading stops at the call's deadline (and at ``max_response_bytes``), so a provider that trickles
or floods its answer cannot hold a poll (or a shutdown). Limit: the status line and headers are
bounded per socket read only (http.client reads them), the body is bounded in total.

Why not web3.py: the listener needs the raw log dicts (it decodes with eth-abi itself) and full
control over error classification; web3's formatters and middlewares cost more than the whole
decode step. Raw JSON-RPC also never validates ``extraData``, so Polygon's POA blocks (the reason
web3 needs its extra-data middleware) need no special handling here.

Not for retrying, failover or range sizing: ``endpoints.py`` and ``ranges.py`` decide what to do
with these errors. Error messages never contain the RPC URL (it often carries an API key).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import requests
import urllib3.exceptions

from exporter.clock import Clock
from exporter.listener.bloom import parse_bloom
from exporter.listener.refusals import Failure, Refusal, classify, classify_failure
from exporter.metrics import Metrics
from exporter.store.base import BlockRef

# The largest answer read: far above any real one (providers cap eth_getLogs at ~10k logs, a few
# tens of MB), far below what would exhaust the sidecar's memory. Larger: a transient error.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_READ_CHUNK = 1 << 16
_T = TypeVar("_T")


class RpcError(Exception):
    """The node answered a call with an error that retrying will not fix."""


class TransientRpcError(Exception):
    """The call may succeed later: rate limiting, a server error, a timeout, garbled JSON."""

    def __init__(self, message: str, outcome: str = "transient", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome  # the rpc_requests metric label
        self.retry_after = retry_after  # seconds the provider asked for (Retry-After), uncapped

    @property
    def rate_limited(self) -> bool:
        return self.outcome == "rate_limited"


class BatchRefusedError(RpcError):
    """The provider refuses JSON-RPC batches (or batches this large): send single calls."""


class RangeRefusedError(Exception):
    """The provider refused a getLogs block range; ``suggested`` is its proposal, if it made one."""

    def __init__(
        self,
        message: str,
        suggested: tuple[int, int] | None,
        max_blocks: int | None = None,
        max_results: int | None = None,
    ) -> None:
        super().__init__(message)
        self.suggested = suggested
        self.max_blocks = max_blocks  # a width the provider named as its limit
        self.max_results = max_results  # a result cap (logs per answer; 0: unnamed), not a width


@dataclass(frozen=True)
class BlockHeader(BlockRef):
    """A header as ``block``/``blocks`` return it: a ``BlockRef`` plus its ``logsBloom`` as an
    integer (None when the node sent none or a malformed one: then nothing is known from it)."""

    logs_bloom: int | None = field(default=None, compare=False, repr=False)

    def ref(self) -> BlockRef:
        """The plain ``BlockRef`` (what checkpoints keep)."""
        return BlockRef(self.number, self.hash, self.parent_hash)


@dataclass(frozen=True)
class LogFilter:
    """What one ``eth_getLogs`` asks for: every followed address and topic0 at once."""

    addresses: tuple[str, ...]
    topics0: tuple[str, ...]


class RpcClient:
    """JSON-RPC over HTTP POST; one instance per listener, used from one thread at a time."""

    def __init__(
        self,
        url: str,
        session: requests.Session,
        metrics: Metrics,
        clock: Clock,
        *,
        timeout: float,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._url = url
        self._session = session
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; returns ``result`` or raises one of the module's three errors."""
        request = self._request(method, params)
        return self._measured(method, 1, lambda: self._answer(method, self._post(method, request)))

    def batch(self, method: str, params_list: list[list[Any]]) -> list[Any]:
        """Several calls of one method in one HTTP request (a JSON-RPC batch); results in order.

        Counted as ``len(params_list)`` calls of ``method``; any failed element fails the batch.
        """
        requests_ = [self._request(method, params) for params in params_list]

        def run() -> list[Any]:
            answers = self._post(method, requests_)
            if not isinstance(answers, list):
                # One error object for a whole batch: often "batches not supported" (refusals.py).
                raise self._answer_error(method, answers, batch=True)
            by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
            missing = [r for r in requests_ if r["id"] not in by_id]
            if missing:
                raise _transient(
                    f"{method}: batch answer lacks {len(missing)} of {len(requests_)} results", "invalid_response"
                )
            return [self._answer(method, by_id[r["id"]]) for r in requests_]

        return self._measured(method, len(params_list), run)

    def _measured(self, method: str, calls: int, run: Callable[[], _T]) -> _T:
        started = self._clock.monotonic()
        outcome = "success"
        try:
            return run()
        except RangeRefusedError:
            outcome = "range_refused"
            raise
        except BatchRefusedError:
            outcome = "batch_refused"
            raise
        except TransientRpcError as exc:
            outcome = exc.outcome
            raise
        except RpcError:
            outcome = "rpc_error"
            raise
        finally:
            self._metrics.rpc_requests.labels(method=method, outcome=outcome).inc(calls)
            self._metrics.rpc_duration.labels(method=method).observe(self._clock.monotonic() - started)

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    def _post(self, method: str, payload: object) -> Any:
        """POST ``payload``; the parsed JSON answer, or a transient error for transport trouble."""
        # The deadline bounds real socket I/O, so it is on the real monotonic clock, never a test's.
        deadline = time.monotonic() + self._timeout
        try:
            response = self._session.post(
                self._url,
                data=json.dumps(payload),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                stream=True,
            )
            try:
                content = self._read_body(method, response, deadline)
            except BaseException:
                response.close()  # an unfinished answer: drop the connection, not reusable
                raise
            response.raw.release_conn()  # read to the end: keep the connection alive for reuse
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise _transient(f"{method}: no answer within {self._timeout:g}s", "timeout") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # str(exc) would name the URL; the exception type is enough to diagnose.
            raise _transient(f"{method}: connection failed ({type(exc).__name__})", "connection_error") from None
        batch = isinstance(payload, list)
        status = response.status_code
        try:
            # orjson: faster on a catch-up's large answers. Unlike json.loads it reads an integer
            # beyond 64 bits as a float; JSON-RPC quantities are hex strings, so none is expected.
            answer = orjson.loads(content)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            if status < 400:
                raise _transient(f"{method}: invalid JSON in the answer (HTTP {status})", "invalid_response") from None
            answer = None  # an HTML or text error page: classified by its status (and text)
        error = answer.get("error") if isinstance(answer, dict) else None
        if status >= 400 or (batch and isinstance(error, dict)):
            refusal = classify(
                method,
                status=status,
                error=error if isinstance(error, dict) else None,
                body=content[:300].decode("utf-8", "replace"),
                retry_after=response.headers.get("Retry-After"),
                batch=batch,
                now=self._clock.now(),
            )
            raise _raised(refusal, status)
        return answer

    def _read_body(self, method: str, response: requests.Response, deadline: float) -> bytes:
        """The whole body, read before ``deadline`` and within the byte cap, else a transient error."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _transient(f"{method}: answer of {declared} bytes exceeds {self._max_bytes}", "oversize")
        raw = response.raw
        connection = getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
        body = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _transient(f"{method}: answer not complete within {self._timeout:g}s", "timeout")
            if sock is not None:
                # Each read may wait only for what is left of the call's time, not a full timeout.
                sock.settimeout(remaining)
            # read1: returns whatever arrived (at most a chunk), so a trickle reaches the checks above.
            chunk = raw.read1(_READ_CHUNK, decode_content=True)  # gzip from hosted providers; cap counts decoded bytes
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self._max_bytes:
                raise _transient(f"{method}: answer larger than {self._max_bytes} bytes", "oversize")

    def _answer(self, method: str, answer: Any) -> Any:
        if isinstance(answer, dict) and "result" in answer and answer.get("error") is None:
            return answer["result"]
        raise self._answer_error(method, answer)

    def _answer_error(self, method: str, answer: Any, *, batch: bool = False) -> Exception:
        error = answer.get("error") if isinstance(answer, dict) else None
        if error is None:
            return _transient(f"{method}: answer is not a JSON-RPC response", "invalid_response")
        error = error if isinstance(error, dict) else {"message": str(error)}
        return _raised(classify(method, error=error, batch=batch, now=self._clock.now()), 200)

    # ------------------------------------------------------------------------------ calls
    def block_number(self) -> int:
        return _quantity(self.call("eth_blockNumber", []), "eth_blockNumber")

    def block(self, number_or_tag: int | str) -> BlockRef | None:
        """The header of a block by number or tag ("latest", "safe", "finalized"); None if unknown."""
        tag = hex(number_or_tag) if isinstance(number_or_tag, int) else number_or_tag
        result = self.call("eth_getBlockByNumber", [tag, False])
        return None if result is None else _block_ref(result)

    def blocks(self, numbers: list[int]) -> list[BlockRef | None]:
        """Headers of several blocks by number, in one batch request."""
        results = self.batch("eth_getBlockByNumber", [[hex(n), False] for n in numbers])
        return [None if r is None else _block_ref(r) for r in results]

    def get_logs(self, start: int, end: int, log_filter: LogFilter) -> list[dict[str, Any]]:
        """All logs of the followed addresses and topics in [start, end]: one call."""
        params = {
            "fromBlock": hex(start),
            "toBlock": hex(end),
            "address": list(log_filter.addresses),
            "topics": [list(log_filter.topics0)],
        }
        try:
            result = self.call("eth_getLogs", [params])
        except RangeRefusedError as exc:
            if exc.suggested is None and exc.max_blocks is not None:
                exc.suggested = (start, start + exc.max_blocks - 1)
            raise
        except TransientRpcError as exc:
            # A wide range that timed out or overflowed the byte cap: narrower is the likeliest cure.
            failure: Failure | None = "timeout" if exc.outcome == "timeout" else None
            failure = "oversize" if exc.outcome == "oversize" else failure
            if failure is not None and classify_failure("eth_getLogs", failure, width=end - start + 1).kind == "range":
                raise RangeRefusedError(str(exc), None) from None
            raise
        if not isinstance(result, list):
            raise _transient("eth_getLogs: result is not a list", "invalid_response")
        return result


def _transient(message: str, outcome: str, retry_after: float | None = None) -> TransientRpcError:
    return TransientRpcError(message, outcome, retry_after=retry_after)


def _raised(refusal: Refusal, status: int) -> Exception:
    """The exception that tells the caller what a classified refusal means."""
    if refusal.kind == "range":
        return RangeRefusedError(refusal.reason, refusal.suggested, refusal.max_blocks, refusal.max_results)
    if refusal.kind == "rate_limit":
        return _transient(refusal.reason, "rate_limited", refusal.retry_after)
    if refusal.kind == "transient":
        return _transient(refusal.reason, "http_error" if status >= 400 else "transient", refusal.retry_after)
    if refusal.kind == "batch":
        return BatchRefusedError(refusal.reason)
    return RpcError(refusal.reason)


def _block_ref(result: Any) -> BlockHeader:
    try:
        return BlockHeader(
            number=int(result["number"], 16),
            hash=result["hash"],
            parent_hash=result["parentHash"],
            logs_bloom=parse_bloom(result.get("logsBloom")),
        )
    except (KeyError, TypeError, ValueError):
        raise _transient("eth_getBlockByNumber: malformed block header", "invalid_response") from None


def _quantity(value: object, method: str) -> int:
    if not isinstance(value, str):
        raise _transient(f"{method}: expected a hex quantity", "invalid_response")
    try:
        return int(value, 16)
    except ValueError:
        raise _transient(f"{method}: expected a hex quantity", "invalid_response") from None

"""The refusal classifier against the corpus of real provider answers (tests/data/rpc_refusals.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.listener.refusals import classify, classify_failure, parse_retry_after

CORPUS_PATH = Path(__file__).parent.parent / "data" / "rpc_refusals.yaml"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
KINDS = {"range", "rate_limit", "transient", "permanent", "batch"}


def load_corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text(encoding="utf-8"))
    return entries


CORPUS = load_corpus()


def classify_entry(entry: dict[str, Any]) -> Any:
    return classify(
        entry.get("method", "eth_getLogs"),
        status=entry.get("status", 200),
        error=entry.get("error"),
        body=entry.get("body", ""),
        retry_after=entry.get("retry_after"),
        batch=entry.get("batch", False),
        now=NOW,
    )


def test_corpus_is_well_formed_and_covers_every_kind_and_provider() -> None:
    names = [e["name"] for e in CORPUS]
    assert len(names) == len(set(names))
    for entry in CORPUS:
        assert entry["expect"]["kind"] in KINDS, entry["name"]
        assert entry.get("source"), entry["name"]
        assert ("error" in entry) != ("body" in entry), entry["name"]
    assert {e["expect"]["kind"] for e in CORPUS} == KINDS
    providers = " ".join(e["provider"] for e in CORPUS)
    for name in ("Infura", "Alchemy", "QuickNode", "Ankr", "dRPC", "Tenderly", "Chainstack", "polygon"):
        assert name.lower() in providers.lower(), name


@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
def test_every_corpus_answer_is_classified_as_labelled(entry: dict[str, Any]) -> None:
    refusal = classify_entry(entry)
    expect = entry["expect"]
    assert refusal.kind == expect["kind"]
    if "suggested" in expect:
        assert refusal.suggested == tuple(expect["suggested"])
    if "max_blocks" in expect:
        assert refusal.max_blocks == expect["max_blocks"]
        assert refusal.max_results is None  # a width limit is not a result cap
    if "max_results" in expect:
        assert refusal.max_results == expect["max_results"]
    if "retry_after" in expect:
        assert refusal.retry_after == pytest.approx(expect["retry_after"])
    assert "http" not in refusal.reason.split(":", 1)[0]  # the reason starts with the method, no URL


def test_one_code_for_quota_and_range_is_told_apart_by_the_message() -> None:
    quota = classify(
        "eth_getLogs", error={"code": -32005, "message": "daily request count exceeded, request rate limited"}
    )
    too_many = classify("eth_getLogs", error={"code": -32005, "message": "query returned more than 10000 results"})
    assert (quota.kind, too_many.kind) == ("rate_limit", "range")


def test_a_range_suggestion_from_a_width_starts_at_the_requested_block() -> None:
    refusal = classify("eth_getLogs", error={"code": -32602, "message": "range 2999 exceeds limit of 2000"})
    assert refusal.suggested_range(5_000) == (5_000, 6_999)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Mon, 30 Nov 2026 00:10:00 GMT", 600.0),
        ("Sun, 29 Nov 2026 23:00:00 GMT", 0.0),  # a date in the past: now
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_a_retry_after_above_thirty_seconds_is_kept_whole() -> None:
    refusal = classify("eth_blockNumber", status=429, body="slow down", retry_after="300", now=NOW)
    assert (refusal.kind, refusal.retry_after) == ("rate_limit", 300.0)


@pytest.mark.parametrize(
    ("method", "failure", "width", "kind"),
    [
        ("eth_getLogs", "timeout", 100, "range"),
        ("eth_getLogs", "oversize", 2, "range"),
        ("eth_getLogs", "timeout", 1, "transient"),  # nothing narrower to ask for
        ("eth_getLogs", "connection", 100, "transient"),
        ("eth_blockNumber", "timeout", 1, "transient"),
        ("eth_getBlockByNumber", "garbled", 1, "transient"),
    ],
)
def test_answers_that_never_came_whole(method: str, failure: Any, width: int, kind: str) -> None:
    assert classify_failure(method, failure, width=width).kind == kind


def test_a_rate_limit_never_shrinks_a_range() -> None:
    refusal = classify("eth_getLogs", status=429, error={"code": -32005, "message": "limit exceeded"})
    assert refusal.kind == "rate_limit"
    assert refusal.suggested_range(10) is None


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("block range limit reached", "range"),
        ("too many results, limit reached", "range"),
        ("request limit reached", "rate_limit"),
        ("monthly quota exceeded", "rate_limit"),
    ],
)
def test_a_limit_on_the_query_is_not_taken_for_a_quota(message: str, kind: str) -> None:
    assert classify("eth_getLogs", error={"code": -32000, "message": message}).kind == kind


@pytest.mark.parametrize(
    ("message", "max_results"),
    [
        ("query returned more than 5000 results", 5000),
        ("Log response size exceeded ... a cap of 10K logs in the response", 10_000),
        ("logs matched by query exceeds limit of 2,500", 2500),
        ("too many results in the answer", 0),
        ("block range too large", None),
        ("range 2999 exceeds limit of 2000", None),
    ],
)
def test_a_result_cap_is_told_from_a_width_limit(message: str, max_results: int | None) -> None:
    refusal = classify("eth_getLogs", error={"code": -32005, "message": message})
    assert refusal.kind == "range"
    assert refusal.max_results == max_results

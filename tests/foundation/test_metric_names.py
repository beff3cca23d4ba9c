"""The exposition follows Prometheus conventions a user notices (issue 13, kind 8): no label that a
scrape would rename (``job``, ``instance``), the process and runtime metrics every exporter has, and
no ``_created`` series."""

from __future__ import annotations

import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import Exposition, Metrics
from exporter.probes.runner import failure_labels

# Prometheus sets these on every scraped series; an exported one is renamed to exported_<name>.
TARGET_LABELS = {"job", "instance"}


@pytest.fixture
def live() -> tuple[CollectorRegistry, Metrics]:
    """A registry whose every labelled metric has a child, so every label name shows in a scrape."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            names = wrapper._labelnames  # client_python has no public accessor for the declared labels
            child = wrapper.labels(*["x"] * len(names)) if names else wrapper
            if hasattr(child, "inc"):
                child.inc()
            elif hasattr(child, "observe"):
                child.observe(0.1)
    metrics.heartbeat_seen(0.0)
    return registry, metrics


def test_no_metric_has_a_label_named_job_or_instance(live: tuple[CollectorRegistry, Metrics]) -> None:
    registry, _ = live
    labelled = 0
    for family in registry.collect():
        for sample in family.samples:
            assert not TARGET_LABELS & set(sample.labels), f"{sample.name} has {sorted(sample.labels)}"
            labelled += bool(sample.labels)
    assert labelled > 20


def test_job_runs_are_labelled_by_task(live: tuple[CollectorRegistry, Metrics]) -> None:
    registry, metrics = live
    metrics.job_runs.labels(task="checks", outcome="success").inc()
    assert registry.get_sample_value("blocktrust_job_runs_total", {"task": "checks", "outcome": "success"}) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="client_python's ProcessCollector reads /proc")
def test_the_injected_registry_has_process_and_python_metrics(live: tuple[CollectorRegistry, Metrics]) -> None:
    registry, _ = live
    assert (registry.get_sample_value("process_start_time_seconds") or 0) > 0
    assert registry.get_sample_value("process_resident_memory_bytes")
    assert registry.get_sample_value("python_gc_collections_total", {"generation": "0"}) is not None
    assert any(f.name == "python_info" for f in registry.collect())


def test_the_exposition_has_no_created_series(live: tuple[CollectorRegistry, Metrics]) -> None:
    registry, _ = live
    text = generate_latest(Exposition(registry)).decode()
    families = list(text_string_to_metric_families(text))
    assert not [s.name for f in families for s in f.samples if s.name.endswith("_created")]
    assert 'blocktrust_check_runs_total{check="x",result="x"} 1.0' in text  # the counters themselves stay
    restricted = generate_latest(Exposition(registry).restricted_registry(["blocktrust_alerts_sent_total"])).decode()
    assert "blocktrust_alerts_sent_total{" in restricted and "_created" not in restricted


def test_the_last_failure_class_is_one_series_per_check() -> None:
    """``blocktrust_check_last_failure_info`` keeps the last failure's class and status only: a new
    class replaces the old series (bounded: checks x 1), the same one changes nothing."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    metrics.record_failure("api.health", "http_status", 503)
    metrics.record_failure("api.health", "http_status", 503)
    metrics.record_failure("api.events", "timeout", None)
    metrics.record_failure("api.health", "timeout", None)
    series = [
        sample.labels
        for family in registry.collect()
        if family.name == "blocktrust_check_last_failure_info"
        for sample in family.samples
    ]
    assert sorted(series, key=lambda labels: labels["check"]) == [
        {"check": "api.events", "class": "timeout", "status_code": ""},
        {"check": "api.health", "class": "timeout", "status_code": ""},
    ]


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"error": "http_status", "status_code": 500}, ("http_status", 500)),
        ({"error": "timeout", "status_code": None}, ("timeout", None)),
        ({"error": "something new", "status_code": 200}, ("internal_error", 200)),
        ({"error": None, "status_code": 99999}, ("internal_error", None)),
        ({"error": "http_status", "status_code": True}, ("http_status", None)),
    ],
)
def test_failure_labels_are_bounded(details: dict[str, object], expected: tuple[str, int | None]) -> None:

    assert failure_labels(details) == expected

"""Prometheus metrics of one server process (``GET /metrics``).

Requests (count and latency by route template, method and status), governance decisions by kind, the trace
buffer's stats (buffered, capacity, pressure, processed, written, dropped, lag_ms) read at scrape time, and
storage errors.
Each app has its own registry, so several apps in one process (tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""

# Latency buckets in seconds: the interesting range for a governance call is 50 µs .. 100 ms.
_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class _TraceCollector(Collector):
    """Reads the runtime's trace stats when scraped (no background polling)."""

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        for key in ("buffered", "capacity", "pressure", "processed", "written", "dropped", "lag_ms"):
            value = stats.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield GaugeMetricFamily(f"cra_trace_{key}", f"Trace processor: {key}", value=float(value))


class ServerMetrics:
    """The counters and histograms the server updates, and their rendering for ``/metrics``."""

    def __init__(self, trace_stats: Callable[[], Mapping[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cra_http_requests",
            "HTTP requests by route, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cra_http_request_duration_seconds",
            "HTTP request latency by route",
            ("route", "method"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "cra_decisions",
            "Governance decisions: resolve decision types and execute statuses",
            ("operation", "outcome"),
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "cra_storage_errors", "Requests refused because storage was unavailable", registry=self.registry
        )
        self.auth_failures = Counter(
            "cra_auth_failures", "Requests refused for missing or bad credentials", registry=self.registry
        )
        self.rate_limited = Counter(
            "cra_http_rate_limited",
            "Requests refused by the per-credential rate limit",
            registry=self.registry,
        )
        self.streams_open = Gauge(
            "cra_ws_streams_open", "Trace streams (WebSocket) open now", registry=self.registry
        )
        self.stream_events = Counter(
            "cra_ws_events_sent", "Trace events sent over WebSocket streams", registry=self.registry
        )
        self.streams_closed = Counter(
            "cra_ws_streams_closed", "Trace streams ended, by close code", ("code",), registry=self.registry
        )
        self.registry.register(_TraceCollector(trace_stats))
        # labels() costs a few microseconds per call; the label sets are few, so keep their children.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._decision_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_decision(self, operation: str, outcome: str) -> None:
        """Count one decision (``resolve``/``allow``, ``execute``/``denied``, ...)."""
        key = (operation, outcome)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(operation, outcome)
        child.inc()

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

"""The metrics a process records, and their exposition.

Every label takes a bounded set of values (route templates, formats, outcomes, channels),
never an id, so the number of series does not grow with the data.

`coverline serve --workers N` runs N processes; with `PROMETHEUS_MULTIPROC_DIR` set, each
writes its values to files there and a scrape of any process reads them all (the sum). The
gauges read from the database are computed at scrape time by whichever process answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Webhook formats and message channels, spelled out here so that the series exist (at zero)
# before the first attempt: an alert on a ratio needs both sides.
WEBHOOK_FORMATS = ("xcover", "mycover")
WEBHOOK_OUTCOMES = ("succeeded", "retry", "failed")
MESSAGE_CHANNELS = ("email", "sms")
MESSAGE_OUTCOMES = ("sent", "retry", "failed", "expired")

HTTP_REQUESTS = Counter(
    "coverline_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "coverline_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_ATTEMPTS = Counter(
    "coverline_webhook_attempts",
    "Webhook attempts recorded, by endpoint format and what they led to: succeeded, retry "
    "(failed, tried again later) or failed (failed for good).",
    ["format", "outcome"],
)
WEBHOOK_LAG = Histogram(
    "coverline_webhook_delivery_lag_seconds",
    "Time from a delivery's creation (the commit of its event) to the start of its first "
    "attempt, by endpoint format.",
    ["format"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
WEBHOOK_DURATION = Histogram(
    "coverline_webhook_attempt_duration_seconds",
    "Duration of webhook HTTP requests, connection to response, by endpoint format.",
    ["format"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
MESSAGES = Counter(
    "coverline_messages",
    "Customer message attempts recorded, by channel and outcome: sent, retry, failed, or "
    "expired (never sent in time).",
    ["channel", "outcome"],
)
RENEWAL_TRANSITIONS = Counter(
    "coverline_renewal_transitions",
    "Renewal transitions applied by the scheduler, by event type.",
    ["type"],
)
RENEWAL_LAG = Histogram(
    "coverline_renewal_scheduler_lag_seconds",
    "How long after its due time the scheduler applied a renewal transition.",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0),
)

for _format in WEBHOOK_FORMATS:
    WEBHOOK_LAG.labels(_format)
    WEBHOOK_DURATION.labels(_format)
    for _outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_ATTEMPTS.labels(_format, _outcome)
for _channel in MESSAGE_CHANNELS:
    for _outcome in MESSAGE_OUTCOMES:
        MESSAGES.labels(_channel, _outcome)


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def webhook_attempts(attempts: Iterable[tuple[str, str, float, float | None]]) -> None:
    """Attempts recorded together: (format, outcome, duration in seconds, lag in seconds for
    a delivery's first attempt only, else None)."""
    counts: dict[tuple[str, str], int] = {}
    durations: dict[str, Any] = {}
    lags: dict[str, Any] = {}
    for format, outcome, duration_seconds, lag_seconds in attempts:
        counts[format, outcome] = counts.get((format, outcome), 0) + 1
        duration = durations.get(format)
        if duration is None:
            duration = durations[format] = WEBHOOK_DURATION.labels(format)
        duration.observe(duration_seconds)
        if lag_seconds is not None:
            lag = lags.get(format)
            if lag is None:
                lag = lags[format] = WEBHOOK_LAG.labels(format)
            lag.observe(max(lag_seconds, 0.0))
    for (format, outcome), count in counts.items():
        WEBHOOK_ATTEMPTS.labels(format, outcome).inc(count)


def message_outcome(channel: str, outcome: str, count: int = 1) -> None:
    if count:
        MESSAGES.labels(channel, outcome).inc(count)


def renewal_transition(type: str, lag_seconds: float) -> None:
    RENEWAL_TRANSITIONS.labels(type).inc()
    RENEWAL_LAG.observe(max(lag_seconds, 0.0))


def process_registry() -> Collector:
    """What this process reports: its own values, or those of every process sharing the
    multiprocess directory."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class _Scrape:
    def __init__(self, registry: Collector, extra: Sequence[Metric]) -> None:
        self._registry = registry
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._extra


def exposition(accept: str, extra: Iterable[Metric] = ()) -> tuple[bytes, str]:
    """The body and content type of a scrape, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Scrape(process_registry(), list(extra))), content_type

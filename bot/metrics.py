"""Prometheus metrics: what the desk did, what waits, and how Telegram treats us.

One registry per daemon (not the global default), so tests can run several daemons in
one process. Counters are bumped where things happen; gauges that describe the store
(outbox depth, dead letters, open tickets) are refreshed by the housekeeping loop.
"""

from __future__ import annotations

import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# First response in a support desk: minutes to a day.
log = structlog.stdlib.get_logger(__name__)

FIRST_RESPONSE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
# Resolution: a quarter of an hour to two weeks.
RESOLUTION_BUCKETS = (900, 3600, 7200, 14400, 28800, 86400, 172800, 259200, 604800, 1209600)


class Metrics:
    """TopicDesk's metrics, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter(
            "topicdesk_updates_processed", "Updates processed, by outcome", ["outcome"], registry=r
        )
        self.sends = Counter(
            "topicdesk_sends",
            "Bot API sends, by method and result",
            ["method", "result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "topicdesk_telegram_429", "429 Too Many Requests answers from Telegram", registry=r
        )
        self.retries = Counter("topicdesk_send_retries", "Send attempts retried", registry=r)
        self.outbox_depth = Gauge(
            "topicdesk_outbox_depth", "Outbox rows waiting to be sent", registry=r
        )
        self.dead_letters = Gauge(
            "topicdesk_dead_letters", "Dead letters not yet retried or dropped", registry=r
        )
        self.open_tickets = Gauge("topicdesk_open_tickets", "Tickets open now", registry=r)
        self.first_response = Histogram(
            "topicdesk_first_response_seconds",
            "From the customer's first message to the first agent reply",
            buckets=FIRST_RESPONSE_BUCKETS,
            registry=r,
        )
        self.resolution = Histogram(
            "topicdesk_resolution_seconds",
            "From the customer's first message to the ticket's resolution (or closing)",
            buckets=RESOLUTION_BUCKETS,
            registry=r,
        )
        self.sla_events = Counter(
            "topicdesk_sla_events",
            "SLA warnings and breaches recorded, by clock (first_response, resolution) and stage",
            ["clock", "stage"],
            registry=r,
        )
        self.poll_age = Gauge(
            "topicdesk_seconds_since_last_poll",
            "Seconds since getUpdates last succeeded",
            registry=r,
        )
        self.pending_updates = Gauge(
            "topicdesk_pending_update_count",
            "pending_update_count from getWebhookInfo",
            registry=r,
        )
        self.breaker_open = Gauge(
            "topicdesk_circuit_breaker_open",
            "1 while sending is stopped by the breaker",
            registry=r,
        )
        self.reconciliation = Counter(
            "topicdesk_reconciliation_findings",
            "Inconsistencies found by reconciliation, by kind",
            ["kind"],
            registry=r,
        )
        self.store = Gauge(
            "topicdesk_database_failing",
            "1 while the database cannot take updates (busy, locked, read-only, full, gone)",
            registry=r,
        )
        self.store_problem: str | None = None
        self.last_poll: float | None = None

    def finding(self, kind: str, event: str, **facts: object) -> None:
        """Count and log something reconciliation found wrong (and repaired)."""
        self.reconciliation.labels(kind).inc()
        log.warning(event, kind=kind, **facts)

    def store_failing(self, problem: str | None) -> None:
        """The database cannot take updates, and why (None: it can again)."""
        self.store_problem = problem
        self.store.set(0 if problem is None else 1)

    def polled(self) -> None:
        """getUpdates succeeded just now."""
        self.last_poll = time.monotonic()
        self.poll_age.set(0)

    def seconds_since_poll(self) -> float | None:
        """How long ago getUpdates last succeeded, None if it never has."""
        if self.last_poll is None:
            return None
        age = time.monotonic() - self.last_poll
        self.poll_age.set(age)
        return age

"""The circuit breaker: stop hammering Telegram while it is down, probe, then resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outage:
    """A finished outage, for the admins' report."""

    seconds: float
    queued: int


class CircuitBreaker:
    """Opens after `threshold` consecutive transient failures; closes on the next success."""

    def __init__(self, threshold: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self._clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.queued_at_open = 0
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def failure(self, queued: int) -> bool:
        """Count a transient failure; True if this one opened the breaker."""
        self.consecutive_failures += 1
        if self.is_open or self.consecutive_failures < self.threshold:
            return False
        self.opened_at = self._clock()
        self.queued_at_open = queued
        self.trips += 1
        log.error(
            "Telegram is failing: sending stopped, probing until it answers",
            consecutive_failures=self.consecutive_failures,
            queued=queued,
        )
        return True

    def success(self, queued: int) -> Outage | None:
        """Count a success; the outage it ends, if the breaker was open."""
        self.consecutive_failures = 0
        if self.opened_at is None:
            return None
        outage = Outage(
            seconds=self._clock() - self.opened_at, queued=max(queued, self.queued_at_open)
        )
        self.opened_at = None
        log.error(
            "Telegram answers again: sending resumed",
            down_seconds=round(outage.seconds, 1),
            queued=outage.queued,
        )
        return outage

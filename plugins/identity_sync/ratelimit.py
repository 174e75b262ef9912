"""Pacing calls under Cognito's per-account, per-Region request quotas.

A quota is shared by every caller in the account and Region, so a run divides it: the
writes are split into chunks run as mapped tasks, at most ``slots`` at a time (Airflow
enforces that under any executor), and each chunk paces itself at ``rate / slots``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Cognito's quotas (requests per second, per account and Region), from the AWS docs.
QUOTAS = {
    "ListUsers": 30.0,
    "AdminGetUser": 120.0,
    "AdminUpdateUserAttributes": 25.0,
    "AdminCreateUser": 50.0,
}


def share_of_rate(rate: float, slots: int, operation: str) -> float:
    """The rate one of ``slots`` concurrent callers may use, never letting their sum pass the quota."""
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    if not 0 < rate <= QUOTAS[operation]:
        raise ValueError(f"rate for {operation} must be in (0, {QUOTAS[operation]:g}] per second, got {rate:g}")
    return rate / slots


class RateLimiter:
    """Evenly spaced permits: at most ``rate`` per second, with no burst above it."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for the next permit; returns how long this caller waited."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        wait = at - now
        if wait > 0:
            self._sleep(wait)
        return wait

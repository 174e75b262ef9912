"""Pacing calls under Cognito's per-account, per-Region request quotas.

A quota is shared by every caller in the account and Region, so a run divides it: the
writes are split into chunks run as mapped tasks, at most ``slots`` at a time (Airflow
enforces that under any executor), and each chunk paces itself at ``rate / slots``.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Cognito's quotas (requests per second, per account and Region), from the AWS docs.
QUOTAS = {
    "ListUsers": 30.0,
    "AdminGetUser": 120.0,
    "AdminUpdateUserAttributes": 25.0,
    "AdminCreateUser": 50.0,
}


def share_of_rate(rate: float, slots: int, operation: str) -> float:
    """The rate each of ``slots`` concurrent, unsynchronised callers may use.

    Evenly spaced permits at rate r fall at most ceil(r) times into any one-second
    window, whatever their phase. So the shares add up to at most ``rate`` on average,
    and to at most ``slots * ceil(share)`` in any single second, which is kept within
    the quota: at rate 25 over 4 slots each gets 6/s, not 6.25/s (7 could meet in one second).
    """
    quota = QUOTAS[operation]
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    if not 0 < rate <= quota:
        raise ValueError(f"rate for {operation} must be in (0, {quota:g}] per second, got {rate:g}")
    share = rate / slots
    if slots * math.ceil(share) > quota:
        share = float(math.floor(quota / slots))
    return share


_pause_lock = threading.Lock()
_pausers = 0
_was_enabled = True


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while paced calls run; one full collection after.

    A collection pause (~100 ms with many response objects alive) holds back requests
    the limiter has already released; they then reach Cognito together and exceed the
    per-second quota. Measured: extraction at 28 RPS against a 30 RPS quota, 3 throttled
    calls with the collector on, none with it paused. The responses are acyclic, so
    reference counting still frees them meanwhile.
    """
    global _pausers, _was_enabled
    with _pause_lock:  # several paced loops may share a process: the last one out switches it back on
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()
        gc.collect()


class RateLimiter:
    """Permits on an absolute schedule: ``rate`` a second on average, at most ceil(rate) in any one second.

    Slot k falls at start + k / rate (start: the first permit). A caller that comes after
    its slot (every caller was busy in a call when it fell due, or woke late on a busy
    machine) takes the slot as soon as it may, and the slots after it keep their times: a
    moment's lateness costs that moment, not the pace of the rest of the run. (Spacing
    permits from ``max(now, next)`` instead loses every late caller's delay for good: at 28
    of 30 RPS a listing then fell to 27 RPS.) These bounds keep the catching up within the quota:

    - a slot missed by more than ``CATCH_UP`` seconds is gone, so over any time t there
      are at most ``rate * (t + CATCH_UP) + 1`` permits: idling saves up no more than that;
    - permits are never closer than half an interval: missed slots are made up at twice
      the rate at most, never in a burst;
    - no permit makes more than ceil(rate) in any one-second window (counted when the
      calls go out: a caller that wakes late on a busy machine is counted then), which is what
      share_of_rate relies on (evenly spaced permits fall at most ceil(rate) times into one
      second). At an integral rate this holds a made-up slot back until the permit of the
      second before has left the window: the lateness recurs once a second, in that one
      permit, while the schedule, and so the pace, stays where it was;
    - a throttle forgives nothing: missed slots are dropped and the permits spaced further apart.

    After a throttle it backs off (someone else is using the same quota) and then, one
    permit at a time, works its way back to the configured rate: a transient throttle
    costs a few seconds of pace, not the rest of the run.
    """

    RECOVERY = 0.99  # interval factor per permit while slowed down: 1.25x slower is undone in ~22 permits
    CATCH_UP = 0.25  # seconds a missed slot can still be taken; late wake-ups on a busy machine measured 10-120 ms

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.base_interval = self.interval = 1.0 / rate
        self.slowest = 2.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None  # the next slot; the schedule starts with the first permit
        self._granted: deque[list[float]] = deque(maxlen=math.ceil(rate))  # the last ceil(rate) permits' [time]
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for the next permit; returns how long this caller waited."""
        with self._lock:
            now = self._clock()
            slot = now if self._next is None else max(self._next, now - self.CATCH_UP)
            at = max(now, slot)
            if self._granted:
                at = max(at, self._granted[-1][0] + self.interval / 2)
                if len(self._granted) == self._granted.maxlen:  # ceil(rate) permits: one must be a second old
                    at = max(at, min(sent for (sent,) in self._granted) + 1.0)
            permit = [at]
            self._granted.append(permit)
            self._next = slot + self.interval
            self.interval = max(self.base_interval, self.interval * self.RECOVERY)
        wait = at - now
        if wait > 0:
            self._sleep(wait)
        woke = self._clock()
        if woke > at:
            # Woke late (a busy machine): the call goes out now, maybe together with the permits
            # that fell due meanwhile. The window counts it when it goes, so the later permits keep
            # every second, as the quota counts it, within ceil(rate).
            with self._lock:
                permit[0] = max(permit[0], woke)
        return wait

    def slow_down(self, factor: float = 1.25) -> None:
        """After a throttle: someone else shares the quota.

        Missed slots are dropped and permits spaced further apart, down to half the rate.
        """
        with self._lock:
            self.interval = min(self.interval * factor, self.slowest)
            if self._next is not None:
                self._next = max(self._next, self._clock())

    @property
    def rate(self) -> float:
        return 1.0 / self.interval

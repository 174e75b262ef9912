"""The limiter's arithmetic with a fake clock and a fake sleep (nothing here really sleeps),
share_of_rate's bounds, and the backfill's progress line."""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import random
import threading

import pytest

from identity_sync import config
from identity_sync.backfill import Progress
from identity_sync.ratelimit import QUOTAS, RateLimiter, share_of_rate
from identity_sync.schedule import DEFAULT_WRITE_RATE, WRITE_SLOTS

EPS = 1e-9


class FakeTime:
    """A clock that only moves when told to, and a sleep that moves it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def permits(limiter: RateLimiter, time: FakeTime, count: int, work: list[float] | None = None) -> list[float]:
    """When each of ``count`` permits was granted; ``work[i]`` is spent after permit i."""
    granted = []
    for i in range(count):
        limiter.acquire()
        granted.append(time.now)
        if work:
            time.advance(work[i])
    return granted


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize("rate", [1.0, 5.0, 6.25, 20.0, 25.0])
def test_permits_are_evenly_spaced_at_one_over_rate(rate: float) -> None:
    time = FakeTime()
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep)
    granted = permits(limiter, time, 50)
    assert granted[0] == 1000.0  # the first permit is immediate
    assert gaps(granted) == pytest.approx([1 / rate] * 49)
    assert len(time.sleeps) == 49 and time.sleeps == pytest.approx([1 / rate] * 49)


def test_acquire_returns_the_wait() -> None:
    time = FakeTime()
    limiter = RateLimiter(4.0, clock=time.clock, sleep=time.sleep)
    assert limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(0.25)
    time.advance(0.1)
    assert limiter.acquire() == pytest.approx(0.15)
    time.advance(1.0)
    assert limiter.acquire() == 0


def test_a_slow_caller_never_waits_and_is_never_faster_than_the_rate() -> None:
    time = FakeTime()
    limiter = RateLimiter(10.0, clock=time.clock, sleep=time.sleep)
    granted = permits(limiter, time, 20, work=[0.3] * 20)
    assert time.sleeps == []
    assert gaps(granted) == pytest.approx([0.3] * 19)


def test_no_burst_after_idling() -> None:
    """Unused permits are not saved up: after a long pause at most CATCH_UP seconds' worth are made up, spread out."""
    time = FakeTime()
    limiter = RateLimiter(5.0, clock=time.clock, sleep=time.sleep)
    permits(limiter, time, 3)
    time.advance(60.0)
    after = permits(limiter, time, 12)
    assert min(gaps(after)) >= 0.1 - EPS  # never closer than half an interval
    assert after[-1] - after[0] >= (12 - 1) / 5.0 - RateLimiter.CATCH_UP - EPS
    assert max_in_one_second(after) <= 5


def test_a_late_caller_takes_its_missed_slot_and_the_schedule_keeps_its_times() -> None:
    """With max(now, next) every late caller would push every later permit back, for good."""
    time = FakeTime(0.0)
    limiter = RateLimiter(10.0, clock=time.clock, sleep=time.sleep)
    granted = permits(limiter, time, 2)  # slots 0.0 and 0.1
    time.advance(0.15)  # the caller of slot 0.2 comes at 0.25: every caller was busy
    assert limiter.acquire() == 0
    granted.append(time.now)
    granted += permits(limiter, time, 3)
    assert granted == pytest.approx([0.0, 0.1, 0.25, 0.3, 0.4, 0.5])


def test_a_slot_missed_by_more_than_catch_up_is_gone() -> None:
    time = FakeTime(0.0)
    limiter = RateLimiter(10.0, clock=time.clock, sleep=time.sleep)
    permits(limiter, time, 1)
    time.advance(2.0)
    granted = permits(limiter, time, 6)
    made_up = RateLimiter.CATCH_UP * 10.0
    assert granted[-1] == pytest.approx(2.0 + 0.1 * 5 - 0.1 * made_up)


def test_a_throttle_drops_the_missed_slots() -> None:
    time = FakeTime(0.0)
    limiter = RateLimiter(10.0, clock=time.clock, sleep=time.sleep)
    permits(limiter, time, 1)
    time.advance(0.2)
    limiter.slow_down()
    granted = permits(limiter, time, 3)
    assert granted[0] == pytest.approx(0.2)  # not made up
    assert gaps(granted) == pytest.approx([0.125, 0.125 * 0.99])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [3.0, 6.25, 20.0, 25.0, 28.0])
def test_n_permits_over_time_t_never_exceed_rate_times_t_plus_catch_up_plus_one(rate: float, seed: int) -> None:
    """Late callers make up missed slots, within CATCH_UP; never more than ceil(rate) in one second, never a burst."""
    rng = random.Random(seed)
    time = FakeTime()
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep)
    work = [
        rng.choice([0.0, 0.0, rng.uniform(0, 3 / rate), rng.uniform(0, 0.3), rng.uniform(0, 2.0)]) for _ in range(300)
    ]
    granted = permits(limiter, time, 300, work)
    for i in range(len(granted)):
        for j in range(i, min(len(granted), i + 80)):
            elapsed = granted[j] - granted[i]
            assert j - i + 1 <= rate * (elapsed + RateLimiter.CATCH_UP) + 1 + EPS, (i, j, elapsed)
    assert max_in_one_second(granted) <= math.ceil(rate)
    assert min(gaps(granted)) >= 0.5 / rate - EPS


class OversleepingTime(FakeTime):
    """A sleep that returns ``late`` seconds after it should, once: a busy machine stalled the caller."""

    def __init__(self, late: float, stall_at: int) -> None:
        super().__init__(0.0)
        self.late = late
        self.stall_at = stall_at

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.sleeps) == self.stall_at:
            self.now += self.late


def test_a_caller_that_wakes_late_is_counted_when_its_call_goes() -> None:
    """Its call and the next ones go out close together; a second later the permits keep that second within the rate."""
    time = OversleepingTime(late=0.25, stall_at=5)
    limiter = RateLimiter(10.0, clock=time.clock, sleep=time.sleep)
    sent = []
    for _ in range(40):
        limiter.acquire()
        sent.append(time.now)  # when the call goes out
    assert max_in_one_second(sent) <= 10


@pytest.mark.parametrize("seed", range(5))
def test_late_callers_keep_the_average_pace(seed: int) -> None:
    """Callers late by up to 100 ms now and then: the permits still come at the configured rate on average."""
    rng = random.Random(seed)
    rate = 28.0
    time = FakeTime(0.0)
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep)
    granted = []
    for _ in range(340):
        if rng.random() < 0.1:
            time.advance(rng.uniform(0.0, 0.1))  # every chain was busy, or the caller woke late
        limiter.acquire()
        granted.append(time.now)
    assert (len(granted) - 1) / (granted[-1] - granted[0]) >= rate * 0.985  # max(now, next): 0.93-0.96
    assert max_in_one_second(granted) <= rate


class ThreadedFakeTime:
    """A shared fake clock for threads: each read ticks it forward a little, under a lock.

    Nothing sleeps: a permit's time is the caller's first reading of the clock in ``acquire``
    plus its wait (``local.readings`` holds a caller's readings), so the test sees every permit's time.
    """

    def __init__(self, tick: float = 0.0005) -> None:
        self.lock = threading.Lock()
        self.now = 0.0
        self.tick = tick
        self.local = threading.local()
        self.sleeps = 0

    def clock(self) -> float:
        with self.lock:
            self.now += self.tick
            self.local.readings.append(self.now)
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps += 1


@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_callers_are_still_spaced(threads: int) -> None:
    time = ThreadedFakeTime()
    rate = 20.0
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep)
    granted: list[float] = []
    granted_lock = threading.Lock()
    start = threading.Barrier(threads)

    def caller() -> None:
        start.wait()
        for _ in range(40):
            time.local.readings = []
            wait = limiter.acquire()
            at = time.local.readings[0] + wait
            with granted_lock:
                granted.append(at)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert len(granted) == threads * 40
    ordered = sorted(granted)
    # A caller reading the clock after its permit counts a tick late: the next second's permit keeps its distance.
    assert min(gaps(ordered)) >= 1 / rate - time.tick - EPS
    assert max_in_one_second(ordered) <= rate
    # Almost everyone waited: the clock barely moved, so the permits were spread into the future.
    assert time.sleeps >= threads * 40 - 1
    assert ordered[-1] - ordered[0] == pytest.approx((threads * 40 - 1) / rate, abs=0.01)


def max_in_one_second(times: list[float]) -> int:
    """The most permits in any half-open one-second window [t, t + 1)."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + 1.0 - EPS) - i for i, t in enumerate(ordered))


@pytest.mark.parametrize("rate", [DEFAULT_WRITE_RATE, QUOTAS["AdminUpdateUserAttributes"]])
def test_chunks_side_by_side_never_pass_the_quota_in_any_second(rate: float) -> None:
    """write_chunk_step gives each of the WRITE_SLOTS concurrent chunks its own limiter at rate / slots.

    Together they must stay within the quota in every second, as the quota is enforced (the
    strict proxy counts a sliding one-second window), not only on average.
    """
    quota = QUOTAS["AdminUpdateUserAttributes"]
    time = FakeTime(0.0)
    share = share_of_rate(rate, WRITE_SLOTS, "AdminUpdateUserAttributes")
    limiters = [RateLimiter(share, clock=time.clock, sleep=lambda s: None) for _ in range(WRITE_SLOTS)]
    granted = [time.now + limiter.acquire() for limiter in limiters for _ in range(30)]
    assert max_in_one_second(granted) <= quota


# -- share_of_rate ----------------------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(QUOTAS))
@pytest.mark.parametrize("slots", [1, 2, 3, 4, 5, 6, 7, 8, 16])
def test_shares_together_never_pass_the_quota(operation: str, slots: int) -> None:
    quota = QUOTAS[operation]
    for rate in (quota, quota - 0.01, quota / 2, 20.0 if quota >= 20 else quota, 0.5, 1.0, 7.3):
        share = share_of_rate(rate, slots, operation)
        assert share * slots <= rate + EPS  # on average, never above the rate asked for
        assert slots * math.ceil(share) <= max(quota, slots)  # in any one second, never above the quota
        if slots * math.ceil(rate / slots) <= quota:
            assert share == pytest.approx(rate / slots)  # no throughput given up when none need be


def test_write_quota_is_25_and_default_rate_within_it() -> None:
    assert QUOTAS["AdminUpdateUserAttributes"] == 25.0
    assert QUOTAS["AdminCreateUser"] == 50.0
    assert DEFAULT_WRITE_RATE == 20.0
    assert share_of_rate(DEFAULT_WRITE_RATE, WRITE_SLOTS, "AdminUpdateUserAttributes") == 5.0


@pytest.mark.parametrize(
    ("operation", "rate"),
    [
        ("AdminUpdateUserAttributes", 26.0),
        ("AdminUpdateUserAttributes", 25.0001),
        ("ListUsers", 31.0),
        ("AdminCreateUser", 51.0),
        ("AdminGetUser", 121.0),
    ],
)
def test_a_rate_above_the_quota_is_refused(operation: str, rate: float) -> None:
    with pytest.raises(ValueError, match=operation):
        share_of_rate(rate, 1, operation)


def test_the_quota_itself_is_allowed() -> None:
    assert share_of_rate(25.0, 1, "AdminUpdateUserAttributes") == 25.0
    assert share_of_rate(50.0, 2, "AdminCreateUser") == 25.0  # creations have a quota of their own


@pytest.mark.parametrize("rate", [0.0, -1.0, -25.0])
def test_zero_or_negative_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        share_of_rate(rate, 4, "AdminUpdateUserAttributes")
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate)


@pytest.mark.parametrize("slots", [0, -1])
def test_zero_slots_is_refused(slots: int) -> None:
    with pytest.raises(ValueError, match="slots"):
        share_of_rate(20.0, slots, "AdminUpdateUserAttributes")


# -- progress ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_progress_line_shows_done_total_rate_and_eta() -> None:
    clock = Clock()
    progress = Progress("prod writes, chunk 1/4", 100, clock=clock)
    for _ in range(25):
        progress.step()
    clock.now = 60.0  # 25 done in 10 s: 2.5/s, 75 left: 30 s
    assert progress.line() == "prod writes, chunk 1/4: 25/100 done, 2.5/s, ETA 30s"
    assert progress.line(70.0) == "prod writes, chunk 1/4: 25/100 done, 1.2/s, ETA 60s"


def test_progress_at_the_end_has_no_time_left() -> None:
    clock = Clock()
    progress = Progress("dev creates", 8, clock=clock)
    for _ in range(8):
        clock.now += 0.5
        progress.step()
    assert progress.line() == "dev creates: 8/8 done, 2.0/s, ETA 0s"


def test_progress_logs_every_interval_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = Progress("w", 30, every=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="identity_sync.backfill"):
        for _ in range(30):
            clock.now += 1.0  # one per second: a line at 10 s, 20 s, and at the end (30 s)
            progress.step()
    lines = [r.getMessage() for r in caplog.records if r.name == "identity_sync.backfill"]
    assert lines == [
        "w: 10/30 done, 1.0/s, ETA 20s",
        "w: 20/30 done, 1.0/s, ETA 10s",
        "w: 30/30 done, 1.0/s, ETA 0s",
    ]


def test_the_list_users_quota_is_defined_once() -> None:
    """config bounds list_users_rps by the quota table here, not by a copy of its own."""
    assert config._LIST_USERS_QUOTA == QUOTAS["ListUsers"] == 30.0
    assert not hasattr(config, "LIST_USERS_QUOTA")

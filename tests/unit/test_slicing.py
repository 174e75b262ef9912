"""Slices of a pool by sub prefix, and the limiter's pace around throttles (arithmetic, not timings)."""

from __future__ import annotations

import gc
import itertools
import uuid

import pytest

from identity_sync import cognito, config
from identity_sync.cognito import sub_prefixes
from identity_sync.ratelimit import RateLimiter, collector_paused


@pytest.mark.parametrize("slices", [1, 16, 256])
def test_prefixes_split_every_sub_into_exactly_one_slice(slices: int) -> None:
    prefixes = sub_prefixes(slices)
    assert len(prefixes) == len(set(prefixes)) == slices
    for _ in range(2000):
        sub = str(uuid.uuid4())
        assert sum(sub.startswith(prefix) for prefix in prefixes) == 1


def test_prefixes_are_lower_case_hex_as_cognito_subs_are() -> None:
    assert sub_prefixes(16) == list("0123456789abcdef")
    assert sub_prefixes(256)[:3] == ["00", "01", "02"] and sub_prefixes(256)[-1] == "ff"
    assert sub_prefixes(1) == [""]


def test_other_slice_counts_are_refused() -> None:
    with pytest.raises(KeyError):
        sub_prefixes(8)


def test_the_slice_counts_are_defined_once_in_config() -> None:
    """The config accepts exactly the counts the hook can slice by: one table serves both."""
    assert cognito.SUB_PREFIX_DIGITS is config.SUB_PREFIX_DIGITS
    for slices, digits in config.SUB_PREFIX_DIGITS.items():
        assert {len(prefix) for prefix in sub_prefixes(slices)} == {digits}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def grant_times(limiter: RateLimiter, clock: Clock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(clock.now)
    return times


def test_a_throttle_spaces_permits_further_apart_then_the_pace_recovers() -> None:
    clock = Clock()
    limiter = RateLimiter(20.0, clock=clock, sleep=clock.sleep)
    grant_times(limiter, clock, 5)
    limiter.slow_down()
    assert limiter.rate == pytest.approx(16.0)
    slowed = grant_times(limiter, clock, 2)
    assert slowed[1] - slowed[0] > 1 / 20.0
    grant_times(limiter, clock, 40)
    assert limiter.rate == pytest.approx(20.0)  # back to the configured rate, never above it


def test_repeated_throttles_never_slow_below_half_the_rate() -> None:
    limiter = RateLimiter(30.0)
    for _ in range(50):
        limiter.slow_down()
    assert limiter.rate == pytest.approx(15.0)


def test_the_pace_never_exceeds_the_configured_rate_even_while_recovering() -> None:
    clock = Clock()
    limiter = RateLimiter(25.0, clock=clock, sleep=clock.sleep)
    limiter.slow_down()
    times = grant_times(limiter, clock, 200)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / 25.0 - 1e-12


def test_the_collector_stays_paused_until_the_last_paced_loop_ends() -> None:
    assert gc.isenabled()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer loop is still pacing
    assert gc.isenabled()

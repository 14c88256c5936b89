"""The one token bucket behind the client, link-frame and reconnection limits."""

from __future__ import annotations

import pytest

from controller.ratelimit import TokenBucket


def test_take_spends_a_burst_then_says_how_long_without_spending():
    bucket = TokenBucket(rate=2.0, burst=3, updated=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.0) == pytest.approx(0.5)  # refusing spent nothing: the wait does not grow
    assert bucket.take(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) == 0.0


def test_refill_never_exceeds_the_burst():
    bucket = TokenBucket(rate=10.0, burst=2, tokens=0.0, updated=0.0)
    assert bucket.take(1000.0) == 0.0 and bucket.take(1000.0) == 0.0
    assert bucket.take(1000.0) == pytest.approx(0.1)


def test_reserve_goes_into_debt_so_each_caller_waits_its_turn():
    bucket = TokenBucket(rate=2.0, burst=2, updated=0.0)
    assert [bucket.reserve(0.0) for _ in range(2)] == [0.0, 0.0]
    assert [bucket.reserve(0.0) for _ in range(3)] == pytest.approx([0.5, 1.0, 1.5])
    assert bucket.reserve(10.0) == 0.0  # the debt is repaid and the bucket full again


def test_full_says_when_forgetting_the_bucket_changes_nothing():
    bucket = TokenBucket(rate=1.0, burst=2, updated=0.0)
    assert bucket.full(0.0)
    bucket.take(0.0)
    assert not bucket.full(0.5)
    assert bucket.full(1.0)


def test_a_bucket_starting_empty_at_time_zero_is_full_on_first_use():
    """The link frame limiter's start: one second's worth as soon as the clock has run a second."""
    bucket = TokenBucket(rate=5.0, burst=5.0, tokens=0.0, updated=0.0)
    assert [bucket.take(50.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(50.0) == pytest.approx(0.2)

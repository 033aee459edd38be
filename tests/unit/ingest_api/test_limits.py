"""Request-rate buckets and the per-client limit on failed authentications."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rwasync.ingest_api.limits import Rate, TokenBucket
from rwasync.platform.auth import FailedAuthentications
from rwasync.platform.http import Problem

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(per_second=2, burst=3), now=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0
    clock.now += 60
    assert [bucket.take() for _ in range(4)][:3] == [0, 0, 0]  # refilled up to the burst only


@given(
    st.floats(0.1, 1000), st.integers(1, 100), st.lists(st.floats(0, 2), min_size=1, max_size=200)
)
def test_a_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(
    per_second: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(per_second, burst), now=clock)
    admitted = 0
    for gap in gaps:
        clock.now += gap
        if bucket.take() == 0:
            admitted += 1
    assert admitted <= burst + per_second * sum(gaps) + 1e-6


def test_failures_over_the_limit_are_refused_with_retry_after() -> None:
    failures = FailedAuthentications(per_minute=2)
    failures.check("10.0.0.1")
    failures.record("10.0.0.1")
    failures.record("10.0.0.1")
    with pytest.raises(Problem) as refused:
        failures.check("10.0.0.1")
    assert refused.value.status == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    failures.check("10.0.0.2")  # another client is not affected

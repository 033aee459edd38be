"""`observe_each` leaves a histogram exactly as observing each amount would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import Histogram

from rwasync.platform.metrics import LAG_BUCKETS, observe_each

pytestmark = pytest.mark.unit

amounts = st.floats(allow_nan=False)  # bounds, infinities, negatives and -0.0 included
bound = st.sampled_from([*LAG_BUCKETS, float("inf")])


def _histogram() -> Histogram:
    return Histogram("lag_seconds", "lag", ["queue"], buckets=LAG_BUCKETS, registry=None)


def _samples(histogram: Histogram) -> list[tuple[str, dict[str, str], str]]:
    """Buckets, count and sum (not the child's creation time); values as `repr`, so that a sum
    made NaN (inf + -inf) compares equal to itself and 0.0 differs from -0.0."""
    return [
        (s.name, s.labels, repr(s.value))
        for m in histogram.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    ]


@given(st.lists(st.lists(amounts | bound, max_size=40), max_size=4))
def test_observe_each_equals_observe_per_amount(batches: list[list[float]]) -> None:
    one_by_one, batched = _histogram(), _histogram()
    for batch in batches:
        for amount in batch:
            one_by_one.labels("q").observe(amount)
        observe_each(batched.labels("q"), batch)
    for histogram in (one_by_one, batched):
        histogram.labels("q")  # the child exists on both, whatever was observed
    assert _samples(batched) == _samples(one_by_one)


@given(st.lists(st.lists(amounts | bound, max_size=40), max_size=4))
def test_observe_each_equals_observe_per_amount_without_labels(batches: list[list[float]]) -> None:
    """An unlabelled histogram (pricing's price lag) is its own child."""
    one_by_one = Histogram("lag_seconds", "lag", buckets=LAG_BUCKETS, registry=None)
    batched = Histogram("lag_seconds", "lag", buckets=LAG_BUCKETS, registry=None)
    for batch in batches:
        for amount in batch:
            one_by_one.observe(amount)
        observe_each(batched, batch)
    assert _samples(batched) == _samples(one_by_one)

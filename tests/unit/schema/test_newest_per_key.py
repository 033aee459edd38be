"""The batch reduction reconciler and pricing share: newest per key, repeats counted once."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rwasync.schema.versions import newest_per_key

pytestmark = pytest.mark.unit

Item = tuple[str, int, int]  # (key, order, identity)


def reduce(items: list[Item]) -> tuple[list[Item], list[Item]]:
    return newest_per_key(items, key=lambda i: i[0], order=lambda i: i[1], identity=lambda i: i[2])


def test_keeps_the_newest_of_each_key_and_lists_the_rest() -> None:
    kept, superseded = reduce([("a", 1, 1), ("b", 5, 2), ("a", 3, 3), ("a", 2, 4)])
    assert kept == [("a", 3, 3), ("b", 5, 2)]
    assert sorted(superseded) == [("a", 1, 1), ("a", 2, 4)]


def test_a_repeated_identity_counts_once() -> None:
    kept, superseded = reduce([("a", 1, 7), ("a", 1, 7), ("a", 1, 7)])
    assert kept == [("a", 1, 7)] and superseded == []


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50)), max_size=30))
def test_any_order_keeps_the_same_items(pairs: list[tuple[str, int]]) -> None:
    items = [(key, order, identity) for identity, (key, order) in enumerate(pairs)]
    shuffled = items[:]
    random.Random(len(items)).shuffle(shuffled)
    # Unique orders per key make "newest" unambiguous whatever the delivery order.
    items = [(k, o * 100 + i, i) for k, o, i in items]
    shuffled = [(k, o * 100 + i, i) for k, o, i in shuffled]
    kept, superseded = reduce(items)
    kept_shuffled, superseded_shuffled = reduce(shuffled)
    assert sorted(kept) == sorted(kept_shuffled)
    assert sorted(kept + superseded) == sorted(items)
    assert sorted(superseded) == sorted(superseded_shuffled)

"""ingest-api's validation of what providers send (the same for writes and `/v1/validate/*`): on
any input, a value or AssetInvalid naming each problem, never another exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.ingest_api.documents import (
    asset_at_path,
    asset_batch,
    check_assets,
    check_prices,
    deletion,
    price_batch,
)
from rwasync.schema.errors import AssetInvalid
from tests.unit.schema.documents import NOW, detroit_house
from tests.unit.schema.test_properties import documents

pytestmark = pytest.mark.unit

path_ids = st.one_of(st.just("a1"), st.text(max_size=140))
SETTINGS = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def refused_or(make: Any) -> Any:
    try:
        return make()
    except AssetInvalid as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return None


@SETTINGS
@given(documents, path_ids)
def test_an_asset_at_a_path(body: Any, path_id: str) -> None:
    asset = refused_or(lambda: asset_at_path(body, path_id, NOW))
    assert asset is None or asset.id == path_id


@SETTINGS
@given(st.one_of(st.none(), documents), path_ids)
def test_a_deletion(body: Any, path_id: str) -> None:
    request = refused_or(lambda: deletion(body, path_id, NOW))
    assert request is None or request.deleted_at.tzinfo is not None


@SETTINGS
@given(st.lists(documents, max_size=5))
def test_batch_items_are_each_checked_in_order(items: list[Any]) -> None:
    for checked in (check_assets(items, NOW), check_prices(items, NOW)):
        assert [c.index for c in checked] == list(range(len(items)))
        assert all((c.value is None) != (c.errors is None) for c in checked)


@SETTINGS
@given(documents)
def test_batch_envelopes(body: Any) -> None:
    refused_or(lambda: asset_batch(body))
    refused_or(lambda: price_batch(body))


def test_one_bad_item_never_blocks_the_good_ones() -> None:
    good = detroit_house()
    checked = check_assets([good, {"id": "x"}, good], NOW)
    assert [c.errors is None for c in checked] == [True, False, True]
    assert checked[1].id == "x"

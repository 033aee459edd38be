"""ingest-api's validation of what providers send (the same for writes and `/v1/validate/*`): on
any input, a value or AssetInvalid naming each problem, never another exception."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.ingest_api.documents import (
    asset_at_path,
    asset_batch,
    body_asset,
    check_assets,
    check_prices,
    checked_batch,
    checked_prices,
    deletion,
    item_id,
    price_batch,
    price_item,
    too_large,
)
from rwasync.ingest_api.models import MAX_ASSET_BATCH, MAX_PRICE_BATCH
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.jsonsafe import MAX_NAMED_ITEMS, MalformedJSON, loads
from tests.unit.schema.documents import NOW, detroit_house
from tests.unit.schema.test_properties import documents, mutated_houses

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


def test_a_crowded_body_at_a_path_is_refused_by_the_keys_it_has() -> None:
    # The id taken from the path was counted among them: 250 keys sent, "has 251 keys".
    crowded = {f"k{n}": n for n in range(250)}
    with pytest.raises(AssetInvalid) as refused:
        asset_at_path(crowded, "k-1", NOW)
    assert [(e.pointer, e.message) for e in refused.value.errors] == [
        ("", "has 250 keys: far too many")
    ]


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


ticks = st.fixed_dictionaries(
    {
        "asset_id": st.one_of(st.text("ab1", min_size=1, max_size=3), st.text(max_size=3)),
        "amount": st.one_of(
            st.decimals(min_value=Decimal("0.01"), max_value=10**6, places=2).map(str),
            st.decimals(allow_nan=True),
            st.text(max_size=4),
            st.none(),
        ),
        "currency": st.sampled_from(["USD", "usd", "XXQ", 5]),
        "as_of": st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01", "2999-01-01T00:00:00Z"]),
    },
    optional={"extra": st.integers()},
)


@SETTINGS
@given(st.lists(st.one_of(ticks, documents), max_size=8))
def test_ticks_validated_together_are_judged_as_each_alone(items: list[Any]) -> None:
    """The bulk validation of a price batch answers for every tick exactly what validating it
    alone answers: the same value, or the same errors with the same pointers."""
    alone = []
    for item in items:
        try:
            alone.append((price_item(item, NOW), None))
        except AssetInvalid as exc:
            alone.append((None, exc.errors))
    checked = check_prices(items, NOW)
    assert [(c.value, c.errors) for c in checked] == alone
    assert [c.id for c in checked] == [item_id(item, "asset_id") for item in items]


def test_ticks_validated_together_keep_their_own_values() -> None:
    ticks = [
        {
            "asset_id": f"a{i}",
            "amount": f"{i}.5",
            "currency": "usd",
            "as_of": f"2024-05-0{i}T12:00:00Z",
        }
        for i in range(1, 6)
    ]
    checked = check_prices([ticks[0], {"asset_id": 1}, *ticks[1:]], NOW)
    assert [c.value for c in checked if c.errors is None] == [price_item(t, NOW) for t in ticks]
    assert [str(c.value.amount) for c in checked if c.value] == ["1.5", "2.5", "3.5", "4.5", "5.5"]


def test_a_crowded_tick_is_refused_alone_as_it_always_was() -> None:
    good = {"asset_id": "a1", "amount": "1", "currency": "USD", "as_of": "2024-05-01T12:00:00Z"}
    crowded = {**good, **{f"k{i}": i for i in range(300)}}
    nested = {**good, "amount": {f"k{i}": i for i in range(300)}}
    checked = check_prices([good, crowded, nested, "tick", good], NOW)
    assert [c.errors is None for c in checked] == [True, False, False, False, True]
    assert [e.as_dict() for e in checked[1].errors or []] == [
        {"pointer": "", "message": "has 304 keys: far too many"}
    ]
    assert [e.pointer for e in checked[2].errors or []] == ["/amount"]


# --- bodies read by the fast path answer as the full one --------------------------------------


def answered(read: Any) -> Any:
    """All a caller sees of reading a body: the 400's detail, the 422's errors, or the values."""
    try:
        value = read()
    except MalformedJSON as exc:
        return ("malformed", exc.detail)
    except AssetInvalid as exc:
        return ("invalid", [e.as_dict() for e in exc.errors])
    if isinstance(value, list):  # a batch's items
        return [
            (c.index, c.id, c.errors and [e.as_dict() for e in c.errors], valid(c.value))
            for c in value
        ]
    return valid(value)


def valid(asset: Any) -> Any:
    if asset is None:
        return None
    return (asset.id, asset.updated_at, asset.price, asset.document, asset.canonical)


def body_of(document: Any) -> bytes:
    # default=str: Decimal, bytes and datetimes as text; NaN and lone surrogates as JSON writes them
    return json.dumps(document, default=str).encode()


def assert_batch_alike(body: bytes) -> None:
    full = answered(lambda: check_assets(asset_batch(loads(body)), NOW))
    assert answered(lambda: checked_batch(body, lambda: loads(body), NOW)) == full


bodies_of_items = st.lists(st.one_of(mutated_houses(), documents), max_size=4)


@SETTINGS
@given(bodies_of_items)
def test_a_batch_reads_alike_by_the_fast_path_and_the_full_one(items: list[Any]) -> None:
    assert_batch_alike(body_of({"assets": items}))
    assert_batch_alike(body_of({"assets": [detroit_house() for _ in items]}))


@SETTINGS
@given(documents)
def test_any_batch_body_reads_alike(body: Any) -> None:
    assert_batch_alike(body_of(body))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"assets": []}',
        b'{"assets": [{"id": "a"}], "assets": []}',
        b'{"assets": [], "assets": [' + body_of(detroit_house()) + b"]}",
        b'{"assets": [' + body_of(detroit_house()) + b'], "extra": 1}',
        b'{"assets": [' + body_of(detroit_house()).replace(b'"Detroit"', b'"\\ud800"') + b"]}",
        b'{"assets": [' + body_of(detroit_house()).replace(b'"Detroit"', b'"\xff"') + b"]}",
        b'{"assets": [' + body_of({**detroit_house(), "attributes": {"n": 10**120}}) + b"]}",
        b'{"assets": [' + b"[" * 40 + b"]" * 40 + b"]}",
        b'{"assets": [' + b",".join([body_of(detroit_house())] * 5001) + b"]}",
    ],
)
def test_odd_batch_bodies_read_alike(body: bytes) -> None:
    assert_batch_alike(body)


@SETTINGS
@given(st.one_of(mutated_houses(), documents), path_ids)
def test_a_single_asset_reads_alike_by_the_fast_path_and_the_full_one(
    document: Any, path_id: str
) -> None:
    body = body_of(document)
    assert answered(lambda: body_asset(body, lambda: loads(body), NOW, path_id)) == answered(
        lambda: asset_at_path(loads(body), path_id, NOW)
    )
    house = body_of(detroit_house())
    assert answered(lambda: body_asset(house, lambda: loads(house), NOW)) == answered(
        lambda: asset_at_path(loads(house), detroit_house()["id"], NOW)
    )


def test_valid_documents_of_the_common_shape_skip_the_full_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unused() -> Any:
        raise AssertionError("the full path ran")

    houses = [detroit_house(), {**detroit_house(), "id": "det-2"}]
    body = body_of({"assets": houses})
    assert [c.id for c in checked_batch(body, unused, NOW)] == [houses[0]["id"], "det-2"]
    assert body_asset(body_of(houses[1]), unused, NOW, "det-2").id == "det-2"
    with pytest.raises(AssertionError):  # a mismatched id: the full path words the error
        body_asset(body_of(houses[1]), unused, NOW, "det-1")


# --- items larger than a push of one may be -------------------------------------------------------


def test_a_batch_item_over_the_limit_is_rejected_alone() -> None:
    houses = [detroit_house(), {**detroit_house(), "id": "big", "description": "x" * 3000}]
    houses.append({**detroit_house(), "id": "det-3"})
    body = body_of({"assets": houses})
    size = len(body_of(houses[1]))
    # Valid documents of the common shape all: the fast path takes them, the limit aside.
    assert all(c.errors is None for c in checked_batch(body, unused, NOW, max_item_bytes=size))
    # Over it, the item is rejected for its size alone, and the others are taken.
    checked = checked_batch(body, lambda: loads(body), NOW, max_item_bytes=size - 1)
    assert [(c.id, c.errors is None) for c in checked] == [
        (houses[0]["id"], True),
        ("big", False),
        ("det-3", True),
    ]
    assert [e.as_dict() for e in checked[1].errors or []] == [
        {
            "pointer": "",
            "message": f"the item is {size} bytes, over the limit of {size - 1} bytes for one "
            "asset (RWASYNC_INGEST_MAX_BODY_BYTES)",
        }
    ]
    # Sizes are the items' bytes as sent: spacing inside an item counts.
    spaced = body.replace(b'"big",', b'"big",' + b" " * 5000)
    assert checked_batch(spaced, lambda: loads(spaced), NOW, max_item_bytes=size)[1].errors


def unused() -> Any:
    raise AssertionError("the full path ran")


def test_a_price_tick_over_the_limit_is_rejected_alone() -> None:
    tick = {"asset_id": "a1", "amount": "52.10", "currency": "USD", "as_of": "2025-05-30T09:15:00Z"}
    fat = {**tick, "asset_id": "a2", "note": "n" * 3000}
    body = body_of({"prices": [tick, fat, {**tick, "asset_id": 7}, tick]})
    checked = checked_prices(body, lambda: loads(body), NOW, max_item_bytes=2048)
    assert [(c.index, c.id, c.errors is None) for c in checked] == [
        (0, "a1", True),
        (1, "a2", False),
        (2, None, False),
        (3, "a1", True),
    ]
    assert checked[1].errors is not None
    assert checked[1].errors[0].message.endswith("for one price (RWASYNC_INGEST_MAX_BODY_BYTES)")
    assert checked[2].errors is not None and checked[2].errors[0].pointer == "/asset_id"


def test_item_sizes_survive_text_msgspec_does_not_frame() -> None:
    """A byte order mark (which `loads` skips): the items measured as written again."""
    items = [{"id": "a", "description": "x" * 3000}, {"id": "b"}]
    body = b"\xef\xbb\xbf" + body_of({"assets": items})
    refused = too_large(body, "assets", items, 2048, "asset")
    assert list(refused) == [0]


def test_a_400_can_name_any_item_of_a_batch() -> None:
    """jsonsafe names an item at fault among the first MAX_NAMED_ITEMS only."""
    assert max(MAX_ASSET_BATCH, MAX_PRICE_BATCH) <= MAX_NAMED_ITEMS

"""`content_hash`: documents that mean the same thing hash the same, any real change does not."""

from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from rwasync.schema.asset import (
    canonical_json,
    content_hash,
    content_hash_hex,
    normalized_document,
    parse_asset,
)
from rwasync.schema.jsonsafe import loads

from .documents import DETROIT_HOUSE_JSON, NOW, changed, detroit_house

pytestmark = pytest.mark.unit


def hash_of(document: Any) -> str:
    return content_hash_hex(normalized_document(parse_asset(document, now=NOW)))


BASE = hash_of(detroit_house())


@pytest.mark.parametrize(
    ("pointer", "values"),
    [
        ("/price/amount", [54.2, 54.20, "54.2", "54.200", "5.42E+1"]),
        ("/area/value", [1152, "1152.0", 1152.00, "1.152e3"]),
        ("/valuation/amount", ["108400.00", 108400, "1084E2"]),
        ("/updated_at", ["2025-05-30T13:15:00Z", "2025-05-30T13:15:00.000+00:00"]),
        ("/updated_at", ["2025-05-30T15:15:00+02:00", "2025-05-30t13:15:00.000000z"]),
        ("/token/contract_address", ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]),
        ("/token/contract_address", ["0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"]),
        ("/token/chain", ["xdai"]),
        ("/token/total_supply", ["10000000000000000000000", 10**22]),
        ("/attributes/bedrooms", [3.0, Decimal("3.00"), Decimal("3E0")]),
        ("/attributes/hoa_fee", [None]),
        ("/price/currency", ["usd"]),
    ],
)
def test_equivalent_spellings_hash_the_same(pointer: str, values: list[Any]) -> None:
    for value in values:
        assert hash_of(changed(detroit_house(), pointer, value)) == BASE, value


def test_null_and_absent_are_the_same() -> None:
    with_nulls = detroit_house() | {"description": None}
    with_nulls["legal"]["status"] = None
    without = detroit_house()
    del without["description"]
    del without["legal"]["status"]

    assert hash_of(with_nulls) == hash_of(without)


def test_key_order_is_irrelevant() -> None:
    document = detroit_house()
    reversed_keys = {key: document[key] for key in reversed(document)}
    reversed_keys["token"] = dict(reversed(list(document["token"].items())))

    assert hash_of(reversed_keys) == BASE


def test_meta_is_not_hashed() -> None:
    assert hash_of(detroit_house() | {"_meta": {"content_hash": "00"}}) == BASE


@pytest.mark.parametrize(
    ("pointer", "value"),
    [
        ("/updated_at", "2025-05-30T13:15:00.000001Z"),
        ("/price/amount", "54.21"),
        ("/name", "2417 Van Dyke St, Detroit"),
        ("/attributes/bedrooms", "3"),  # a string is not a number
        ("/attributes/section_8", 1),  # nor is a number a boolean
        ("/id", "det-48214:2417-van-dyke.a"),  # ids are case-sensitive
    ],
)
def test_real_changes_change_the_hash(pointer: str, value: Any) -> None:
    assert hash_of(changed(detroit_house(), pointer, value)) != BASE


def test_hash_is_sha256_of_the_canonical_json() -> None:
    document = normalized_document(parse_asset(loads(DETROIT_HOUSE_JSON), now=NOW))

    digest = content_hash(document)

    assert len(digest) == 32
    assert digest.hex() == content_hash_hex(document)
    assert content_hash({"b": "1", "a": [True, 2]}).hex() == (
        # sha256(b'{"a":[true,2],"b":"1"}')
        "286eb36a678d8e16c187e4910490cb6786776a17202b75f3a869fda47c47541d"
    )


# Strings over all of Unicode (astral and private-use characters included, where the key order of
# RFC 8785 by UTF-16 code unit differs from order by code point).
unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | unicode_text
    | st.sampled_from(["\ue000", "\U0001f600", "\uffff", "\x7f", "\u2028", "</script>"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            unicode_text | st.sampled_from(["\ue000", "\U0001f600", "\uffff", "a", "\x00"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150)
@given(st.dictionaries(unicode_text, plain_json, max_size=6))
def test_canonical_json_is_rfc8785(document: dict[str, Any]) -> None:
    assert canonical_json(document) == rfc8785.dumps(document)


def test_canonical_json_orders_keys_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+E000 although its code point is higher.
    document = {"\ue000": 1, "\U0001f600": 2, "a": 3}

    assert canonical_json(document) == '{"a":3,"\U0001f600":2,"\ue000":1}'.encode()

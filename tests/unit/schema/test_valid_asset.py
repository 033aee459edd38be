"""The fast path for the common shape answers exactly as the models do, or not at all: whenever
it accepts a document, its normalised document (key order and types included), canonical bytes,
content hash, id, version and price are those of `parse_asset` and `normalized_canonical`; every
document the models refuse, it declines (so errors come from the models, pointers and messages
unchanged)."""

import copy
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from benchmarks.feed.catalogue import asset as generated_asset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from demo.catalogue import generate_catalogue
from rwasync.schema import jsonsafe, valid_asset
from rwasync.schema.asset import content_hash, parse_asset
from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.fields import as_decimal
from rwasync.schema.valid_asset import common_shape, common_shape_json, from_model, validate_asset

from .documents import DETROIT_HOUSE_JSON, NOW, detroit_house, minimal
from .test_properties import documents, json_ish, mutated_houses
from .test_validation_equivalence import FIELD_VALUES, retyped_fields

pytestmark = pytest.mark.unit

EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fast_answers_alike(document: Any, now: datetime = NOW) -> bool:
    """Whether the fast path took the document; asserts it answered as the models."""
    fast = common_shape(copy.deepcopy(document), now=now)
    try:
        slow = from_model(parse_asset(copy.deepcopy(document), now=now))
    except AssetInvalid as exc:
        assert fast is None, f"accepted what the models refuse: {exc}"
        with pytest.raises(AssetInvalid) as again:
            validate_asset(copy.deepcopy(document), now=now)
        assert again.value.errors == exc.errors
        return False
    assert validate_asset(copy.deepcopy(document), now=now) == (fast or slow)
    if fast is None:
        return False
    assert orjson.dumps(fast.document) == orjson.dumps(slow.document)  # order and types too
    assert fast.canonical == slow.canonical
    assert content_hash(fast.document) == content_hash(slow.document)
    assert (fast.id, fast.updated_at) == (slow.id, slow.updated_at)
    assert repr(fast.price) == repr(slow.price)  # Decimal("54.20"), not merely equal to 54.2
    return True


def as_csv_cells(node: Any) -> Any:
    """The document as a CSV row reaches the schema: every leaf text (`items.csv_document`)."""
    if isinstance(node, dict):
        return {key: as_csv_cells(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [as_csv_cells(value) for value in node]
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def test_the_common_catalogues_take_the_fast_path() -> None:
    catalogue = [
        *generate_catalogue(NOW, size=200),
        *(generated_asset(n, base=NOW - timedelta(days=1)) for n in range(200)),
        detroit_house(),
        minimal(),
    ]
    for document in catalogue:
        assert fast_answers_alike(document)
        assert fast_answers_alike(jsonsafe.loads(jsonsafe.dumps(document)))


def test_documents_as_csv_text_answer_alike() -> None:
    for document in [*generate_catalogue(NOW, size=50), detroit_house(), minimal()]:
        fast_answers_alike(as_csv_cells(jsonsafe.loads(jsonsafe.dumps(document))))


@EXAMPLES
@given(documents)
def test_arbitrary_input_answers_alike(document: Any) -> None:
    fast_answers_alike(document)


@EXAMPLES
@given(mutated_houses())
def test_mutated_documents_answer_alike(document: dict[str, Any]) -> None:
    fast_answers_alike(document)


@EXAMPLES
@given(retyped_fields())
def test_documents_with_retyped_fields_answer_alike(document: dict[str, Any]) -> None:
    fast_answers_alike(document)


def _leaves(document: dict[str, Any]) -> list[tuple[Any, Any]]:
    leaves: list[tuple[Any, Any]] = []
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        for key in list(node) if isinstance(node, dict) else range(len(node)):
            if isinstance(node[key], dict | list):
                stack.append(node[key])
            leaves.append((node, key))
    return leaves


# Values that keep many fields valid in another form: numbers as text, ints or exponents,
# addresses in other cases, other offsets, text at its bounds, nulls and empty containers.
VALID_ISH = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "xdai",
            "ethereum",
            "usd",
            "us",
            "2025-05-30T09:15:00.1234567+05:30",
            "2025-06-01 12:04:59z",
            "1E+2",
            "0.000",
            "-0",
            ".5",
            "5.",
            "1e-3",
            "10000000000000000000000000000",
            "9007199254740993",
            [],
            {},
            "",
            "x" * 2000,
            "x" * 2001,
            "é",
            "\x00",
            "https://cdn.example.com/a b",
            "HTTPS://cdn.example.com:8443/x?y#z",
        ]
    ),
    st.decimals(min_value=-200, max_value=200, places=3),
    st.integers(-5, 2100),
    st.integers(2**53 - 2, 2**53 + 2),
    st.booleans(),
    FIELD_VALUES,
)


@st.composite
def valid_ish_houses(draw: st.DrawFn) -> dict[str, Any]:
    """The rich document with a few leaves replaced by values near the rules' edges, or removed."""
    document = jsonsafe.loads(jsonsafe.dumps(detroit_house()))
    for _ in range(draw(st.integers(1, 4))):
        node, key = draw(st.sampled_from(_leaves(document)))
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(VALID_ISH)
    return document


@EXAMPLES
@given(valid_ish_houses())
def test_documents_near_the_edges_answer_alike(document: dict[str, Any]) -> None:
    fast_answers_alike(document)


@EXAMPLES
@given(st.dictionaries(st.text(max_size=5), json_ish, max_size=4))
def test_arbitrary_attributes_answer_alike(attributes: dict[str, Any]) -> None:
    fast_answers_alike({**detroit_house(), "attributes": attributes})


def test_text_beyond_ascii_and_late_keys_answer_alike() -> None:
    for key, text in (
        ("é", "Café"),
        ("\ue000", "x"),
        ("\U0001f3e0", "\U0001f3e0"),
        ("a", "\ud800"),
    ):
        document = detroit_house()
        document["attributes"][key] = text
        document["attributes"]["\U0001f3e0" if key == "\ue000" else "z"] = 1
        document["description"] = text
        fast_answers_alike(document)


def test_the_clock_bounds_answer_alike() -> None:
    for now in (NOW, NOW - timedelta(days=400), datetime(2030, 1, 1, tzinfo=UTC)):
        for document in (detroit_house(), {**detroit_house(), "year_built": 2030 + 1 + 5}):
            fast_answers_alike(document, now)


def test_what_the_fast_path_declines_goes_to_the_models() -> None:
    """A few documents it must leave alone, each for its own reason."""
    house = detroit_house()
    for document in (
        {**house, "_meta": {"version": 1}},  # dropped by the models: not the common shape
        {**house, "name": ""},
        {**house, "rental": {**house["rental"], "currency": None}},
        {**house, "rental": {**house["rental"], "units_rented": 2}},
        {**house, "token": {**house["token"], "chain": "Ethereum"}},
        {**house, "price": {**house["price"], "amount": Decimal("0")}},
        {**house, "year_built": 2050},
        {**house, "updated_at": "2025-06-01T12:06:00Z"},
    ):
        assert common_shape(copy.deepcopy(document), now=NOW) is None
        fast_answers_alike(document)


def test_a_shuffled_document_normalises_in_the_models_order() -> None:
    document = detroit_house()
    items = list(document.items())
    random.Random(7).shuffle(items)
    assert fast_answers_alike(dict(items))


# Each rule's edges: bounds and one past them, numbers in every form, codes in any case (and
# `ſ`, which Python upper-cases to `S`), addresses in each case, offsets, text at its limits.
EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 18, 36, 37, 90, -90, 91, -91, 180, -180, 181, -181,
    1599, 1600, 2031, 2032, 10**30, 10**30 + 1, 2**53 - 1, 2**53, 2**53 + 1,
    Decimal("0"), Decimal("-0"), Decimal("0.0001"), Decimal("1"), Decimal("1.0"), Decimal("1.0001"),
    Decimal("90.000"), Decimal("90.0000001"), Decimal("-180.0"), Decimal("1E+2"), Decimal("5E-7"),
    Decimal("12.5"), Decimal("1E+30"), Decimal("1E+31"), Decimal("Infinity"), Decimal("NaN"),
    Decimal("1" * 100), Decimal("1" * 101), 0.5, 1e300, float("nan"),
    "0", "-0", "1", "1.0", "0.5", ".5", "5.", "+5", "1e2", "1E-3", "90.00", "-90", "91", "18",
    "1600", "10000000000000000000000000000000", " 5", "5 ", "1_000", "0x10", "", "x", "\x00",
    "é", "ſ", "x" * 64, "x" * 65, "x" * 100, "x" * 101, "x" * 300, "x" * 301, "x" * 2000,
    "x" * 2001, "x" * 20_000, "x" * 20_001, "a\tb", "a\nb", "\u2028",
    "USD", "usd", "uSd", "uſd", "EUR", "XXX", "US", "us", "DE", "ZZ",
    "ethereum", "gnosis", "xdai", "solana", "algorand", "stellar", "Ethereum", "bitcoin",
    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea", "So11111111111111111111111111111111111111112",
    "2025-05-30T09:15:00Z", "2025-06-01T12:05:00Z", "2025-06-01T12:05:00.000001Z",
    "2025-06-01T13:04:00+01:00", "2025-05-30t09:15:00.1234567-04:00", "2025-05-30 09:15:00z",
    "2025-05-30T09:15:00", "2025-02-30T00:00:00Z", "0999-12-31T23:59:59Z", "1000-01-01T00:00:00Z",
    "2025-05-30T09:15:00.123456Z", "2025-05-30T09:15:00.123456z", "2025-05-30t09:15:00.123456Z",
    "2025-05-30 09:15:00.123456Z", "\u0662025-05-30T09:15:00.123456Z",  # an Arabic-Indic 2
    "2025-05-30T09:15:60.123456Z",
    "https://a.example", "https://a.example/ x", "http://a.example/x", "HTTPS://A.EXAMPLE:8443/",
    "https://[::1]/x", "https://user@a.example/", "https:///x", "https://a_b.example/",
    "active", "sold", "Active", "image", "video", "sqft", "m2", "condo", "land",
    [], {}, [1], {"a": 1},
]  # fmt: skip


def test_every_leaf_at_every_edge_answers_alike() -> None:
    house = jsonsafe.loads(jsonsafe.dumps(detroit_house()))
    for position in range(len(_leaves(house))):
        for value in [*EDGES, "delete"]:
            document = copy.deepcopy(house)
            node, key = _leaves(document)[position]
            if value == "delete":
                if isinstance(node, dict):
                    del node[key]
            else:
                node[key] = value
            fast_answers_alike(document)


# --- from JSON text -------------------------------------------------------------------------------


def json_answers_alike(text: str | bytes, now: datetime = NOW) -> bool:
    """Whether `common_shape_json` took the text; asserts it answered as `loads` and then
    `common_shape` (itself held to the models above) would."""
    fast = common_shape_json(text, now=now)
    if fast is None:
        return False
    document = jsonsafe.loads(text)  # raises if the fast path read what `loads` refuses
    assert fast == common_shape(document, now=now)
    assert fast_answers_alike(document, now)
    return True


def test_the_common_catalogues_take_the_fast_path_from_text() -> None:
    for document in [*generate_catalogue(NOW, size=100), detroit_house(), minimal()]:
        text = jsonsafe.dumps(document)
        assert json_answers_alike(text)
        assert json_answers_alike(text.decode())
    assert json_answers_alike(DETROIT_HOUSE_JSON)


def _with_attribute(literal: str) -> str:
    return DETROIT_HOUSE_JSON.replace('"bedrooms": 3', f'"bedrooms": {literal}')


def test_text_loads_refuses_or_reads_otherwise_is_declined() -> None:
    for text in (
        _with_attribute("1." + "0" * 100),  # loads: more than 100 digits
        _with_attribute("1" * 101),
        _with_attribute("1" * 100),
        _with_attribute("NaN"),
        _with_attribute("01"),
        _with_attribute('"\\ud800"'),  # a lone surrogate, escaped
        _with_attribute('"\\udc00x"'),
        _with_attribute("[" * 40 + "]" * 40),  # deeper than loads allows
        _with_attribute('"a\tb"'),  # a raw control character
        _with_attribute('1, "bedrooms": 4'),  # a repeated key: the last one counts
        "\ufeff" + DETROIT_HOUSE_JSON,
        DETROIT_HOUSE_JSON + "x",
        DETROIT_HOUSE_JSON.encode()[:-3] + b"\xff}",
        DETROIT_HOUSE_JSON.replace("Van Dyke", "Van \ud800Dyke"),
    ):
        json_answers_alike(text)
        if isinstance(text, str):
            json_answers_alike(text.encode("utf-8", "surrogatepass"))


@EXAMPLES
@given(st.text(alphabet='0123456789.eE+-[]{}",: naNIfity\\ud83', max_size=300))
def test_odd_text_answers_alike(text: str) -> None:
    json_answers_alike(text)
    json_answers_alike(_with_attribute(text))


@EXAMPLES
@given(st.one_of(valid_ish_houses(), retyped_fields(), mutated_houses()))
def test_documents_as_text_answer_alike(document: dict[str, Any]) -> None:
    try:
        text = jsonsafe.dumps(document)
    except (TypeError, ValueError):  # not representable as JSON
        return
    json_answers_alike(text)
    json_answers_alike(text.decode(errors="surrogatepass"))


@EXAMPLES
@given(
    st.one_of(
        st.from_regex(r"-?[0-9]{1,45}(?:\.[0-9]{0,45})?", fullmatch=True),
        st.from_regex(r"-?0\.0{0,12}[0-9]{0,3}0{0,5}", fullmatch=True),
    )
)
def test_plain_decimal_text_normalises_as_the_rule_does(text: str) -> None:
    try:
        number = as_decimal(text)
    except PydanticCustomError:
        return
    fast_number, fast_text = valid_asset._decimal(text, -(10**50))
    assert (repr(fast_number), fast_text) == (repr(number), normalize_decimal(number))

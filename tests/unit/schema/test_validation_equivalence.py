"""The cheaper validation answers exactly as the code before it (kept in `reference/`): the same
verdict, the same errors (pointer and message), the same normalised document, canonical bytes and
content hash, for realistic catalogues, arbitrary input and documents mutated in every field."""

import copy
import json
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from demo.catalogue import generate_catalogue
from rwasync.schema import asset as current
from rwasync.schema import chains, decimals, fields, jsonsafe
from rwasync.schema.errors import AssetInvalid
from tests.unit.schema.reference import asset as reference
from tests.unit.schema.reference import chains as reference_chains
from tests.unit.schema.reference import decimals as reference_decimals
from tests.unit.schema.reference import fields as reference_fields
from tests.unit.schema.reference import jsonsafe as reference_jsonsafe

from .documents import NOW, detroit_house, minimal
from .test_properties import documents, json_ish, mutated_houses

pytestmark = pytest.mark.unit

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(module: Any, document: Any, now: datetime = NOW) -> tuple[Any, ...]:
    """Everything a caller can observe of validating `document` with one implementation."""
    try:
        asset = module.parse_asset(copy.deepcopy(document), now=now)
    except AssetInvalid as exc:
        return ("invalid", [(e.pointer, e.message) for e in exc.errors], str(exc))
    normalized = module.normalized_document(asset)
    canonical = module.canonical_json(normalized)
    # The per-item path's shortcut gives the same pair (the reference has no shortcut).
    shortcut = getattr(module, "normalized_canonical", lambda _: (normalized, canonical))
    return (
        "valid",
        normalized,
        canonical,
        shortcut(asset),
        module.content_hash(normalized),
        repr(asset.model_dump()),
        asset.id,
        asset.updated_at,
    )


def assert_same(document: Any, now: datetime = NOW) -> None:
    assert outcome(current, document, now) == outcome(reference, document, now)


# Where a refusal is, the reference said in the words of its reasons, if at all; `jsonsafe` says
# it apart (`MalformedJSON.line`, `.column`, tested in test_jsonsafe): the reasons are compared.
_PLACE = re.compile(r" at line \d+ column \d+$| at (?:byte|character) \d+(?=\)$)")


def loaded(text: str | bytes, module: Any) -> tuple[str, Any]:
    try:
        return ("ok", repr(module.loads(text)))
    except module.MalformedJSON as exc:
        return ("malformed", _PLACE.sub("", getattr(exc, "reason", exc.detail)))


# --- whole documents ----------------------------------------------------------------------------


def test_the_demo_catalogue_and_its_edges_answer_alike() -> None:
    catalogue = generate_catalogue(NOW, size=60)
    for document in [*catalogue, detroit_house(), minimal()]:
        assert_same(document)
        assert_same(jsonsafe.loads(jsonsafe.dumps(document)))


@EXAMPLES
@given(documents)
def test_arbitrary_input_answers_alike(document: Any) -> None:
    assert_same(document)


@EXAMPLES
@given(mutated_houses())
def test_mutated_documents_answer_alike(document: dict[str, Any]) -> None:
    assert_same(document)


FIELD_VALUES = st.one_of(
    json_ish,
    st.decimals(allow_nan=True, allow_infinity=True),
    st.from_regex(r"-?[0-9]{0,120}\.?[0-9]{0,120}(?:[eE][+-]?[0-9]{1,12})?", fullmatch=True),
    st.from_regex(r"[Hh][Tt][Tt][Pp][Ss]?://[^\x00]{0,40}", fullmatch=True),
    st.from_regex(r"https://[A-Za-z0-9.:@\[\]_-]{0,20}(?:[/?#][ -~\t]{0,20})?", fullmatch=True),
    st.from_regex(r"0x[0-9a-fA-F]{38,42}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,9})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?",
        fullmatch=True,
    ),
)


@st.composite
def retyped_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The rich document with one leaf anywhere replaced by a value aimed at a field's rules:
    numeric text, decimals, URLs, addresses, timestamps."""
    document = detroit_house()
    leaves: list[tuple[Any, Any]] = []
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        for key in list(node) if isinstance(node, dict) else range(len(node)):
            child = node[key]
            if isinstance(child, dict | list):
                stack.append(child)
            leaves.append((node, key))
    for _ in range(draw(st.integers(1, 3))):
        node, key = draw(st.sampled_from(leaves))
        node[key] = draw(FIELD_VALUES)
    return document


@EXAMPLES
@given(retyped_fields())
def test_documents_with_retyped_fields_answer_alike(document: dict[str, Any]) -> None:
    assert_same(document)


def test_crowded_objects_are_reported_alike() -> None:
    wide = {f"k{i}": i for i in range(250)}
    for document in (
        {**detroit_house(), "attributes": wide},
        {**detroit_house(), "media": [{"url": "https://a.example"}, wide]},
        {"nested": [[{"deeper": wide}], wide]},
        wide,
    ):
        assert_same(document)


def test_text_beyond_ascii_and_late_keys_answer_alike() -> None:
    for key, text in (
        ("é", "Café"),
        ("\ue000", "x"),
        ("\U0001f3e0", "\U0001f3e0"),
        ("a", "\u2028"),
    ):
        document = detroit_house()
        document["attributes"][key] = text
        # U+E000 sorts after U+1F3E0 by code point but before it by UTF-16 code unit
        document["attributes"]["\U0001f3e0" if key == "\ue000" else "z"] = 1
        document["description"] = text
        assert_same(document)
        assert current.normalized_canonical(current.parse_asset(document, now=NOW))[1] == (
            reference.canonical_json(
                reference.normalized_document(reference.parse_asset(document, now=NOW))
            )
        )


def test_the_clock_bounds_answer_alike() -> None:
    document = detroit_house()
    for now in (NOW, NOW - timedelta(days=400), datetime(2030, 1, 1, tzinfo=UTC)):
        assert_same(document, now)


# --- the helpers the cheaper code rewrote -------------------------------------------------------


def _call(function: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", repr(function(*args)))
    except Exception as exc:  # the exception's type and text are part of the behaviour
        return (type(exc).__name__, str(exc))


DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(
        lambda digits, exponent, sign: Decimal((sign, digits, exponent)),
        st.lists(st.integers(0, 9), min_size=1, max_size=130),
        st.integers(-1300, 1300),
        st.integers(0, 1),
    ),
)


@EXAMPLES
@given(DECIMALS)
def test_decimal_rendering_and_digit_bounds_alike(number: Decimal) -> None:
    assert _call(decimals.normalize_decimal, number) == _call(
        reference_decimals.normalize_decimal, number
    )
    for value in (number, str(number), number.__float__() if number.is_finite() else number):
        assert _call(fields.as_decimal, value) == _call(reference_fields.as_decimal, value)


def test_numeric_text_at_the_digit_bound_alike() -> None:
    for length in range(95, 106):
        for text in (
            "1" * length,
            "." + "1" * length,
            "-." + "1" * length,
            "+0." + "0" * length,
            "0" * length + ".5",
            "-" + "9" * (length // 2) + "." + "9" * (length // 2),
            "1" * length + ".",
            "1" * length + "0e-5",
        ):
            assert _call(fields.as_decimal, text) == _call(reference_fields.as_decimal, text)


NUMERIC_TEXT = st.builds(
    lambda sign, whole, point, fraction, exponent: sign + whole + point + fraction + exponent,
    st.sampled_from(["", "+", "-"]),
    st.builds(str.__mul__, st.sampled_from("019"), st.integers(0, 104)),
    st.sampled_from(["", "."]),
    st.builds(str.__mul__, st.sampled_from("019"), st.integers(0, 104)),
    st.sampled_from(["", "e5", "E-3", "e+120", "e"]),
)


@EXAMPLES
@given(
    st.one_of(
        NUMERIC_TEXT,
        st.text(max_size=250),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
    )
)
def test_decimal_and_integer_inputs_alike(value: Any) -> None:
    assert _call(fields.as_decimal, value) == _call(reference_fields.as_decimal, value)
    assert _call(fields.as_integer, value) == _call(reference_fields.as_integer, value)


@EXAMPLES
@given(st.binary(min_size=20, max_size=20), st.randoms(use_true_random=False))
def test_eip55_alike(raw: bytes, rng: random.Random) -> None:
    lower = "0x" + raw.hex()
    mixed = "0x" + "".join(c.upper() if rng.random() < 0.5 else c for c in raw.hex())
    for address in (lower, lower.upper(), mixed, reference_chains.eip55_checksum(lower)):
        for chain in ("ethereum", "gnosis", "xdai"):
            assert _call(chains.normalize_address, chain, address) == _call(
                reference_chains.normalize_address, chain, address
            )
        # twice: the second answer comes from the cache
        assert chains.eip55_checksum(address) == reference_chains.eip55_checksum(address)
        assert chains.eip55_checksum(address) == reference_chains.eip55_checksum(address)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.from_regex(r"[Hh][Tt][Tt][Pp][Ss]://[^\x00]{0,40}", fullmatch=True),
        st.from_regex(
            r"https://[A-Za-z0-9.:@\[\]_%-]{0,20}(?:[/?#][ -~\t\n]{0,20})?", fullmatch=True
        ),
        # near the shape the rule accepts without parsing: one character off anywhere
        st.builds(
            lambda url, at, odd: url[:at] + odd + url[at:],
            st.from_regex(
                r"[Hh][Tt][Tt][Pp][Ss]?:/{1,3}[a-z0-9.-]{0,8}(?::[0-9]{0,5})?"
                r"(?:[/?#][a-z/?#.:]{0,8})?",
                fullmatch=True,
            ),
            st.integers(0, 30),
            st.sampled_from([*" \t\n\r\x7f\x85\xa0\u2028[]@%\\é:/\x01\ud800", ""]),
        ),
    )
)
def test_url_rule_alike(url: str) -> None:
    def check(module: Any) -> tuple[str, Any]:
        try:
            return ("ok", module.Media.model_validate({"url": url}).url)
        except ValidationError as exc:
            return ("invalid", repr(exc.errors(include_url=False)))

    assert check(current) == check(reference)


@EXAMPLES
@given(json_ish)
def test_canonical_json_alike(document: Any) -> None:
    assert _call(current.canonical_json, {"d": document}) == _call(
        reference.canonical_json, {"d": document}
    )


@EXAMPLES
@given(json_ish)
def test_json_parsing_alike(document: Any) -> None:
    text = json.dumps(document, default=str)
    assert loaded(text, jsonsafe) == loaded(text, reference_jsonsafe)
    assert loaded(text.encode(), jsonsafe) == loaded(text.encode(), reference_jsonsafe)


@EXAMPLES
@given(st.text(alphabet='0123456789.eE+-[]{}",: naNIfity\\ud83', max_size=300))
def test_json_parsing_of_odd_text_alike(text: str) -> None:
    assert loaded(text, jsonsafe) == loaded(text, reference_jsonsafe)
    for long in (
        "1" * 101,
        "1." + "0" * 100,
        "-" + "9" * 150 + "e5",
        "1e999999999999999999",
        "-1.5E-99999999999999999999",
    ):
        body = f'{{"a": [{text[:10] or 0}, {long}]}}'
        assert loaded(body, jsonsafe) == loaded(body, reference_jsonsafe)


# Integer fields whose schema now also states the digit-string form they always accepted (the
# reference's says `integer` only): the only difference allowed.
INTEGER_FIELDS = (
    ("properties", "year_built"),
    ("$defs", "Token", "properties", "total_supply"),
    ("$defs", "Token", "properties", "decimals"),
    ("$defs", "Rental", "properties", "units_total"),
    ("$defs", "Rental", "properties", "units_rented"),
)


def test_the_json_schema_is_unchanged_but_for_integers_as_text() -> None:
    now, before = current.asset_json_schema(), reference.asset_json_schema()
    for path in INTEGER_FIELDS:
        *parents, name = path
        now_parent, before_parent = now, before
        for key in parents:
            now_parent, before_parent = now_parent[key], before_parent[key]
        widened = now_parent[name]["anyOf"]
        assert {"type": "string", "pattern": "^[+-]?[0-9]+$", "maxLength": 101} in widened or any(
            {"type": "string", "pattern": "^[+-]?[0-9]+$", "maxLength": 101}
            in branch.get("anyOf", [])
            for branch in widened
        ), path
        before_parent[name] = now_parent[name]
    # `_meta` is ignored whatever it holds (the reference said `object`), in the API document too
    assert before["properties"].pop("_meta")["type"] == "object"
    assert now["properties"].pop("_meta") == {
        "description": "Added by GET; accepted and ignored on input, whatever it holds."
    }
    assert now == before

"""`jsonsafe`: untrusted JSON parsed with exact decimals, and abusive documents refused."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from rwasync.schema.jsonsafe import (
    MAX_DEPTH,
    MAX_NAMED_ITEMS,
    MAX_NUMBER_DIGITS,
    MalformedJSON,
    dumps,
    loads,
)

pytestmark = pytest.mark.unit


def nested_objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def nested_arrays(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_limits() -> None:
    assert (MAX_DEPTH, MAX_NUMBER_DIGITS) == (32, 100)


@pytest.mark.parametrize("build", [nested_objects, nested_arrays])
def test_32_levels_parse_and_33_do_not(build: object) -> None:
    assert callable(build)
    loads(build(32))
    with pytest.raises(MalformedJSON, match="deeper than 32 levels"):
        loads(build(33))


def test_mixed_nesting_counts_objects_and_arrays() -> None:
    loads('{"a":[' * 16 + "]}" * 16)
    with pytest.raises(MalformedJSON):
        loads('{"a":[' * 16 + '{"b":1}' + "]}" * 16)


def test_huge_nesting_fails_cleanly() -> None:
    with pytest.raises(MalformedJSON, match="deeper"):
        loads("[" * 100_000)
    with pytest.raises(MalformedJSON):
        loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    "number",
    ["1" * 100, "-" + "9" * 100, "0." + "1" * 99, "1" * 50 + "." + "2" * 50, "1e999999999"],
)
def test_numbers_of_up_to_100_digits_parse(number: str) -> None:
    assert loads(f"[{number}]")[0] == Decimal(number)


@pytest.mark.parametrize(
    "number", ["1" * 101, "-" + "9" * 101, "0." + "1" * 100, "1.5e" + "1" * 100]
)
def test_numbers_over_100_digits_are_refused(number: str) -> None:
    with pytest.raises(MalformedJSON, match="more than 100 digits"):
        loads(f'{{"n": {number}}}')


def test_an_exponent_decimal_cannot_hold_is_refused() -> None:
    with pytest.raises(MalformedJSON, match="out of range"):
        loads("1e99999999999999999999")


def test_decimals_are_exact_and_integers_stay_integers() -> None:
    document = loads('{"a": 0.1, "b": 54.20, "c": 7, "d": 1E+2, "e": -0}')

    assert document == {"a": Decimal("0.1"), "b": Decimal("54.20"), "c": 7, "d": 100, "e": 0}
    assert str(document["b"]) == "54.20"
    assert type(document["c"]) is int and type(document["e"]) is int


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_are_refused(constant: str) -> None:
    with pytest.raises(MalformedJSON, match="not a JSON number"):
        loads(f'{{"amount": {constant}}}')


@pytest.mark.parametrize(
    "text",
    [r'{"name": "\ud800"}', r'{"name": "x\udfffy"}', r'{"\ud83d": 1}', r'["\ud83d\u0041"]'],
)
def test_unpaired_surrogate_escapes_are_refused(text: str) -> None:
    with pytest.raises(MalformedJSON, match="unpaired surrogate"):
        loads(text)


def test_paired_surrogates_and_escaped_backslashes_are_fine() -> None:
    assert loads(r'["\ud83d\ude00", "\\ud800"]') == ["\N{GRINNING FACE}", "\\ud800"]


def test_raw_surrogate_in_a_str_body_is_refused() -> None:
    with pytest.raises(MalformedJSON, match="unpaired surrogate"):
        loads('{"name": "\ud800"}')


@pytest.mark.parametrize(
    "body",
    [b'{"name": "\xff"}', b'{"name": "\xed\xa0\x80"}', b'"\xc3"'],
)
def test_invalid_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedJSON):
        loads(body)


def test_a_leading_byte_order_mark_is_ignored_and_only_there() -> None:
    assert loads(b"\xef\xbb\xbf{}") == {}
    with pytest.raises(MalformedJSON):
        loads(b"{}\xef\xbb\xbf")
    with pytest.raises(MalformedJSON):
        loads(b"\xef\xbb\xbf\xef\xbb\xbf{}")


@pytest.mark.parametrize("body", [b"", b"{", b"{'a': 1}", b'{"a": 1,}', b"[1] [2]", b"01"])
def test_text_that_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedJSON, match="invalid JSON") as caught:
        loads(body)
    assert caught.value.detail.startswith("invalid JSON:")


# --- where: line and column, and a batch's item -------------------------------------------------


def refusal(body: bytes | str, items: str | None = None) -> MalformedJSON:
    with pytest.raises(MalformedJSON) as caught:
        loads(body, items=items)
    return caught.value


@pytest.mark.parametrize(
    ("body", "reason", "line", "column"),
    [
        (b'{"a": 1,\n "b": }', "invalid JSON: Expecting value", 2, 7),
        (b'{"a": 1,\n "b": "open', "invalid JSON: Unterminated string starting", 2, 7),
        (b"[1] [2]", "invalid JSON: Extra data", 1, 5),
        (b"", "invalid JSON: Expecting value", 1, 1),
        (b'{"a":\n  [1, ' + b"1" * 101 + b"]}", "a number has more than 100 digits", 2, 7),
        (b'{"a": 1e99999999999999999999}', "number 1e99999999999999999999 is out of range", 1, 7),
        (b'{"a": 1,\n\n "b": -Infinity}', "-Infinity is not a JSON number", 3, 7),
        (b'{"s": "NaN", "n": NaN}', "NaN is not a JSON number", 1, 19),
        # long literals that are fine (an exponent's leading zeros), then one that is not
        (
            b"[1e00000000000000000001, 12345678901234567890, -1.5E-" + b"9" * 19 + b"]",
            "number -1.5E-9999999999999999999 is out of range",
            1,
            48,
        ),
        (b'{"a":\n' + b"[" * 40 + b"]" * 40 + b"}", "JSON nests deeper than 32 levels", 2, 32),
        (b"[" * 100_000, "JSON nests deeper than 32 levels", 1, 33),
        (b'{"a": "[[[", "b":\n ' + b"[" * 32 + b"]" * 32 + b"}", "nests deeper", 2, 33),
        (b'{"ok": "\\ud83d\\ude00",\n "no": "x\\udfff"}', "unpaired surrogate", 2, 10),
        (b'["\\\\ud800", "\\ud83d\\u0041"]', "unpaired surrogate", 1, 14),
        (b'{"name":\n "\xc3\x28"}', "text is not valid UTF-8 (byte 0xc3)", 2, 3),
        (b'\xef\xbb\xbf{"a": "\xff"}', "text is not valid UTF-8 (byte 0xff)", 1, 8),
        ('{"a":\n "\udcff"}', "text is not valid UTF-8 (byte 0xff)", 2, 3),
        ('{"a":\n "\ud800"}', "unpaired surrogate", 2, 3),
    ],
)
def test_a_refusal_says_its_line_and_column(
    body: bytes | str, reason: str, line: int, column: int
) -> None:
    refused = refusal(body)
    assert reason in refused.reason
    assert (refused.line, refused.column, refused.item) == (line, column, None)
    assert refused.detail == f"{refused.reason} at line {line} column {column}"


BATCH = b'{"assets": [\n  {"id": "a1", "name": "One"},\n  {"id": "a2", "name": "Two"}\n]}'


@pytest.mark.parametrize(
    ("broken", "item", "line"),
    [
        (b'"Two" "x"}', 1, 3),
        (b'"Tw\\ud800o"}', 1, 3),
        (b'"Two", "n": NaN}', 1, 3),
        (b'"Two", "n": ' + b"1" * 101 + b"}", 1, 3),
        (b'"Two", "n": ' + b"[" * 31 + b"]" * 31 + b"}", 1, 3),
        (b'"Tw\xffo"}', 1, 3),
        (b'"Two"', 1, 4),  # the item's object does not close: found at the array's `]`
        (b'"Two"} {"id": "a3"}', None, 3),  # between items: no item holds it
        (b'"Two"},', None, 4),  # an item missing, not a broken one
    ],
)
def test_a_refusal_inside_a_batch_item_names_the_item(
    broken: bytes, item: int | None, line: int
) -> None:
    assert loads(BATCH, items="assets")["assets"][1]["name"] == "Two"
    body = BATCH.replace(b'"Two"}', broken)
    refused = refusal(body, items="assets")
    assert (refused.item, refused.line) == (item, line)
    place = f"{refused.reason} at line {line} column {refused.column}"
    assert refused.detail == (place if item is None else f"{place}, in item {item} of assets")
    # Without `items`, only the place.
    assert refusal(body).detail == place


@pytest.mark.parametrize(
    ("body", "item"),
    [
        (b'{"timestamp": NaN, "assets": [{}]}', None),  # the envelope's own field
        (b'{"other": [NaN], "assets": [{}]}', None),  # another array
        (b'{"assets": [{}, 2], "other": NaN}', None),  # after the array
        (b'{"assets": [], "assets": [1, NaN]}', 1),  # a key repeated: the array holding it
        (b'[{"assets": [NaN]}]', None),  # not a batch envelope
        (b'{"assets": {"0": NaN}}', None),
        (b'{"prices": [{"amount": 1}, {"amount": NaN}]}', None),  # not the batch's key
    ],
)
def test_only_an_element_of_the_items_array_is_an_item(body: bytes, item: int | None) -> None:
    assert refusal(body, items="assets").item == item


def test_an_item_is_named_among_the_first_10000_only() -> None:
    """No batch holds more; reading past them one by one would cost a call per element."""
    assert MAX_NAMED_ITEMS == 10_000
    for count, item in ((9_999, 9_999), (10_000, None)):
        body = '{"assets": [' + "1," * count + "NaN]}"
        refused = refusal(body, items="assets")
        assert (refused.item, refused.column) == (item, 13 + 2 * count)


def test_a_feed_item_says_its_place_within_itself() -> None:
    refused = refusal(b'{"id": "a",\n "n": NaN}')
    assert refused.of_item(7) == "NaN is not a JSON number at line 2 column 7 of item 7"


def test_duplicate_keys_keep_the_last() -> None:
    assert loads('{"a": 1, "a": 2}') == {"a": 2}


def test_bytes_and_str_bodies_parse_alike() -> None:
    text = '{"city": "Detroit \u00e9", "n": [1, 2.50]}'
    assert loads(text) == loads(text.encode()) == {"city": "Detroit é", "n": [1, Decimal("2.5")]}


def test_dumps_writes_normalised_decimals_and_utc_timestamps() -> None:
    moment = datetime(2025, 5, 30, 9, 15, tzinfo=timezone(timedelta(hours=-4)))

    body = dumps({"amount": Decimal("54.20"), "big": Decimal("1E+3"), "at": moment, "n": 3})

    assert body == b'{"amount":"54.2","big":"1000","at":"2025-05-30T13:15:00.000000Z","n":3}'


def test_dumps_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(TypeError):
        dumps({"at": datetime(2025, 1, 1)})  # naive: no defined instant
    assert loads(dumps({"at": datetime(2025, 1, 1, tzinfo=UTC)})) == {
        "at": "2025-01-01T00:00:00.000000Z"
    }


def test_integers_beyond_64_bits_are_written_exactly_and_as_compactly() -> None:
    # orjson refuses them; the standard library's fallback wrote `{"a": 1, ...}` with spaces.
    document = {"total_assets": 10**23, "ok": [1, "é"], "at": Decimal("1.50")}
    assert (
        dumps(document)
        == '{"total_assets":100000000000000000000000,"ok":[1,"é"],"at":"1.5"}'.encode()
    )
    assert dumps({"small": 1, "list": [1, 2]}) == b'{"small":1,"list":[1,2]}'

"""Fuzz targets for every parser that reads what an outsider sends: the JSON parser, the asset
validator behind it, and each feed format's reader (envelope, bare array, JSON Lines, CSV, gzip).

Each must end in a result or its documented error (`MalformedJSON`, `AssetInvalid`, `FeedInvalid`,
`FetchFailed`), never another exception; within a bounded time per example (hypothesis'
`deadline`); and for the large hostile inputs below, with a bounded peak of Python allocations
(tracemalloc), so a body's size never turns into the same size again in memory per nesting level
or per item.

hypothesis drives them here, in the default suite; the same target functions are what
`tests/fuzz/atheris_targets.py` hands to atheris (coverage-guided) in the slow suite.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.feeds.fetch import FetchFailed, FetchLimits, _Decoder
from rwasync.feeds.items import ItemError, ValidItem, validate_record
from rwasync.feeds.reading import feed_facts
from rwasync.feeds.records import MAX_ITEM_CHARS, FeedInvalid, read_records
from rwasync.schema.asset import parse_asset
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.jsonsafe import MAX_DEPTH, MalformedJSON, loads

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024
# Per example; generous for a loaded 2-core machine, far below what a hang would take.
DEADLINE = timedelta(seconds=3)
FUZZ = settings(
    max_examples=150,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
T = TypeVar("T")

# --- inputs -----------------------------------------------------------------------------------

# Fragments a hostile JSON text is made of: structure, hostile numbers, escapes, bad UTF-8.
TOKENS = [
    "{", "}", "[", "]", ",", ":", '"', "\\", "\\u", "\\ud800", "\\udc00", "\\u0000", "true",
    "false", "null", "NaN", "-Infinity", "Infinity", "1e999999999", "-0", "0.0e-0",
    "1" * 120, "9" * 5000, "1." + "0" * 200, "1E+", '"id"', '"assets"', '"timestamp"',
    '"total_assets"', '"2025-05-01T00:00:00Z"', " ", "\n", "\r\n", "\t", "\x00", "\ufeff",
]  # fmt: skip
KEYS = ["id", "updated_at", "status", "name", "price", "amount", "currency", "token", "media"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["active", "2025-05-01T00:00:00Z", "USD", "52.10", "x" * 3000]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=20,
)
token_soup = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=60).map("".join)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """Well-formed JSON, then maybe cut, spliced with hostile fragments or byte-flipped."""
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()))
    how = draw(st.sampled_from(["whole", "cut", "splice", "soup", "bytes"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(token_soup) + text[at:]
    elif how == "soup":
        text = draw(token_soup)
    raw = text.encode("utf-8", "surrogatepass")
    if how == "bytes":
        raw = draw(st.binary(max_size=200))
    return raw


def assets_documents() -> st.SearchStrategy[Any]:
    base = {"id": "a-1", "updated_at": "2025-05-01T00:00:00Z", "status": "active", "name": "A"}
    return st.one_of(
        values,
        st.dictionaries(st.sampled_from(KEYS), values, max_size=8).map(lambda d: {**base, **d}),
    )


# --- the checks -------------------------------------------------------------------------------


def within(seconds: float, target: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = target()
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s, over {seconds} s"
    return result


def peak_bytes(target: Callable[[], object]) -> int:
    """The peak of Python allocations while `target` runs (its input is allocated before)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        target()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def parse_json(raw: bytes) -> None:
    try:
        loads(raw)
    except MalformedJSON as exc:
        assert exc.detail


def validate_asset_body(raw: bytes) -> None:
    """The push path: bytes → jsonsafe → the asset contract."""
    try:
        document = loads(raw)
    except MalformedJSON:
        return
    try:
        parse_asset(document, now=NOW)
    except AssetInvalid as exc:
        assert exc.errors


def read_feed(fmt: str, body: bytes, *, read_bytes: int = 64) -> int:
    """Frame and validate every record of a decoded body; the number of records. A small
    `read_bytes` makes the JSON reader refill mid-token, where its framing is most fragile."""
    reader = read_records(fmt, io.BytesIO(body), read_bytes=read_bytes)
    count = 0
    try:
        for record in reader.records:
            assert isinstance(validate_record(record, now=NOW), ValidItem | ItemError)
            count += 1
        with contextlib.suppress(FeedInvalid):
            feed_facts(reader.header, last_modified=None, fetched_at=NOW, now=NOW)
    except FeedInvalid as exc:
        assert exc.reason
    return count


def decode_gzip(body: bytes, limits: FetchLimits) -> int:
    """What fetching does with a gzip body: decode it in bounded steps, caps applied as it
    grows; the decoded size, or FetchFailed."""
    decoder = _Decoder(True, limits)
    for at in range(0, len(body), 64 * 1024):
        decoder.feed(body[at : at + 64 * 1024])
    decoder.finish()
    return decoder.decoded_bytes


# --- fuzz: no crash, no hang ------------------------------------------------------------------


@FUZZ
@given(json_texts())
def test_json_parser_returns_a_value_or_malformed_json(raw: bytes) -> None:
    parse_json(raw)


@FUZZ
@given(json_texts())
def test_asset_validator_from_bytes_returns_an_asset_or_asset_invalid(raw: bytes) -> None:
    validate_asset_body(raw)


@FUZZ
@given(assets_documents())
def test_asset_validator_from_documents_returns_an_asset_or_asset_invalid(document: Any) -> None:
    try:
        parse_asset(document, now=NOW)
    except AssetInvalid as exc:
        assert exc.errors


def feed_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    items = st.lists(assets_documents(), max_size=5)
    envelope = st.tuples(items, scalars, scalars).map(
        lambda t: json.dumps({"timestamp": t[1], "total_assets": t[2], "assets": t[0]})
    )
    array = items.map(json.dumps)
    lines = items.map(lambda xs: "\n".join(json.dumps(x) for x in xs))
    rows = st.lists(st.lists(st.text(max_size=8), min_size=1, max_size=4), max_size=5)
    csv_text = st.tuples(
        st.lists(st.sampled_from(["id", "updated_at", "status", "name", "price.amount", "x.y.z"])
                 | st.text(max_size=6), min_size=1, max_size=5),
        rows,
    ).map(lambda t: "\n".join(",".join(r) for r in [t[0], *t[1]]))  # fmt: skip

    @st.composite
    def mangled(draw: st.DrawFn, fmt: str, texts: st.SearchStrategy[str]) -> tuple[str, bytes]:
        text = draw(texts)
        if draw(st.booleans()):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(token_soup | st.sampled_from(['"', "\r", ",,,", "\x00"]))
            text += text[at:] if draw(st.booleans()) else ""
        raw = text.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            raw = draw(st.binary(max_size=4)) + raw
        return fmt, raw

    return st.one_of(
        mangled("json", envelope),
        mangled("json", array),
        mangled("jsonl", lines),
        mangled("csv", csv_text),
        st.tuples(st.sampled_from(["json", "jsonl", "csv"]), st.binary(max_size=300)),
    )


@FUZZ
@given(feed_bodies())
def test_each_feed_format_reads_records_or_fails_the_feed(body: tuple[str, bytes]) -> None:
    read_feed(*body)


@FUZZ
@given(st.sampled_from(["json", "jsonl", "csv"]), feed_bodies(), st.data())
def test_gzip_feeds_decode_to_records_or_fail_with_a_reason(
    fmt: str, body: tuple[str, bytes], data: st.DataObject
) -> None:
    compressed = gzip.compress(body[1])
    how = data.draw(st.sampled_from(["whole", "cut", "flip", "trailing", "raw"]))
    if how == "cut":
        compressed = compressed[: data.draw(st.integers(0, len(compressed)))]
    elif how == "flip" and compressed:
        at = data.draw(st.integers(0, len(compressed) - 1))
        compressed = compressed[:at] + bytes([compressed[at] ^ 0xFF]) + compressed[at + 1 :]
    elif how == "trailing":
        compressed += data.draw(st.binary(max_size=20))
    elif how == "raw":
        compressed = data.draw(st.binary(max_size=100))
    try:
        decode_gzip(compressed, FetchLimits(max_decoded_bytes=MIB))
    except FetchFailed as exc:
        assert exc.reason
        return
    try:
        decoded = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error):
        # Zero padding after the last member is accepted by the fetcher, and the reader of the
        # spooled file (GzipFile) agrees; anything else it accepted must decompress.
        decoded = gzip.decompress(compressed.rstrip(b"\x00"))
    read_feed(fmt, decoded)


# --- hostile sizes: bounded time and memory ---------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("deep nesting", nested(200_000)),
        ("deep objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("a huge number", b'{"amount": ' + b"9" * 1_000_000 + b"}"),
        ("a huge exponent", b'{"amount": 1e' + b"9" * 50 + b"}"),
        ("a giant string", b'{"name": "' + b"x" * (8 * MIB) + b'"}'),
        ("many keys", b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(200_000)) + b"}"),
        (
            "many nested keys",
            b'{"id":"a","address":{' + b",".join(b'"k%d":0' % i for i in range(200_000)) + b"}}",
        ),
        ("surrogate escapes", b'["' + b"\\ud800" * 200_000 + b'"]'),
    ],
)
def test_json_bombs_are_refused_or_parsed_within_bounds(name: str, body: bytes) -> None:
    peak = peak_bytes(lambda: within(10, lambda: validate_asset_body(body)))
    # The parsed document may be a few times the body (many small objects), never much more.
    assert peak < 12 * len(body) + 8 * MIB, f"{name}: peak {peak} bytes for {len(body)}"
    if name.startswith("deep"):
        with pytest.raises(MalformedJSON, match=f"deeper than {MAX_DEPTH}"):
            loads(body)
    if name.startswith("many"):
        # One error for the crowded object, not one per key.
        with pytest.raises(AssetInvalid) as refused:
            parse_asset(loads(body), now=NOW)
        assert [e.message for e in refused.value.errors] == ["has 200000 keys: far too many"]


def many_items_feed(fmt: str, count: int) -> bytes:
    item = {"id": "x", "updated_at": "2025-05-01T00:00:00Z", "status": "active", "name": "A"}
    if fmt == "csv":
        rows = ["id,updated_at,status,name"]
        rows += [f"a-{i},2025-05-01T00:00:00Z,active,A" for i in range(count)]
        return "\n".join(rows).encode()
    texts = (json.dumps({**item, "id": f"a-{i}"}) for i in range(count))
    if fmt == "jsonl":
        return "\n".join(texts).encode()
    return (
        b'{"timestamp":"2025-05-01T00:00:00Z","total_assets":0,"assets":['
        + ",".join(texts).encode()
        + b"]}"
    )


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_reading_a_large_feed_holds_one_buffer_not_the_feed(fmt: str) -> None:
    body = many_items_feed(fmt, 40_000)  # about 4 MB

    def frame_all() -> Iterator[None]:
        reader = read_records(fmt, io.BytesIO(body))
        for _ in reader.records:
            pass
        yield None

    peak = peak_bytes(lambda: within(20, lambda: list(frame_all())))
    # One read buffer (1 MiB of text, as str up to 4 bytes a character) and the record in hand.
    assert peak < 8 * MIB, f"{fmt}: peak {peak} bytes for a {len(body)}-byte feed"


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("json", b"[" + b" " * (MAX_ITEM_CHARS + 10) + b"1]"),
        ("json", b'["' + b"x" * (MAX_ITEM_CHARS + 10) + b'"]'),
        ("jsonl", b"x" * (MAX_ITEM_CHARS + 10)),
        ("csv", b"id\n" + b"x" * (MAX_ITEM_CHARS + 10)),
        ("json", nested(100_000)),
    ],
)
def test_an_oversized_or_deep_feed_item_fails_the_feed_in_bounded_memory(
    fmt: str, body: bytes
) -> None:
    outcome: list[str] = []

    def attempt() -> None:
        try:
            read_feed(fmt, body, read_bytes=MIB)
            outcome.append("read")
        except FeedInvalid as exc:  # pragma: no cover - read_feed already catches it
            outcome.append(exc.reason)

    peak = peak_bytes(lambda: within(20, attempt))
    assert peak < 6 * MAX_ITEM_CHARS, f"{fmt}: peak {peak} bytes for {len(body)}"


@pytest.mark.parametrize("chunk", [1, 2, 3, 64 * 1024])
def test_a_body_not_declared_gzip_is_decoded_by_its_magic_bytes_in_any_chunks(chunk: int) -> None:
    """A server that says nothing of gzip: the first two bytes decide, however the body is cut,
    and what is not gzip (a body shorter than the magic bytes too) is counted as it is."""
    plain = b'[{"id":"a1"}]\n' * 100
    for sent, decoded, compressed in (
        (gzip.compress(plain), plain, True),
        (plain, plain, False),
        (b"[", b"[", False),
        (b"\x1f", b"\x1f", False),
        (b"", b"", False),
    ):
        decoder = _Decoder(False, FetchLimits())
        for at in range(0, len(sent), chunk):
            decoder.feed(sent[at : at + chunk])
        decoder.finish()
        assert decoder.compressed is compressed, sent[:8]
        assert decoder.body_bytes == len(sent) and decoder.decoded_bytes == len(decoded)
        assert decoder.sha256.digest() == hashlib.sha256(decoded).digest()
    decoder = _Decoder(False, FetchLimits())
    decoder.feed(gzip.compress(plain)[:-20])
    with pytest.raises(FetchFailed, match="truncated"):
        decoder.finish()


def test_a_gzip_bomb_stops_at_the_decoded_cap_in_bounded_memory() -> None:
    # 1 GiB of zeros in about 1 MiB of gzip.
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    bomb = b"".join(squeeze.compress(zeros) for _ in range(1024)) + squeeze.flush()
    assert len(bomb) < 2 * MIB
    limits = FetchLimits(max_decoded_bytes=64 * MIB)

    def inflate() -> None:
        with pytest.raises(FetchFailed, match="decoded feed is larger than the cap"):
            decode_gzip(bomb, limits)

    peak = peak_bytes(lambda: within(20, inflate))
    assert peak < 4 * MIB, f"peak {peak} bytes while refusing a {len(bomb)}-byte gzip bomb"

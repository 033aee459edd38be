"""Reading feed bodies: every format frames the same items, fingerprints follow the raw text,
and whatever breaks one item fails that item while what breaks the file fails the run."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rwasync.feeds.items import ItemError, ValidItem, validate_record
from rwasync.feeds.reading import feed_facts, take
from rwasync.feeds.records import (
    READ_BYTES,
    FeedHeader,
    FeedInvalid,
    RawRecord,
    read_records,
    scanned_id,
)
from rwasync.schema.asset import canonical_json, normalized_document, parse_asset

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = {
    "symbol": "REALTOKEN-S-1-MAIN-ST",
    "chain": "gnosis",
    "contract_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "total_supply": 1000,
}


def asset(asset_id: str, updated_at: str = "2025-05-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": asset_id, "updated_at": updated_at, "status": "active", "name": asset_id, **extra}


RICH = asset(
    "rich-1",
    token=TOKEN,
    price={"amount": "52.10", "currency": "usd"},
    media=[
        {"url": "https://img.example/1.jpg", "kind": "image"},
        {"url": "https://img.example/2.jpg"},
    ],
    attributes={"floors": "2", "pool": "yes"},
    address={"line1": "1 Main St, Unit 2", "city": "Detroit", "country": "US"},
)


def read(fmt: str, body: bytes) -> tuple[list[RawRecord], FeedHeader]:
    reader = read_records(fmt, io.BytesIO(body))
    return list(reader.records), reader.header


def validated(fmt: str, body: bytes) -> list[ValidItem | ItemError]:
    records, _ = read(fmt, body)
    return [validate_record(r, now=NOW) for r in records]


def failure(fmt: str, body: bytes) -> FeedInvalid:
    with pytest.raises(FeedInvalid) as caught:
        read(fmt, body)
    return caught.value


def as_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


RICH_CSV = {
    "id": "rich-1",
    "updated_at": "2025-05-01T00:00:00Z",
    "status": "active",
    "name": "rich-1",
    "token.symbol": "REALTOKEN-S-1-MAIN-ST",
    "token.chain": "gnosis",
    "token.contract_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "token.total_supply": "1000",
    "token.decimals": "",
    "price.amount": "52.10",
    "price.currency": "usd",
    "media.0.url": "https://img.example/1.jpg",
    "media.0.kind": "image",
    "media.1.url": "https://img.example/2.jpg",
    "media.1.kind": "",
    "attributes.floors": "2",
    "attributes.pool": "yes",
    "address.line1": "1 Main St, Unit 2",
    "address.city": "Detroit",
    "address.country": "US",
}


def test_every_format_reads_the_same_normalised_document() -> None:
    expected = canonical_json(normalized_document(parse_asset(RICH, now=NOW)))
    envelope = {"timestamp": "2025-06-01T11:00:00Z", "total_assets": 1, "assets": [RICH]}
    bodies = {
        "envelope": ("json", json.dumps(envelope).encode()),
        "array": ("json", b"  \n" + json.dumps([RICH]).encode()),
        "jsonl": ("jsonl", json.dumps(RICH).encode() + b"\n"),
        "csv": ("csv", as_csv([RICH_CSV])),
    }
    for name, (fmt, body) in bodies.items():
        [item] = validated(fmt, body)
        assert isinstance(item, ValidItem), (name, item)
        assert item.asset_id == "rich-1" and item.document == expected, name
        assert item.price is not None and str(item.price.amount) == "52.10", name


def test_csv_cells_keep_attributes_as_strings_and_empty_cells_absent() -> None:
    [item] = validated("csv", as_csv([RICH_CSV]))
    assert isinstance(item, ValidItem)
    document = json.loads(item.document)
    assert document["attributes"] == {"floors": "2", "pool": "yes"}
    assert document["token"]["total_supply"] == "1000" and "decimals" not in document["token"]
    assert document["media"] == [
        {"url": "https://img.example/1.jpg", "kind": "image"},
        {"url": "https://img.example/2.jpg"},
    ]


def test_csv_attribute_keys_of_digits_stay_keys_and_only_ascii_digits_index_lists() -> None:
    body = (
        "id,updated_at,status,name,attributes.2024,attributes.7,media.\u00b2.url\r\n"
        "d1,2025-05-01T00:00:00Z,active,d1,renovated,x,\r\n"
        "d2,2025-05-01T00:00:00Z,active,d2,,,https://img.example/2.jpg\r\n"
    ).encode()
    digits, superscript = validated("csv", body)
    assert isinstance(digits, ValidItem)
    assert json.loads(digits.document)["attributes"] == {"2024": "renovated", "7": "x"}
    # `²` is a digit to str.isdigit but no index: media stays an object, which the schema refuses
    assert isinstance(superscript, ItemError) and superscript.asset_id == "d2"
    assert superscript.errors[0].pointer == "/media"


def test_a_json_lines_item_unreadable_as_json_keeps_its_id() -> None:
    """Listed by its id, an unreadable item protects its stored asset from the run's deletions
    (as the JSON formats' items and CSV rows do); before, JSON Lines lost the id."""
    head = b'{"id":"%s","updated_at":"2025-05-01T00:00:00Z","status":"active",'
    lines = [
        head % b"long" + b'"name":"n","year_built":' + b"1" * 101 + b"}",
        head % b"deep" + b'"name":"n","attributes":' + b"[" * 40 + b"]" * 40 + b"}",
        head % b"bytes" + b'"name":"caf\xff"}',
        head % b"surrogate" + b'"name":"\\ud800"}',
        b'{"id":"cut","updated_at":',
        b'{"name":"no id first","id":"late",',
    ]
    items = validated("jsonl", b"\n".join(lines) + b"\n")
    assert all(isinstance(item, ItemError) for item in items), items
    ids = [item.asset_id for item in items if isinstance(item, ItemError)]
    # a line cut off before it says its id cannot be told apart from one without an id
    assert ids == ["long", "deep", "bytes", "surrogate", "cut", None]


def test_a_csv_quoted_field_may_hold_commas_quotes_and_line_breaks() -> None:
    body = (
        b"id,updated_at,status,name,description\r\n"
        b'q1,2025-05-01T00:00:00Z,active,"Say ""hi""","two\r\nlines, one comma"\r\n'
    )
    [item] = validated("csv", body)
    assert isinstance(item, ValidItem)
    document = json.loads(item.document)
    assert document["name"] == 'Say "hi"' and document["description"] == "two\r\nlines, one comma"


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (b"updated_at,status,name", "no `id` column"),
        (b"id,name,name", "CSV header names 'name' twice"),
        # one list element by two spellings of its index (both were kept: hybrid trial)
        (
            b"id,media.01.url,media.1.url",
            "CSV header names 'media.1.url' twice (as 'media.01.url' and 'media.1.url')",
        ),
        (b"id,media.00,media.0.url", "both 'media.00' and 'media.0.url'"),
        (b"id,token,token.chain", "both 'token' and 'token.chain'"),
        (b"id,token..chain", "not a dotted path"),
        # 500 parts made each row a RecursionError: an internal error, a preview's 500 (hostile
        # trial); 33 parts is one more than a JSON item may nest
        (b"id,attributes." + b".".join([b"a"] * 32), "names a path of more than 32 parts"),
        (b"id," + b".".join([b"a"] * 500), "names a path of more than 32 parts"),
    ],
)
def test_a_bad_csv_header_fails_the_run(header: bytes, fragment: str) -> None:
    error = failure("csv", header + b"\r\na,b,c\r\n")
    assert error.reason_code == "parse_error" and fragment in error.reason


def test_an_index_counts_without_its_leading_zeros_and_attribute_names_stay_as_written() -> None:
    """`media.0.url` and `media.00.kind` are one list element (they made two: security trial);
    under `attributes` every key is a name, `01` as much as `1`."""
    body = (
        b"id,updated_at,status,name,media.0.url,media.00.kind,attributes.01,attributes.1\r\n"
        b"a,2025-05-01T00:00:00Z,active,A,https://x.example/a.jpg,image,x,y\r\n"
    )
    [item] = validated("csv", body)
    assert isinstance(item, ValidItem), item
    document = json.loads(item.document)
    assert document["media"] == [{"url": "https://x.example/a.jpg", "kind": "image"}]
    assert document["attributes"] == {"01": "x", "1": "y"}


def test_a_broken_csv_quote_fails_the_run() -> None:
    error = failure("csv", b'id,name\r\nx,"unclosed\r\n')
    assert error.reason_code == "parse_error"


def test_a_csv_row_of_the_wrong_width_or_bad_utf8_fails_only_that_item() -> None:
    body = (
        b"id,updated_at,status,name\r\n"
        b"ok,2025-05-01T00:00:00Z,active,fine\r\n"
        b"short,2025-05-01T00:00:00Z\r\n"
        b"bytes,2025-05-01T00:00:00Z,active,caf\xe9\r\n"
    )
    good, short, broken = validated("csv", body)
    assert isinstance(good, ValidItem)
    assert isinstance(short, ItemError) and short.asset_id == "short"
    assert "has 2 cells" in short.errors[0].message
    assert isinstance(broken, ItemError) and broken.asset_id == "bytes"
    assert broken.errors[0].pointer == "/name" and "UTF-8" in broken.errors[0].message


def test_a_spreadsheets_empty_rows_and_trailing_empty_columns_are_no_items() -> None:
    """Excel ends an export with empty rows (`,,,`) and, at times, empty unnamed columns. The
    rows were items without an id, which held every run that deleted (`unidentified_items`);
    the columns failed the whole file (a trial). A value under an unnamed column still fails
    its row."""
    body = (
        b"\xef\xbb\xbfid,updated_at,status,name,,\r\n"
        b"e1,2025-05-01T00:00:00Z,active,one,,\r\n"
        b",,,,,\r\n"
        b"e2,2025-05-01T00:00:00Z,active,two,,stray\r\n"
        b" , ,,,,\r\n"
    )
    first, stray = validated("csv", body)
    assert isinstance(first, ValidItem) and json.loads(first.document)["name"] == "one"
    assert isinstance(stray, ItemError) and stray.asset_id == "e2"
    assert stray.errors[0].message == "has text in cell 6, past the 4 columns the header names"
    # Unnamed columns between named ones are still refused.
    error = failure("csv", b"id,,name\r\na,,b\r\n")
    assert "column 2 ('')" in error.reason


def test_json_lines_skip_blank_lines_and_fail_a_bad_line_alone() -> None:
    body = (
        json.dumps(asset("a")).encode()
        + b"\n\n   \n{oops\n"
        + json.dumps(asset("b")).encode()
        + b"\r\n"
        + b'{"id": "u", "name": "\xff"}'
    )
    results = validated("jsonl", body)
    assert [type(r).__name__ for r in results] == [
        "ValidItem",
        "ItemError",
        "ValidItem",
        "ItemError",
    ]
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert "invalid JSON" in results[1].errors[0].message  # type: ignore[union-attr]
    assert "UTF-8" in results[3].errors[0].message  # type: ignore[union-attr]


def test_envelope_keys_may_come_in_any_order() -> None:
    body = json.dumps(
        {
            "assets": [asset("a")],
            "total_assets": 1,
            "extra": {"x": [1]},
            "timestamp": "2025-06-01T11:00:00Z",
        }
    ).encode()
    records, header = read("json", body)
    assert [r.raw_id for r in records] == ["a"]
    assert header.enveloped and header.total_assets == 1
    assert header.timestamp == "2025-06-01T11:00:00Z"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (b'{"timestamp": "2025-06-01T11:00:00Z", "assets": []}', "lacks `total_assets`"),
        (b'{"total_assets": 0, "assets": []}', "lacks `timestamp`"),
        (b'{"timestamp": "2025-06-01T11:00:00Z", "total_assets": 0}', "lacks `assets`"),
        (b'{"timestamp": "x", "total_assets": 0, "assets": {}}', "`assets` to be an array"),
        (b"[" + json.dumps(asset("a")).encode() + b",", "not valid JSON"),
        (b"[" + json.dumps(asset("a")).encode(), "',' or ']'"),
        (b"[1] [2]", "after the end"),
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "nests too deep"),
    ],
)
def test_a_broken_json_file_fails_the_run(body: bytes, fragment: str) -> None:
    error = failure("json", body)
    assert error.reason_code == "parse_error" and fragment in error.reason


def test_a_truncated_json_file_says_where_it_breaks_in_the_whole_body() -> None:
    body = b"[" + b",".join(json.dumps(asset(f"a{n}")).encode() for n in range(3000))
    cut = body + b',{"id": "cut'
    error = failure("json", cut)
    # past the reader's first window: placed in the whole body, from 1 (the quote), by line and
    # column as the API's other refusals of JSON are
    assert error.reason == (
        f"the feed is not valid JSON: Unterminated string starting at line 1 column {len(body) + 9}"
    )
    # on a later line, read in small pieces (many of them let go before the fault): counted
    # from that line's start, however the lines fell across the pieces
    lines = b"[\n" + b",\n".join(json.dumps(asset(f"a{n}")).encode() for n in range(3000))
    for read_bytes in (4096, 1000, READ_BYTES):
        reader = read_records(
            "json", io.BytesIO(lines + b',\n  {"id": "cut'), read_bytes=read_bytes
        )
        with pytest.raises(FeedInvalid) as caught:
            list(reader.records)
        assert caught.value.reason == (
            "the feed is not valid JSON: Unterminated string starting at line 3002 column 10"
        ), read_bytes
    # a fault on a line that began pieces before: its column counts from that line's start
    one_line = b"[" + b",".join(json.dumps(asset(f"a{n}")).encode() for n in range(100))
    reader = read_records("json", io.BytesIO(b"\n" + one_line + b",x]"), read_bytes=1000)
    with pytest.raises(FeedInvalid) as caught:
        list(reader.records)
    assert caught.value.reason.endswith(f"at line 2 column {len(one_line) + 2}")


def test_hostile_json_items_fail_alone_and_never_crash_the_reader() -> None:
    body = (
        b"["
        + b",".join(
            [
                json.dumps(asset("good")).encode(),
                b'{"id": "long", "year_built": ' + b"9" * 5000 + b"}",
                b'{"id": "deep", "attributes": ' + b"[" * 40 + b"]" * 40 + b"}",
                b'{"id": "lone", "name": "\\ud800"}',
                b'{"id": "nan", "year_built": NaN}',
                b'{"id": "bytes", "name": "\xff\xfe"}',
            ]
        )
        + b"]"
    )
    results = {r.asset_id: r for r in validated("json", body)}
    assert isinstance(results["good"], ValidItem)
    messages = {k: v.errors[0].message for k, v in results.items() if isinstance(v, ItemError)}
    # Each says where, within the item (its line and column), and which item it is.
    assert messages == {
        "long": "a number has more than 100 digits at line 1 column 30 of item 1",
        "deep": "JSON nests deeper than 32 levels at line 1 column 61 of item 2",
        "lone": "JSON contains an unpaired surrogate (\\ud800-\\udfff) at line 1 column 25 "
        "of item 3",
        "nan": "NaN is not a JSON number at line 1 column 29 of item 4",
        "bytes": "text is not valid UTF-8 (byte 0xff) at line 1 column 26 of item 5",
    }
    assert all(v.errors[0].pointer == "" for v in results.values() if isinstance(v, ItemError))


def test_an_item_that_does_not_parse_says_where_within_it() -> None:
    pretty = json.dumps([asset("a"), {**asset("b"), "year_built": 1}], indent=2).encode()
    pretty = pretty.replace(b'"year_built": 1', b'"year_built": NaN')
    (good, bad) = validated("json", pretty)
    assert isinstance(good, ValidItem) and isinstance(bad, ItemError)
    # the item's own lines: `{`, then id, updated_at, status, name, and year_built (6)
    assert bad.errors[0].message == "NaN is not a JSON number at line 6 column 19 of item 1"
    lines = json.dumps(asset("a")).encode() + b'\n\n{"id": "b", "name": }\n'
    (_, broken) = validated("jsonl", lines)
    assert isinstance(broken, ItemError) and broken.asset_id == "b"
    assert broken.errors[0].message == "invalid JSON: Expecting value at line 1 column 21 of item 1"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_an_item_larger_than_a_push_may_be_is_invalid_alone(fmt: str) -> None:
    """An item over the limit (ingest-api's on one asset's body) is refused for that alone, by
    its id (so that its stored asset is kept), however valid; the others are read."""
    limit = 4096
    # "é" is two bytes in UTF-8: 2,100 of them make a description under the limit in characters
    # and over it in bytes; the third item is exactly at the limit.
    items = [asset("a0"), asset("big", description="é" * 2100), asset("a2")]
    if fmt == "json":
        # Many items after the first, so that some are framed in a stretch (no id read then).
        items = [*items, *(asset(f"x{n}") for n in range(20))]
        body = json.dumps(items, ensure_ascii=False).encode()
    elif fmt == "jsonl":
        body = b"".join(json.dumps(i, ensure_ascii=False).encode() + b"\n" for i in items)
    else:
        body = as_csv(items)
    records, _ = read(fmt, body)
    results = [validate_record(r, now=NOW, max_item_bytes=limit) for r in records]
    big = results[1]
    assert isinstance(big, ItemError) and big.asset_id == "big"
    size = records[1].size()
    assert limit < size < 2 * limit
    assert [e.as_dict() for e in big.errors] == [
        {
            "pointer": "",
            "message": f"the item is {size} bytes, over the limit of {limit} bytes for one "
            "asset (RWASYNC_INGEST_MAX_BODY_BYTES)",
        }
    ]
    assert all(isinstance(r, ValidItem) for r in results if r is not big)
    # Within the limit (the default, 1 MiB, here), the same item is valid.
    assert isinstance(validate_record(records[1], now=NOW), ValidItem)


def test_an_items_size_is_its_bytes_as_the_feed_carries_it() -> None:
    text = '{"id": "é"}'
    assert RawRecord(0, b"", text=text).size() == len(text.encode()) == 12
    assert RawRecord(0, b"", line=b'{"id": "\xff"}').size() == 11
    assert RawRecord(0, b"", row=["a", "é", ""], columns=("id", "name", "x")).size() == 5
    for limit in range(1, 14):
        record = RawRecord(0, b"", text=text)
        assert record.larger_than(limit) == (limit < 12)
    # Bytes that are not UTF-8, kept as surrogates by the reader, count one each.
    assert RawRecord(0, b"", text='"\udcff"').size() == 3


def test_items_spanning_read_boundaries_are_framed_exactly() -> None:
    items = [asset(f"a{n}", description="x" * 70_000) for n in range(40)]
    records, _ = read("json", json.dumps(items).encode())
    # An item framed in a stretch is not read for its id (None): the text gives it.
    assert [r.raw_id or scanned_id(r.text or "") for r in records] == [f"a{n}" for n in range(40)]
    assert all(json.loads(r.text or "") == items[r.index] for r in records)


def test_fingerprints_follow_the_raw_text_of_an_item() -> None:
    one = json.dumps(asset("a")).encode()
    changed = json.dumps(asset("a", name="other")).encode()
    first, _ = read("json", b"[" + one + b"," + changed + b"]")
    again, _ = read("jsonl", one + b"\n" + one + b"\n")
    assert first[0].fingerprint != first[1].fingerprint
    assert again[0].fingerprint == again[1].fingerprint
    # The same text in another format is another record: formats never share fingerprints.
    assert first[0].fingerprint != again[0].fingerprint


def test_the_item_cap_holds_across_batches() -> None:
    records = iter(
        read("jsonl", b"\n".join(json.dumps(asset(f"a{n}")).encode() for n in range(5)))[0]
    )
    assert len(take(records, 3, seen=0, max_items=5)) == 3
    assert len(take(records, 3, seen=3, max_items=5)) == 2
    again = iter(
        read("jsonl", b"\n".join(json.dumps(asset(f"a{n}")).encode() for n in range(5)))[0]
    )
    with pytest.raises(FeedInvalid) as caught:
        take(again, 10, seen=0, max_items=4)
    assert caught.value.reason_code == "size_limit"


def test_the_snapshot_time_is_the_timestamp_else_last_modified_else_the_fetch() -> None:
    fetched = NOW - timedelta(minutes=2)
    modified = NOW - timedelta(hours=1)
    envelope = FeedHeader("2025-06-01T13:00:00+02:00", 3, enveloped=True)
    facts = feed_facts(envelope, last_modified=modified, fetched_at=fetched, now=NOW)
    assert facts.snapshot_time == NOW - timedelta(hours=1) and facts.total_assets == 3
    bare = FeedHeader()
    assert (
        feed_facts(bare, last_modified=modified, fetched_at=fetched, now=NOW).snapshot_time
        == modified
    )
    assert (
        feed_facts(bare, last_modified=None, fetched_at=fetched, now=NOW).snapshot_time == fetched
    )
    assert feed_facts(bare, last_modified=None, fetched_at=fetched, now=NOW).total_assets is None
    ahead = FeedHeader("2025-06-01T12:06:00Z", 1, enveloped=True)
    with pytest.raises(FeedInvalid) as caught:
        feed_facts(ahead, last_modified=None, fetched_at=fetched, now=NOW)
    assert caught.value.reason_code == "future_timestamp"
    for bad in (
        FeedHeader("2025-06-01", 1, True),
        FeedHeader("2025-06-01T11:00:00Z", -1, True),
        FeedHeader("2025-06-01T11:00:00Z", True, True),
    ):
        with pytest.raises(FeedInvalid):
            feed_facts(bad, last_modified=None, fetched_at=fetched, now=NOW)


@pytest.mark.parametrize("read_bytes", [1, 2, 3, 5, 7, 11, 64, 1000])
def test_any_read_boundary_frames_the_same_items(read_bytes: int) -> None:
    """Pieces may end inside a literal, a number, an escape, a multi-byte character or a key."""
    items = [
        asset("t", attributes={"flag": True, "none": None, "off": False, "n": -12.5e3}),
        asset("esc", name='quote " back \\ slash \\u00e9 \u00e9 \u20ac \U0001f3e0'),
        {"id": "nums", "values": [0, -1, 123456789012345678901234567890, 1e-7, 2.50]},
    ]
    body = json.dumps({"timestamp": "2025-06-01T11:00:00Z", "total_assets": 3, "assets": items})
    reader = read_records("json", io.BytesIO(body.encode()), read_bytes=read_bytes)
    records = list(reader.records)
    assert [json.loads(r.text or "") for r in records] == items
    assert reader.header.total_assets == 3
    broken = body.replace('"flag": true', '"flag": tru')
    with pytest.raises(FeedInvalid):
        list(read_records("json", io.BytesIO(broken.encode()), read_bytes=read_bytes).records)


def test_a_long_csv_cell_fails_its_item_not_the_run() -> None:
    """The csv module's 128 KiB cell limit failed the whole run over one long description
    (security trial): a long cell is that item's problem, a row over an asset's size too."""
    body = (
        b"id,updated_at,status,name,description\r\n"
        b"long,2025-05-01T00:00:00Z,active,One," + b"x" * (200 * 1024) + b"\r\n"
        b'huge,2025-05-01T00:00:00Z,active,Two,"' + b"y" * (2 * 1024 * 1024) + b'"\r\n'
        b"fine,2025-05-01T00:00:00Z,active,Three,ok\r\n"
    )
    long, huge, fine = validated("csv", body)
    assert isinstance(long, ItemError) and long.asset_id == "long"
    assert "/description" in [e.pointer for e in long.errors]
    assert isinstance(huge, ItemError) and huge.asset_id == "huge"
    assert "over the limit" in huge.errors[0].message
    assert isinstance(fine, ValidItem)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_numeric_id_is_no_id_wherever_the_item_stands(position: int) -> None:
    """Framed alone (first or last), an item's id 123 was read as "123" and protected asset
    "123"; framed with others, or in JSON Lines, it was no id: moving the item flipped a run
    between ok and held (newcomer trial). A number is no id anywhere."""
    items: list[dict[str, object]] = [
        {"id": f"s-{n}", "updated_at": "2025-05-01T00:00:00Z", "status": "active", "name": "n"}
        for n in range(3)
    ]
    items[position]["id"] = 123
    for fmt, body in (
        ("json", json.dumps(items).encode()),
        (
            "json",
            json.dumps(
                {"timestamp": "2025-05-01T00:00:00Z", "total_assets": 3, "assets": items}
            ).encode(),
        ),
        ("jsonl", b"".join(json.dumps(item).encode() + b"\n" for item in items)),
    ):
        results = validated(fmt, body)
        bad = results[position]
        assert isinstance(bad, ItemError) and bad.asset_id is None, (fmt, bad)
        assert all(isinstance(r, ValidItem) for n, r in enumerate(results) if n != position)


def test_a_csv_list_index_of_thousands_of_digits_orders_the_list_as_a_number() -> None:
    """int() refuses over 4,300 digits: such an index (a hostile header) ended the item's
    validation with a ValueError, the run an internal error."""
    huge = b"1" * 6000
    body = (
        b"id,updated_at,status,name,media." + huge + b".url,media.02.kind,media.2.url\r\n"
        b"a,2025-05-01T00:00:00Z,active,A,https://x.example/late.jpg,image,https://x.example/2.jpg\r\n"
    )
    [item] = validated("csv", body)
    assert isinstance(item, ValidItem), item
    assert [m["url"] for m in json.loads(item.document)["media"]] == [
        "https://x.example/2.jpg",
        "https://x.example/late.jpg",
    ]

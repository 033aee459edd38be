"""Reading a feed body: the JSON envelope, its failures, item errors and duplicate ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rwasync.feed_poller.parse import FeedInvalid, parse_feed
from rwasync.schema.asset import content_hash, normalized_document, parse_asset

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def asset(asset_id: str, updated_at: str = "2025-05-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": asset_id, "updated_at": updated_at, "status": "active", "name": asset_id, **extra}


def envelope(
    assets: list[Any], *, timestamp: Any = "2025-06-01T11:00:00Z", total: Any = "count"
) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "total_assets": len(assets) if total == "count" else total,
        "assets": assets,
    }


def parse(document: Any, *, max_items: int = 1000) -> Any:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_feed(body, "json", now=NOW, max_items=max_items)


def failure(document: Any, **kwargs: Any) -> FeedInvalid:
    with pytest.raises(FeedInvalid) as caught:
        parse(document, **kwargs)
    return caught.value


def test_a_valid_envelope_yields_normalised_items() -> None:
    feed = parse(
        envelope(
            [
                asset("a"),
                asset(
                    "b",
                    price={"amount": "10.50", "currency": "USD", "as_of": "2025-05-01T00:00:00Z"},
                ),
            ],
            timestamp="2025-06-01T13:00:00+02:00",
        )
    )
    assert feed.snapshot_time == datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    assert feed.total_assets == 2 and feed.seen == 2 and feed.invalid == 0
    assert [i.asset_id for i in feed.items] == ["a", "b"]
    b = feed.items[1]
    expected = normalized_document(
        parse_asset(
            asset(
                "b", price={"amount": "10.5", "currency": "USD", "as_of": "2025-05-01T00:00:00Z"}
            ),
            now=NOW,
        )
    )
    assert b.document == expected and b.content_hash == content_hash(expected)
    assert b.updated_at == datetime(2025, 5, 1, tzinfo=UTC)
    assert feed.errors == []


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ([asset("a")], "must be a JSON object"),
        ({"total_assets": 0, "assets": []}, "`timestamp`"),
        ({"timestamp": "2025-06-01T11:00:00Z", "assets": []}, "`total_assets`"),
        ({"timestamp": "2025-06-01T11:00:00Z", "total_assets": 0}, "`assets`"),
        (envelope([], total=-1), "integer ≥ 0"),
        (envelope([], total="3"), "integer ≥ 0"),
        (envelope([], total=True), "integer ≥ 0"),
        (envelope([], total=1.5), "integer ≥ 0"),
        (envelope([], timestamp="2025-06-01T11:00:00"), "offset"),
        (envelope([], timestamp="yesterday"), "RFC 3339"),
        (envelope([], timestamp=1717239600), "RFC 3339"),
        ({"timestamp": "2025-06-01T11:00:00Z", "total_assets": 0, "assets": {}}, "array"),
        (
            b'{"timestamp":"2025-06-01T11:00:00Z","total_assets":0,"assets":['
            + b"[" * 40
            + b"]" * 40
            + b"]}",
            "deeper",
        ),
    ],
)
def test_an_unusable_envelope_fails_as_parse_error(document: Any, fragment: str) -> None:
    error = failure(document)
    assert error.reason_code == "parse_error"
    assert fragment in error.reason


def test_a_timestamp_more_than_five_minutes_ahead_fails_the_run() -> None:
    ahead = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    error = failure(envelope([asset("a")], timestamp=ahead))
    assert error.reason_code == "future_timestamp"
    # Five minutes exactly is still accepted (clocks drift).
    assert parse(envelope([asset("a")], timestamp=(NOW + timedelta(minutes=5)).isoformat()))


def test_more_items_than_the_cap_fails_as_size_limit() -> None:
    error = failure(envelope([asset(f"a{n}") for n in range(4)]), max_items=3)
    assert error.reason_code == "size_limit"


def test_an_unsupported_format_fails_as_parse_error() -> None:
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(b"[]", "csv", now=NOW, max_items=10)
    assert caught.value.reason_code == "parse_error"


def test_invalid_items_are_reported_with_pointers_relative_to_the_item() -> None:
    feed = parse(
        envelope(
            [
                asset("good"),
                asset("bad-status", status="gone"),
                {"name": "no id"},
                42,
                asset("from-the-future", updated_at="2025-06-01T12:06:00Z"),
                asset("bad id!"),
            ]
        )
    )
    assert [i.asset_id for i in feed.items] == ["good"]
    assert feed.seen == 6 and feed.invalid == 5
    errors = [e.as_dict() for e in feed.errors]
    assert errors[0] == {
        "index": 1,
        "id": "bad-status",
        "errors": [{"pointer": "/status", "message": errors[0]["errors"][0]["message"]}],
    }
    assert errors[1]["index"] == 2 and "id" not in errors[1]
    assert {"pointer": "/id", "message": errors[1]["errors"][0]["message"]} in errors[1]["errors"]
    assert errors[2] == {"index": 3, "errors": [{"pointer": "", "message": "must be an object"}]}
    assert errors[3]["id"] == "from-the-future"
    assert errors[3]["errors"][0]["pointer"] == "/updated_at"
    assert errors[4]["id"] == "bad id!" and errors[4]["errors"][0]["pointer"] == "/id"
    # Invalid items with a string id are never treated as missing.
    assert feed.invalid_ids == {"bad-status", "from-the-future", "bad id!"}


def test_duplicate_ids_keep_the_latest_updated_at() -> None:
    feed = parse(
        envelope(
            [
                asset("a", "2025-05-03T00:00:00Z", name="newest"),
                asset("a", "2025-05-01T00:00:00Z", name="oldest"),
                asset("a", "2025-05-02T00:00:00Z", name="middle"),
                asset("b"),
            ]
        )
    )
    assert [(i.asset_id, i.document["name"]) for i in feed.items] == [("a", "newest"), ("b", "b")]
    assert feed.invalid == 0 and feed.seen == 4
    assert [e.as_dict() for e in feed.errors] == [
        {
            "index": n,
            "id": "a",
            "errors": [{"pointer": "/id", "message": "duplicate id 'a': superseded by index 0"}],
        }
        for n in (1, 2)
    ]


def test_duplicate_ids_at_equal_updated_at_keep_the_later_in_the_file() -> None:
    feed = parse(envelope([asset("a", name="first"), asset("a", name="second")]))
    assert [i.document["name"] for i in feed.items] == ["second"]
    [superseded] = feed.errors
    assert superseded.index == 0
    assert superseded.errors[0].message.endswith("superseded by index 1")

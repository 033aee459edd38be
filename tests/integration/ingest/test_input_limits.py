"""Bad input through the real service: a body that is not JSON says where (line and column, and
in a batch which item), and a batch item larger than a push of it alone may be is rejected as
that item, the others accepted (docs/api.md 2.5, 2.6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rwasync.schema.messages import decode_message
from tests.integration.ingest.conftest import Provider, Queues
from tests.integration.ingest.helpers import JSON, Client, house, problem
from tests.support.events import large_asset_doc

pytestmark = pytest.mark.integration

# The default of RWASYNC_INGEST_MAX_BODY_BYTES, which the `ingest` fixture keeps.
LIMIT = 1024 * 1024


def tick(asset_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "amount": "52.10",
        "currency": "USD",
        "as_of": "2025-06-01T10:00:00Z",
        **extra,
    }


async def malformed(ingest: Client, provider: Provider, method: str, path: str, raw: bytes) -> str:
    """The detail of the 400 `raw` gets (a problem of kind malformed-json, without `errors`)."""
    response = await ingest.request(method, path, data=raw, headers={**JSON, **provider.basic})
    body = await problem(response, 400)
    assert body["type"].endswith("/malformed-json")
    assert "errors" not in body  # no field to point at: the body is not a document
    detail: str = body["detail"]
    return detail


# --- a 400 says where ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (
            b'{"id": "a1",\n "name": }',
            "invalid JSON: Expecting value at line 2 column 10",
        ),
        (
            b'{"id": "a1",\n "name": "x",\n "year_built": ' + b"9" * 150 + b"}",
            "a number has more than 100 digits at line 3 column 16",
        ),
        (b'{"id": "a1", "year_built": NaN}', "NaN is not a JSON number at line 1 column 28"),
        (
            b'{"id": "a1",\n  "attributes": ' + b"[" * 40 + b"]" * 40 + b"}",
            "JSON nests deeper than 32 levels at line 2 column 48",
        ),
        (
            b'{"id": "a1", "name": "\\ud83d\\ude00 \\udfff"}',
            "JSON contains an unpaired surrogate (\\ud800-\\udfff) at line 1 column 36",
        ),
        (
            b'{"id": "a1",\r\n "name": "caf\xe9"}',
            "text is not valid UTF-8 (byte 0xe9) at line 2 column 14",
        ),
    ],
)
async def test_malformed_json_says_its_line_and_column(
    ingest: Client, provider: Provider, raw: bytes, detail: str
) -> None:
    for method, path in (("PUT", "/v1/assets/a1"), ("POST", "/v1/validate/asset")):
        assert await malformed(ingest, provider, method, path, raw) == detail


BATCHES = [
    ("/v1/assets/batch", "assets", [house("b-0"), house("b-1"), house("b-2")], "id"),
    ("/v1/validate/batch", "assets", [house("b-0"), house("b-1"), house("b-2")], "id"),
    ("/v1/prices", "prices", [tick("b-0"), tick("b-1"), tick("b-2")], "asset_id"),
]


@pytest.mark.parametrize(("path", "key", "items", "id_key"), BATCHES)
async def test_a_batch_says_which_item_is_not_json(
    ingest: Client,
    queues: Queues,
    provider: Provider,
    path: str,
    key: str,
    items: list[dict[str, Any]],
    id_key: str,
) -> None:
    """A fault inside an element of the batch's array names that element by the index its
    result has once the body is fixed; one outside the elements names none."""
    # One item a line: item N on line N + 2, with nothing else between two of them than ",\n".
    text = f'{{"{key}": [\n' + ",\n".join(json.dumps(item) for item in items) + "\n]}"
    # (what to replace, with what, the reason, the item, where in the replacement it points)
    cases = [
        ('"b-1"', '"b-1", "x": }', "invalid JSON: Expecting value", 1, 12),
        ('"b-2"', '"b-2", "n": ' + "1" * 101, "a number has more than 100 digits", 2, 12),
        # the 30th bracket opens level 33: envelope, array and item make 3
        ('"b-0"', '"b-0", "d": ' + "[" * 31 + "]" * 31, "JSON nests deeper than 32 levels", 0, 41),
        ('"b-2"', '"b-\\udc002"', "JSON contains an unpaired surrogate (\\ud800-\\udfff)", 2, 3),
    ]
    for marker, broken, reason, item, offset in cases:
        raw = text.replace(marker, broken)
        column = raw.split("\n")[item + 1].index(broken) + offset + 1
        detail = await malformed(ingest, provider, "POST", path, raw.encode())
        assert detail == f"{reason} at line {item + 2} column {column}, in item {item} of {key}"
    # The index is the one the item's result has.
    response = await ingest.post(path, data=text.encode(), headers={**JSON, **provider.basic})
    assert response.status in (200, 202), await response.text()
    results = (await response.json())["results"]
    assert [(r["index"], r[id_key]) for r in results] == [(0, "b-0"), (1, "b-1"), (2, "b-2")]
    # Outside the elements: between two of them, in the envelope, after it.
    for raw, reason in (
        (text.replace(",\n", "\n", 1), "invalid JSON: Expecting ',' delimiter"),
        (text.replace(f'"{key}"', '"note": NaN, "' + key + '"'), "NaN is not a JSON number"),
        (text + " []", "invalid JSON: Extra data"),
    ):
        detail = await malformed(ingest, provider, "POST", path, raw.encode())
        assert detail.startswith(f"{reason} at line ") and ", in item" not in detail, detail
    await queues.assets.purge()
    await queues.prices.purge()


# --- an item larger than a push of it alone ------------------------------------------------------


def too_large(size: int, what: str) -> str:
    return (
        f"the item is {size} bytes, over the limit of {LIMIT} bytes for one {what} "
        "(RWASYNC_INGEST_MAX_BODY_BYTES)"
    )


def padded(document: dict[str, Any], size: int) -> bytes:
    """`document` as JSON of exactly `size` bytes: spaces after its `{` (JSON allows them, and a
    body's size counts them), so a valid document can reach any size."""
    text = json.dumps(document).encode()
    assert len(text) <= size
    return b"{" + b" " * (size - len(text)) + text[1:]


async def test_a_batch_item_over_the_single_asset_limit_is_rejected_alone(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """A batch body may hold 16 MiB, but no item more than PUT /v1/assets/{id} takes (413): such
    an item is rejected as that item, the others accepted; one at the limit exactly is taken."""
    big = padded(large_asset_doc("big"), LIMIT + 1)
    exact = padded(large_asset_doc("exact"), LIMIT)
    alone = await ingest.put("/v1/assets/big", data=big, headers={**JSON, **provider.basic})
    await problem(alone, 413)

    small = [json.dumps(house(f"small-{n}")).encode() for n in (0, 3)]
    body = b'{"assets": [' + b", ".join([small[0], big, exact, small[1]]) + b"]}"
    response = await ingest.post("/v1/assets/batch", data=body, headers={**JSON, **provider.basic})
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert (answer["accepted"], answer["rejected"]) == (3, 1)
    assert answer["results"][1] == {
        "index": 1,
        "id": "big",
        "status": "rejected",
        "errors": [{"pointer": "", "message": too_large(LIMIT + 1, "asset")}],
    }
    assert [(r["id"], r["status"]) for r in answer["results"]] == [
        ("small-0", "accepted"),
        ("big", "rejected"),
        ("exact", "accepted"),
        ("small-3", "accepted"),
    ]
    published: list[str] = []
    while len(published) < 3:
        message = await queues.next(queues.assets)
        published += [e.asset_id for e in decode_message(message.body).events]
    assert published == ["small-0", "exact", "small-3"]

    report = await ingest.post("/v1/validate/batch", data=body, headers={**JSON, **provider.basic})
    assert report.status == 200, await report.text()
    validity = await report.json()
    assert validity["valid"] is False
    assert [(r["index"], r["id"], r["valid"]) for r in validity["results"]] == [
        (0, "small-0", True),
        (1, "big", False),
        (2, "exact", True),
        (3, "small-3", True),
    ]
    assert validity["results"][1]["errors"] == [
        {"pointer": "", "message": too_large(LIMIT + 1, "asset")}
    ]


async def test_a_price_tick_over_the_single_item_limit_is_rejected_alone(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    fat = padded(tick("fat"), LIMIT + 10)
    alone = await ingest.put("/v1/assets/fat/price", data=fat, headers={**JSON, **provider.basic})
    await problem(alone, 413)
    ticks = [json.dumps(tick("p-0")).encode(), fat, json.dumps(tick("p-2")).encode()]
    body = b'{"prices": [' + b",".join(ticks) + b"]}"
    response = await ingest.post("/v1/prices", data=body, headers={**JSON, **provider.basic})
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert answer["results"][1] == {
        "index": 1,
        "asset_id": "fat",
        "status": "rejected",
        "errors": [{"pointer": "", "message": too_large(LIMIT + 10, "price")}],
    }
    published: list[str] = []
    while len(published) < 2:
        message = await queues.next(queues.prices)
        published += [e.asset_id for e in decode_message(message.body).events]
    assert published == ["p-0", "p-2"]


async def test_a_feed_previewed_by_body_rejects_an_item_over_the_limit(
    ingest: Client, provider: Provider
) -> None:
    """The preview reads a feed as a run does: an item over the limit is an invalid item, listed
    by its id; the others are read."""
    lines = [json.dumps(house("line-0")).encode(), padded(house("big"), LIMIT + 1)]
    body = b"\n".join([*lines, json.dumps(house("line-2")).encode()]) + b"\n"
    response = await ingest.post(
        "/v1/validate/feed",
        data=body,
        headers={"Content-Type": "application/x-ndjson", **provider.basic},
    )
    assert response.status == 200, await response.text()
    preview = await response.json()
    assert preview["counts"] == {"seen": 3, "invalid": 1}
    assert preview["errors"] == [
        {
            "index": 1,
            "id": "big",
            "errors": [{"pointer": "", "message": too_large(LIMIT + 1, "asset")}],
        }
    ]

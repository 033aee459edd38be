"""ingest-api over real HTTP, Postgres and RabbitMQ: authentication, validation and its problem
responses, confirmed publishing onto the right queue, receipts, and the provider's reads."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aio_pika
import pytest

from rwasync.ingest_api.acceptance import AcceptanceClock
from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from rwasync.schema.asset import content_hash, normalized_document, parse_asset
from rwasync.schema.events import AssetUpserted, EventSource, PriceUpdated
from rwasync.schema.messages import decode_message
from rwasync.schema.timestamps import timestamp_text
from rwasync.store.tenants import digest, issue_reader_token, new_id
from tests.integration.ingest.conftest import (
    Provider,
    Queues,
    create_provider,
    ingest_settings,
    readiness,
    serve,
)
from tests.integration.ingest.helpers import (
    JSON,
    NOWHERE_AMQP,
    NOWHERE_POSTGRES,
    Client,
    accepted_event_id,
    house,
    pointers,
    problem,
    put_json,
    store_asset,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

API_DOCS = (Path(__file__).parents[3] / "docs" / "api.md").read_text()


# --- accepting an asset ---------------------------------------------------------------------------


async def test_put_asset_publishes_the_normalised_event_and_records_accepted(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    sent = house("det-48214:2417-van-dyke.A")
    before = datetime.now(UTC)
    response = await put_json(
        ingest,
        "/v1/assets/det-48214:2417-van-dyke.A",
        sent,
        {**provider.basic, "X-Request-Id": "trace-2417"},
    )
    event_id = await accepted_event_id(response)

    message = await queues.next(queues.assets)
    assert message.message_id == str(event_id)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.routing_key == "asset.upserted"
    (event,) = decode_message(message.body).events
    assert isinstance(event, AssetUpserted)
    assert event.event_id == event_id
    assert event.provider_id == provider.provider_id
    assert event.asset_id == "det-48214:2417-van-dyke.A"
    assert event.source == EventSource.PUSH
    assert event.trace_id == "trace-2417"
    assert event.updated_at == datetime(2025, 5, 30, 13, 15, tzinfo=UTC)
    assert before <= event.received_at <= event.accepted_at <= datetime.now(UTC)
    document = event.payload.document
    assert document == normalized_document(parse_asset(sent))
    assert document["updated_at"] == "2025-05-30T13:15:00.000000Z"
    assert document["token"]["chain"] == "gnosis"
    assert document["token"]["contract_address"] == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert document["price"] == {"amount": "54.2", "currency": "USD"}
    assert event.payload.content_hash == content_hash(document).hex()
    assert await queues.depth(queues.prices) == 0

    receipt = await store.fetchrow(
        "SELECT provider_id, asset_id, type, status, accepted_at FROM event_receipts"
        " WHERE event_id = $1",
        event_id,
    )
    assert receipt is not None
    assert dict(receipt) == {
        "provider_id": provider.provider_id,
        "asset_id": "det-48214:2417-van-dyke.A",
        "type": "asset.upserted",
        "status": "accepted",
        "accepted_at": event.accepted_at,
    }


async def test_receipts_that_cannot_be_written_still_answer_202_and_are_counted(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    """The events are in the broker once confirmed: a failed receipt insert (here its table is
    away) is logged and counted, the request still 202, the event published."""
    failures = await _metric(ingest, "rwasync_ingest_receipt_failures_total")
    await store.execute("ALTER TABLE event_receipts RENAME TO event_receipts_away")
    try:
        single = await accepted_event_id(
            await put_json(ingest, "/v1/assets/r-1", house("r-1"), provider.basic)
        )
        response = await ingest.post(
            "/v1/assets/batch",
            data=json.dumps({"assets": [house("r-2"), house("r-3")]}),
            headers={**JSON, **provider.basic},
        )
        assert response.status == 202, await response.text()
    finally:
        await store.execute("ALTER TABLE event_receipts_away RENAME TO event_receipts")
    batch = [uuid.UUID(r["event_id"]) for r in (await response.json())["results"]]
    published = [await queues.next(queues.assets) for _ in range(2)]
    assert published[0].message_id == str(single)
    assert [e.event_id for e in decode_message(published[1].body).events] == batch
    assert await _metric(ingest, "rwasync_ingest_receipt_failures_total") == failures + 3
    assert not await store.fetchval(
        "SELECT count(*) FROM event_receipts WHERE event_id = ANY($1::uuid[])", [single, *batch]
    )


async def _metric(client: Client, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


async def test_provider_comes_from_the_credentials_never_the_body(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    other = await create_provider(store)
    sent = house("tenant-1", provider_id=other.provider_id)
    response = await put_json(ingest, "/v1/assets/tenant-1", sent, provider.bearer)
    body = await problem(response, 422)
    assert pointers(body) == {"/provider_id"}

    response = await put_json(ingest, "/v1/assets/tenant-1", house("tenant-1"), provider.bearer)
    await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert event.provider_id == provider.provider_id


async def test_bearer_token_and_utf8_charset_are_accepted_and_the_path_id_fills_a_missing_id(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    sent = house("ignored")
    del sent["id"]
    response = await ingest.put(
        "/v1/assets/from-the-path",
        data=json.dumps(sent),
        headers={"Content-Type": "application/json; charset=UTF-8", **provider.bearer},
    )
    event_id = await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert event.event_id == event_id
    assert event.asset_id == "from-the-path"
    assert isinstance(event, AssetUpserted)
    assert event.payload.document["id"] == "from-the-path"


async def test_a_byte_order_mark_before_a_body_is_ignored(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """Some tools write one first; it was a 400 saying "decode using utf-8-sig"."""
    response = await ingest.put(
        "/v1/assets/bom-1",
        data=b"\xef\xbb\xbf" + json.dumps(house("bom-1")).encode(),
        headers={**JSON, **provider.bearer},
    )
    event_id = await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert event.event_id == event_id and event.asset_id == "bom-1"


async def test_acceptance_instants_increase_across_requests(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    for n in range(5):
        response = await put_json(ingest, f"/v1/assets/seq-{n}", house(f"seq-{n}"), provider.basic)
        await accepted_event_id(response)
    accepted = [
        decode_message((await queues.next(queues.assets)).body).events[0].accepted_at
        for _ in range(5)
    ]
    assert accepted == sorted(accepted) and len(set(accepted)) == 5


def test_acceptance_clock_is_strictly_increasing_even_when_time_stands_still() -> None:
    frozen = datetime(2026, 1, 1, tzinfo=UTC)
    clock = AcceptanceClock(now=lambda: frozen)
    single = clock.next()
    batch = clock.instants(3)
    after = clock.next()
    µs = timedelta(microseconds=1)
    assert single == frozen
    assert batch == [frozen + µs, frozen + 2 * µs, frozen + 3 * µs]
    assert after == frozen + 4 * µs
    with pytest.raises(ValueError):
        clock.instants(0)


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + "a2V5X29ubHk=",  # "key_only": no colon
        "Basic " + "a2V5AF94OnNlY3JldA==",  # "key\0_x:secret": NUL in the key id
        "Bearer rwp_not-a-token",
        "Digest username=someone",
    ],
)
async def test_missing_or_malformed_credentials_are_401(
    ingest: Client, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await put_json(ingest, "/v1/assets/a1", house("a1"), headers)
    await problem(response, 401)
    assert "Bearer" in response.headers["WWW-Authenticate"]
    response = await ingest.get("/v1/assets/a1", headers=headers)
    await problem(response, 401)


async def test_wrong_secret_unknown_key_and_another_key_pair_are_401(
    ingest: Client, provider: Provider, store: Database
) -> None:
    other = await create_provider(store)
    for key_id, secret in (
        (provider.key_id, provider.secret + "x"),
        (provider.key_id, other.secret),
        ("key_unknown", provider.secret),
        (provider.key_id, provider.token),
    ):
        wrong = Provider(provider.provider_id, key_id, secret, provider.token)
        response = await ingest.get("/v1/assets/a1", headers=wrong.basic)
        await problem(response, 401)
    # The right pair still works (and a miss on an asset is a 404, not a 401).
    await problem(await ingest.get("/v1/assets/a1", headers=provider.basic), 404)


async def test_reader_tokens_are_not_provider_credentials(ingest: Client, store: Database) -> None:
    token = issue_reader_token()
    await store.execute(
        "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, 'Investor', $2)",
        new_id("rdr"),
        digest(token),
    )
    response = await ingest.get("/v1/assets/a1", headers={"Authorization": f"Bearer {token}"})
    await problem(response, 401)


async def test_disabled_provider_and_revoked_credential_are_401(
    ingest: Client, queues: Queues, store: Database
) -> None:
    disabled = await create_provider(store, disabled=True)
    revoked = await create_provider(store)
    await store.execute(
        "UPDATE provider_credentials SET revoked_at = now() WHERE key_id = $1", revoked.key_id
    )
    for who in (disabled, revoked):
        for headers in (who.basic, who.bearer):
            response = await put_json(ingest, "/v1/assets/a1", house("a1"), headers)
            await problem(response, 401)
    assert await queues.depth(queues.assets) == 0


# --- bad requests ---------------------------------------------------------------------------------


async def test_invalid_document_is_422_listing_every_pointer(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    sent = house(
        "inv-1",
        updated_at="not a time",
        status="bogus",
        name="",
        colour="red",
        location={"lat": 100, "lon": 0},
        token={"chain": "bitcoin", "contract_address": "x"},
    )
    response = await put_json(ingest, "/v1/assets/inv-1", sent, provider.basic)
    body = await problem(response, 422)
    # RFC 9110's name in the status line as in the title (aiohttp's own phrase is RFC 4918's).
    assert response.reason == body["title"] == "Unprocessable Content"
    assert pointers(body) == {
        "/updated_at",
        "/status",
        "/name",
        "/colour",
        "/location/lat",
        "/token/chain",
    }
    assert all(error["message"] for error in body["errors"])
    assert await queues.depth(queues.assets) == 0


@pytest.mark.parametrize(
    "when", ["٢٠٢٤-٠٥-٠١T١٢:٠٠:٠٠Z", "2024-05-01T1२:00:00Z", "２０２４-05-01T12:00:00Z"]
)
async def test_a_timestamp_in_non_ascii_digits_is_422(
    ingest: Client, queues: Queues, provider: Provider, when: str
) -> None:
    # `\d` took Arabic-Indic, Devanagari and full-width digits, and `int` read them: the asset
    # was accepted and stored as 2024-05-01 (hostile trial). RFC 3339 digits are ASCII.
    response = await put_json(
        ingest, "/v1/assets/digits-1", house("digits-1", updated_at=when), provider.basic
    )
    body = await problem(response, 422)
    assert pointers(body) == {"/updated_at"}, body
    assert await queues.depth(queues.assets) == 0


async def test_a_422_counts_the_errors_its_list_leaves_out(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    # 60 media entries, each with two errors: 120 in all, of which the list shows 99 and a last
    # entry for the rest; the detail counts all 120, not the 100 entries listed.
    sent = house("inv-2", media=[{"url": "http://x", "kind": "bad"}] * 60)
    response = await put_json(ingest, "/v1/assets/inv-2", sent, provider.basic)
    body = await problem(response, 422)
    assert len(body["errors"]) == 100
    assert body["errors"][-1] == {"pointer": "", "message": "and 21 more errors"}
    assert body["detail"] == "the asset document is invalid (120 errors); see errors"
    assert await queues.depth(queues.assets) == 0


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"id": "a1", "name": ', "invalid JSON"),
        (b'{"id": "a1", "name": "\\ud800"}', "surrogate"),
        (b'{"attributes": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper"),
        (b'{"price": {"amount": 1' + b"0" * 120 + b"}}", "digits"),
    ],
)
async def test_malformed_json_is_400(
    ingest: Client, provider: Provider, raw: bytes, detail: str
) -> None:
    response = await ingest.put("/v1/assets/a1", data=raw, headers={**JSON, **provider.basic})
    body = await problem(response, 400)
    assert detail in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("PUT", "/v1/assets/a1", "application/json"),
        ("POST", "/v1/assets", "application/json"),
        ("PATCH", "/v1/assets/a1", "application/merge-patch+json"),
        ("PATCH", "/v1/assets/a1", "application/json"),
        ("PUT", "/v1/assets/a1/price", "application/json"),
        ("POST", "/v1/assets/batch", "application/json"),
        ("POST", "/v1/prices", "application/json"),
        ("POST", "/v1/validate/asset", "application/json"),
        ("POST", "/v1/validate/batch", "application/json"),
        ("PUT", "/v1/feeds/f1", "application/json"),
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
async def test_an_empty_body_is_400_not_json(
    ingest: Client,
    queues: Queues,
    provider: Provider,
    method: str,
    path: str,
    content_type: str,
    chunked: bool,
) -> None:
    """Where a body is required, none at all is not JSON (400), not a document missing every
    field (422): with Content-Length: 0 or as an empty chunked body alike."""

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    response = await ingest.request(
        method,
        path,
        data=nothing() if chunked else b"",
        headers={"Content-Type": content_type, **provider.basic},
    )
    body = await problem(response, 400)
    assert body["type"].endswith("/malformed-json")
    assert body["detail"] == "the body is empty: send a JSON document"
    assert await queues.depth(queues.assets) == 0
    assert await queues.depth(queues.prices) == 0


async def test_a_delete_with_an_empty_body_has_no_body(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """A DELETE's body is optional (docs/api.md): an empty one, even declared as JSON, is none."""
    response = await ingest.delete(
        "/v1/assets/gone-1", data=b"", headers={**JSON, **provider.basic}
    )
    assert response.status == 202, await response.text()


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_wrong_content_type_is_415(
    ingest: Client, provider: Provider, content_type: str | None
) -> None:
    headers = dict(provider.basic)
    if content_type is not None:
        headers["Content-Type"] = content_type
    for path in ("/v1/assets/a1", "/v1/assets/a1/price"):
        response = await ingest.put(path, data=json.dumps(house("a1")).encode(), headers=headers)
        await problem(response, 415)


async def test_body_over_the_limit_is_413_declared_or_chunked(
    ingest: Client, provider: Provider
) -> None:
    oversized = json.dumps(house("big", description="x" * (1024**2))).encode()
    response = await ingest.put(
        "/v1/assets/big", data=oversized, headers={**JSON, **provider.basic}
    )
    await problem(response, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536

    response = await ingest.put(
        "/v1/assets/big/price", data=chunks(), headers={**JSON, **provider.basic}
    )
    await problem(response, 413)


async def test_expect_100_continue_comes_only_once_the_request_may_send_its_body(
    ingest: Client, provider: Provider
) -> None:
    """A client that waits for `100 Continue` before uploading (curl does, above 1 MiB) is told
    at once when its declared body is over the limit or its credentials are wrong, instead of
    being invited to upload it first, and such an answer closes the connection (the body it
    declared was never sent: a kept connection would read the next request as that body); a
    good request gets its 100, then its answer, on a connection that stays open."""
    assert ingest.port is not None

    async def exchange(headers: str, body: bytes | None = None) -> tuple[bytes, bytes, bool]:
        """The first status line, the final one (after sending `body`), and whether the final
        answer closes the connection."""

        async def head() -> tuple[bytes, list[bytes]]:
            status = await asyncio.wait_for(reader.readline(), timeout=10)
            lines = []
            while (line := await asyncio.wait_for(reader.readline(), timeout=10)) != b"\r\n":
                lines.append(line.strip().lower())
            return status, lines

        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        try:
            writer.write(f"PUT /v1/assets/exp-1 HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            first, lines = await head()
            final = b""
            if body is not None:
                writer.write(body)
                final, lines = await head()
            return first, final, b"connection: close" in lines
        finally:
            writer.close()

    auth = f"Authorization: {provider.bearer['Authorization']}\r\n"
    expect = "Content-Type: application/json\r\nExpect: 100-continue\r\n"
    first, _, closed = await exchange(f"{auth}{expect}Content-Length: {2 * 1024**2}\r\n")
    assert first.startswith(b"HTTP/1.1 413") and closed, first
    wrong = f"Authorization: Bearer rwp_wrong\r\n{expect}Content-Length: 9\r\n"
    first, _, closed = await exchange(wrong)
    assert first.startswith(b"HTTP/1.1 401") and closed, first
    document = json.dumps(house("exp-1")).encode()
    first, final, closed = await exchange(
        f"{auth}{expect}Content-Length: {len(document)}\r\n", document
    )
    assert first.startswith(b"HTTP/1.1 100 Continue"), first
    assert final.startswith(b"HTTP/1.1 202") and not closed, final
    first, _, closed = await exchange(f"{auth}Expect: something-else\r\nContent-Length: 2\r\n")
    assert first.startswith(b"HTTP/1.1 417") and closed, first


async def test_body_id_must_match_a_valid_path_id(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    response = await put_json(ingest, "/v1/assets/a1", house("a2"), provider.basic)
    body = await problem(response, 422)
    assert pointers(body) == {"/id"}

    for bad_path_id in ("has%20space", "x" * 129, "semi;colon"):
        response = await put_json(
            ingest, f"/v1/assets/{bad_path_id}", house("a1", status="bogus"), provider.basic
        )
        body = await problem(response, 422)
        assert pointers(body) == {"/id", "/status"}
    assert await queues.depth(queues.assets) == 0


# --- prices ---------------------------------------------------------------------------------------


async def test_price_put_lands_on_the_prices_queue_only(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    response = await put_json(
        ingest,
        "/v1/assets/never-pushed-1/price",
        {"amount": "54.20", "currency": "eur", "as_of": "2025-06-01T10:00:00+02:00"},
        provider.bearer,
    )
    event_id = await accepted_event_id(response)

    message = await queues.next(queues.prices)
    assert message.message_id == str(event_id)
    assert message.routing_key == "price.updated"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    (event,) = decode_message(message.body).events
    assert isinstance(event, PriceUpdated)
    assert event.provider_id == provider.provider_id
    assert event.asset_id == "never-pushed-1"
    assert event.payload.amount == Decimal("54.2")
    assert event.payload.currency == "EUR"
    assert event.updated_at == event.payload.as_of == datetime(2025, 6, 1, 8, tzinfo=UTC)
    assert await queues.depth(queues.assets) == 0

    status = await store.fetchval(
        "SELECT status FROM event_receipts WHERE event_id = $1 AND type = 'price.updated'",
        event_id,
    )
    assert status == "accepted"


async def test_invalid_price_is_422_with_its_pointers(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    response = await put_json(
        ingest,
        "/v1/assets/a1/price",
        {"amount": -1, "currency": "XXXX", "as_of": "yesterday"},
        provider.basic,
    )
    body = await problem(response, 422)
    assert pointers(body) == {"/amount", "/currency", "/as_of"}
    response = await put_json(ingest, "/v1/assets/a1/price", {"price": 1}, provider.basic)
    body = await problem(response, 422)
    assert pointers(body) == {"/amount", "/currency", "/as_of", "/price"}
    assert await queues.depth(queues.prices) == 0


async def test_a_price_for_an_id_no_asset_can_have_points_at_id_as_documented(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """The path's id is checked with the tick: a bad one is an `invalid-price` at `/id`, one of
    the pointers docs/api.md 2.5 lists for the call (it listed only the body's three)."""
    tick = {"amount": "1", "currency": "USD", "as_of": "2026-01-01T00:00:00Z"}
    response = await put_json(ingest, "/v1/assets/bad%20id/price", tick, provider.basic)
    body = await problem(response, 422)
    assert body["type"].endswith("/invalid-price")
    assert pointers(body) == {"/id"}
    section = API_DOCS.split("#### `PUT /v1/assets/{id}/price`")[1].split("\n####")[0]
    documented = set(re.findall(r"`(/[a-z_]+)`", section.split("errors point at")[1]))
    assert documented == {"/id", "/amount", "/currency", "/as_of"}
    assert await queues.depth(queues.prices) == 0


# --- reads ----------------------------------------------------------------------------------------


async def test_get_asset_returns_the_stored_document_with_meta(
    ingest: Client, provider: Provider, store: Database
) -> None:
    document = normalized_document(parse_asset(house("read-1")))
    updated_at = datetime(2025, 5, 30, 13, 15, tzinfo=UTC)
    applied_at = await store_asset(
        store, provider.provider_id, "read-1", document=document, updated_at=updated_at
    )
    response = await ingest.get("/v1/assets/read-1", headers=provider.bearer)
    assert response.status == 200, await response.text()
    body = await response.json()
    meta = body.pop("_meta")
    assert body == document
    assert meta == {
        "updated_at": "2025-05-30T13:15:00.000000Z",
        "content_hash": content_hash(document).hex(),
        "deleted": False,
        "applied_at": timestamp_text(applied_at),
    }
    # What GET returns can be sent back as is (`_meta` is ignored on input).
    echoed = await ingest.put(
        "/v1/assets/read-1", data=await response.read(), headers={**JSON, **provider.bearer}
    )
    await accepted_event_id(echoed)


async def test_another_providers_asset_is_404(
    ingest: Client, provider: Provider, store: Database
) -> None:
    other = await create_provider(store)
    document = normalized_document(parse_asset(house("theirs-1")))
    await store_asset(
        store, other.provider_id, "theirs-1", document=document, updated_at=datetime.now(UTC)
    )
    assert (await ingest.get("/v1/assets/theirs-1", headers=other.basic)).status == 200
    await problem(await ingest.get("/v1/assets/theirs-1", headers=provider.basic), 404)
    await problem(await ingest.get("/v1/assets/never-seen", headers=provider.basic), 404)
    await problem(await ingest.get("/v1/assets/bad%20id", headers=provider.basic), 404)


async def test_deleted_asset_is_404_unless_include_deleted(
    ingest: Client, provider: Provider, store: Database
) -> None:
    document = normalized_document(parse_asset(house("gone-1")))
    deleted_at = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    await store_asset(
        store,
        provider.provider_id,
        "gone-1",
        document=document,
        updated_at=deleted_at,
        deleted=True,
    )
    await problem(await ingest.get("/v1/assets/gone-1", headers=provider.basic), 404)
    await problem(
        await ingest.get("/v1/assets/gone-1?include_deleted=false", headers=provider.basic), 404
    )
    response = await ingest.get("/v1/assets/gone-1?include_deleted=true", headers=provider.basic)
    assert response.status == 200, await response.text()
    body = await response.json()
    meta = body.pop("_meta")
    assert body == document
    assert meta["deleted"] is True
    assert meta["updated_at"] == "2025-07-01T09:00:00.000000Z"

    # A tombstone for an id that never had a document (DELETE of an unknown id).
    await store_asset(
        store, provider.provider_id, "gone-2", document=None, updated_at=deleted_at, deleted=True
    )
    response = await ingest.get("/v1/assets/gone-2?include_deleted=true", headers=provider.basic)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["id"] == "gone-2"
    assert body["_meta"]["deleted"] is True
    assert body["_meta"]["content_hash"] is None
    assert set(body) == {"id", "_meta"}


async def test_event_receipt_is_readable_by_its_provider_only(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    response = await put_json(ingest, "/v1/assets/rcpt-1", house("rcpt-1"), provider.basic)
    event_id = await accepted_event_id(response)
    trace_id = response.headers["X-Trace-Id"]  # the PUT's, not the GET's
    response = await ingest.get(f"/v1/events/{event_id}", headers=provider.basic)
    assert response.status == 200, await response.text()
    assert await response.json() == {
        "event_id": str(event_id),
        "type": "asset.upserted",
        "asset_id": "rcpt-1",
        "status": "accepted",
        "trace_id": trace_id,
    }
    other = await create_provider(store)
    await problem(await ingest.get(f"/v1/events/{event_id}", headers=other.basic), 404)
    await problem(await ingest.get(f"/v1/events/{uuid.uuid4()}", headers=provider.basic), 404)
    await problem(await ingest.get("/v1/events/not-a-uuid", headers=provider.basic), 404)


async def test_decided_receipts_show_reason_and_price_latest(
    ingest: Client, provider: Provider, store: Database
) -> None:
    stale, price = uuid.uuid4(), uuid.uuid4()
    await store.execute(
        """INSERT INTO event_receipts
               (event_id, provider_id, asset_id, type, status, reason, latest, accepted_at,
                decided_at)
           VALUES ($1, $3, 'a1', 'asset.upserted', 'stale_ignored', 'older than stored', NULL,
                   now(), now()),
                  ($2, $3, 'a1', 'price.updated', 'applied', NULL, false, now(), now())""",
        stale,
        price,
        provider.provider_id,
    )
    response = await ingest.get(f"/v1/events/{stale}", headers=provider.bearer)
    assert await response.json() == {
        "event_id": str(stale),
        "type": "asset.upserted",
        "asset_id": "a1",
        "status": "stale_ignored",
        "reason": "older than stored",
    }
    response = await ingest.get(f"/v1/events/{price}", headers=provider.bearer)
    assert await response.json() == {
        "event_id": str(price),
        "type": "price.updated",
        "asset_id": "a1",
        "status": "applied",
        "latest": False,
    }


# --- the rest of the surface ----------------------------------------------------------------------


async def test_schema_is_public(ingest: Client) -> None:
    response = await ingest.get("/v1/schema/asset.json")
    assert response.status == 200
    schema = await response.json()
    assert schema["$id"] == "https://rwasync.dev/v1/schema/asset.json"
    assert {"id", "updated_at", "status", "name"} <= set(schema["required"])


async def test_unknown_route_and_wrong_method_are_problems(ingest: Client) -> None:
    body = await problem(await ingest.get("/v1/nothing-here"), 404)
    assert body["detail"] == "no such resource: /v1/nothing-here"
    response = await ingest.post("/v1/schema/asset.json", data=b"{}")
    body = await problem(response, 405)
    assert "GET" in response.headers["Allow"]
    assert body["detail"].startswith("POST is not allowed on /v1/schema/asset.json; allowed: ")
    assert "GET" in body["detail"]


async def test_health_readiness_and_metrics(ingest: Client) -> None:
    assert (await ingest.get("/healthz")).status == 200
    response = await ingest.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"database": True, "broker": True}
    response = await ingest.get("/metrics")
    assert response.status == 200
    assert "rwasync_http_requests_total" in await response.text()


async def test_made_up_methods_share_one_label_in_the_request_metrics(ingest: Client) -> None:
    """Methods beyond the API's own (WebDAV's, which the HTTP parser knows) add no label sets to
    /metrics: they count as "other"."""
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        await problem(await ingest.request(method, "/v1/nothing-here"), 404)
    text = await (await ingest.get("/metrics")).text()
    assert "PROPFIND" not in text and "MKCOL" not in text
    assert 'rwasync_http_requests_total{method="other",route="unmatched",status="404"} 3.0' in text


async def test_receipt_failure_after_the_confirm_still_answers_202(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    # The event is durable once the broker confirmed; the consumer writes the decided receipt.
    await store.execute("ALTER TABLE event_receipts RENAME TO event_receipts_away")
    try:
        response = await put_json(ingest, "/v1/assets/r-1", house("r-1"), provider.basic)
        event_id = await accepted_event_id(response)
    finally:
        await store.execute("ALTER TABLE event_receipts_away RENAME TO event_receipts")
    assert (await queues.next(queues.assets)).message_id == str(event_id)


# --- outages --------------------------------------------------------------------------------------


async def test_broker_away_is_503_with_retry_after_while_healthz_answers(
    database_url: str,
) -> None:
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    try:
        provider = await create_provider(db)
        client = await serve(create_app(ingest_settings(database_url, NOWHERE_AMQP)))
        try:
            await eventually(
                lambda: readiness(client),
                lambda body: body["checks"]["database"],
                timeout=30,
                what="database connected",
            )
            response = await put_json(client, "/v1/assets/a1", house("a1"), provider.basic)
            await problem(response, 503)
            assert int(response.headers["Retry-After"]) > 0
            response = await put_json(
                client,
                "/v1/assets/a1/price",
                {"amount": 1, "currency": "USD", "as_of": "2025-01-01T00:00:00Z"},
                provider.basic,
            )
            await problem(response, 503)
            assert (await client.get("/healthz")).status == 200
            response = await client.get("/readyz")
            assert response.status == 503
            assert (await response.json())["checks"] == {"database": True, "broker": False}
            count = await db.fetchval("SELECT count(*) FROM event_receipts")
            assert count == 0
        finally:
            await client.close()
    finally:
        await db.close()


async def test_database_away_is_503_on_authenticated_calls_while_healthz_answers() -> None:
    client = await serve(create_app(ingest_settings(NOWHERE_POSTGRES, NOWHERE_AMQP)))
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        bearer = {"Authorization": "Bearer rwp_whatever"}
        for response in (
            await put_json(client, "/v1/assets/a1", house("a1"), bearer),
            await client.get("/v1/assets/a1", headers=bearer),
            await client.get(f"/v1/events/{uuid.uuid4()}", headers=bearer),
        ):
            await problem(response, 503)
            assert int(response.headers["Retry-After"]) > 0
        assert (await client.get("/v1/schema/asset.json")).status == 200
    finally:
        await client.close()


def test_settings_defaults() -> None:
    settings = ingest_settings("postgresql://x", "amqp://y")
    assert settings.port == 8080
    assert settings.max_body_bytes == 1024**2
    assert settings.auth_cache_seconds == 5

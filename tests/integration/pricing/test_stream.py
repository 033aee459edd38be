"""`GET /v1/prices/stream` through the real consumer, broker and database: filters and tenant
walls, resume with `Last-Event-ID` (none missed, none repeated; too old: reset), commit order
across out-of-order transactions, 50 subscribers, a slow one dropped, keep-alives, and the
reader-token wall on every read."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from multidict import CIMultiDict

from rwasync.platform.db import Database
from rwasync.store.tenants import issue_provider_credential
from tests.integration.pricing.conftest import Client, Push, reader_headers
from tests.support.sse import SseEvent, SseReader

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[Client]]


@pytest.fixture
async def second_provider(db: Database, provider_id: str) -> str:
    await db.execute("INSERT INTO providers (provider_id, name) VALUES ('prv_other', 'Other')")
    return "prv_other"


@asynccontextmanager
async def subscribe(
    client: Client, query: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseReader]:
    response = await client.get(
        f"/v1/prices/stream?{query}", headers=headers if headers is not None else reader_headers()
    )
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    try:
        yield SseReader(response)
    finally:
        response.close()


def seen(events: list[SseEvent]) -> list[tuple[str, str, str]]:
    return [(e.json()["provider_id"], e.json()["asset_id"], e.json()["amount"]) for e in events]


async def test_filters_and_tenant_walls(
    pricing: Start, push: Push, provider_id: str, second_provider: str
) -> None:
    client = await pricing()
    async with (
        subscribe(client, f"provider_id={provider_id}&asset_id=a1") as one_asset,
        subscribe(client, f"provider_id={provider_id}") as all_assets,
        subscribe(client, f"provider_id={second_provider}&asset_id=a1,a9") as other,
        # a repeated asset_id counts like a comma (it used to be the first one alone)
        subscribe(client, f"provider_id={provider_id}&asset_id=a2&asset_id=a1") as repeated,
    ):
        await push(second_provider, [("a1", "7")])  # same asset id, another provider
        await push(provider_id, [("a1", "10"), ("a2", "20")])
        await push(provider_id, [("a1", "11")])
        assert seen(await one_asset.prices(2)) == [
            (provider_id, "a1", "10"),
            (provider_id, "a1", "11"),
        ]
        assert seen(await all_assets.prices(3)) == [
            (provider_id, "a1", "10"),
            (provider_id, "a2", "20"),
            (provider_id, "a1", "11"),
        ]
        assert seen(await other.prices(1)) == [(second_provider, "a1", "7")]
        assert seen(await repeated.prices(3)) == [
            (provider_id, "a1", "10"),
            (provider_id, "a2", "20"),
            (provider_id, "a1", "11"),
        ]
        # Nothing more is on its way to any of them: one last change each proves the order.
        await push(second_provider, [("a9", "1")])
        await push(provider_id, [("a1", "12")])
        assert seen(await other.prices(1)) == [(second_provider, "a9", "1")]
        assert seen(await one_asset.prices(1)) == [(provider_id, "a1", "12")]


async def test_an_older_or_repeated_tick_sends_nothing(
    pricing: Start, push: Push, provider_id: str
) -> None:
    client = await pricing()
    async with subscribe(client, f"provider_id={provider_id}") as stream:
        first = await push(provider_id, [("a1", "10")])
        await stream.prices(1)
        await push(provider_id, [("a1", "9")], as_of=first[0].payload.as_of.replace(year=2025))
        await push(provider_id, [("a1", "10")], as_of=first[0].payload.as_of)  # a duplicate
        await push(provider_id, [("a1", "13")])
        assert seen(await stream.prices(1)) == [(provider_id, "a1", "13")]


async def test_resume_replays_exactly_what_followed(
    pricing: Start, push: Push, provider_id: str
) -> None:
    client = await pricing()
    async with subscribe(client, f"provider_id={provider_id}") as stream:
        for amount in ("1", "2", "3"):
            await push(provider_id, [("a1", amount)])
        first = await stream.prices(3)
    for amount in ("4", "5"):
        await push(provider_id, [("a1", amount), ("b1", amount)])
    # Another replica (a second process on the same database and broker) resumes it.
    replica = await pricing()
    resume = {**reader_headers(), "Last-Event-ID": first[1].id or ""}
    async with subscribe(replica, f"provider_id={provider_id}&asset_id=a1", resume) as resumed:
        replayed = await resumed.prices(3)
        assert [e.json()["amount"] for e in replayed] == ["3", "4", "5"]
        assert replayed[0].id == first[2].id
        await push(provider_id, [("a1", "6")])
        live = await resumed.prices(1)
        assert live[0].json()["amount"] == "6"
        ids = [e.id for e in [*replayed, *live]]
        assert len(set(ids)) == 4
    # The very first id sent (nothing trimmed yet) resumes too.
    resume = {**reader_headers(), "Last-Event-ID": first[0].id or ""}
    async with subscribe(replica, f"provider_id={provider_id}&asset_id=a1", resume) as resumed:
        assert [e.json()["amount"] for e in await resumed.prices(4)] == ["2", "3", "4", "5"]


async def test_a_resume_point_older_than_the_log_gets_a_reset(
    pricing: Start, push: Push, provider_id: str, db: Database
) -> None:
    client = await pricing()
    await db.execute("UPDATE price_change_trim SET xid = 10, change_id = 5")
    headers = {**reader_headers(), "Last-Event-ID": "9-99"}
    async with subscribe(client, f"provider_id={provider_id}", headers) as stream:
        assert (await stream.next()).event == "reset"
        await push(provider_id, [("a1", "1")])
        assert seen(await stream.prices(1)) == [(provider_id, "a1", "1")]
    # The newest change removed: nothing after it is gone, so no reset (and no 400 either).
    headers = {**reader_headers(), "Last-Event-ID": "10-5"}
    async with subscribe(client, f"provider_id={provider_id}", headers) as stream:
        first = await stream.next()
        assert first.event == "price"
        assert first.json()["amount"] == "1"


async def test_changes_are_handed_out_in_commit_order(
    pricing: Start, provider_id: str, database_url: str
) -> None:
    """A transaction with a smaller id that commits later must not be skipped by a reader that
    already passed the later one's change: nothing is handed out until it has ended."""
    client = await pricing(stream_poll_seconds=0.2)
    insert = (
        "INSERT INTO price_changes (provider_id, asset_id, amount, currency, as_of, accepted_at)"
        " VALUES ($1, $2, $3, 'USD', now(), now())"
    )
    early, late = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with subscribe(client, f"provider_id={provider_id}") as stream:
            # Writers of the change log hold a price stripe lock (key space 2) while they write.
            slow = early.transaction()
            await slow.start()
            await early.execute("SELECT pg_advisory_xact_lock(2, 1)")
            await early.execute(insert, provider_id, "early", 1)  # the smaller transaction id
            async with late.transaction():  # commits first
                await late.execute("SELECT pg_advisory_xact_lock(2, 2)")
                await late.execute(insert, provider_id, "late", 2)
            with pytest.raises(TimeoutError):
                await stream.prices(1, timeout=1.5)
            await slow.commit()
            got = await stream.prices(2)
            assert [e.json()["asset_id"] for e in got] == ["early", "late"]
    finally:
        await early.close()
        await late.close()


async def test_fifty_subscribers_get_every_change_in_the_same_order(
    pricing: Start, push: Push, provider_id: str
) -> None:
    client = await pricing()
    responses = []
    for _ in range(50):
        response = await client.get(
            f"/v1/prices/stream?provider_id={provider_id}", headers=reader_headers()
        )
        assert response.status == 200
        responses.append(response)
    try:
        for i in range(5):
            await push(provider_id, [(f"a{j}", str(10 + i)) for j in range(4)])
        received = await asyncio.gather(*(SseReader(r).prices(20) for r in responses))
        ids = [[e.id for e in events] for events in received]
        assert all(these == ids[0] for these in ids)
        assert len(set(ids[0])) == 20
    finally:
        for response in responses:
            response.close()


async def test_keep_alive_comments_and_the_token_in_the_query(
    pricing: Start, provider_id: str
) -> None:
    client = await pricing(stream_keepalive_seconds=0.3)
    query = f"provider_id={provider_id}&access_token={reader_headers()['Authorization'][7:]}"
    async with subscribe(client, query, headers={}) as stream:
        event = await stream.next(timeout=5)
        assert event.event == "comment" and event.comments == ["keep-alive"]


async def test_a_revoked_token_ends_the_streams_it_opened(
    pricing: Start, push: Push, provider_id: str, db: Database
) -> None:
    client = await pricing(auth_cache_seconds=0.5, stream_keepalive_seconds=0.2)
    async with subscribe(client, f"provider_id={provider_id}") as stream:
        await push(provider_id, [("a1", "1")])
        assert seen(await stream.prices(1)) == [(provider_id, "a1", "1")]
        await db.execute("UPDATE readers SET revoked_at = now()")
        events = [await stream.next(timeout=10)]
        while events[-1].event != "close":  # keep-alives until the check (every 0.5 s) bites
            assert len(events) < 50, "the revoked token's stream went on"
            events.append(await stream.next(timeout=10))
        assert events[-1].json() == {"reason": "unauthorized"}
        assert [e.event for e in events[:-1]] == ["comment"] * (len(events) - 1)
        with pytest.raises(EOFError):
            await stream.next(timeout=10)


async def test_a_disabled_provider_ends_the_streams_of_its_prices(
    pricing: Start, push: Push, provider_id: str, db: Database
) -> None:
    """Disabling a provider stops its prices being served: open streams end too
    (`provider_disabled`), as new requests get a 404."""
    client = await pricing(auth_cache_seconds=0.5, stream_keepalive_seconds=0.2)
    async with subscribe(client, f"provider_id={provider_id}") as stream:
        await push(provider_id, [("a1", "1")])
        assert seen(await stream.prices(1)) == [(provider_id, "a1", "1")]
        await db.execute("UPDATE providers SET disabled = true WHERE provider_id = $1", provider_id)
        events = [await stream.next(timeout=10)]
        while events[-1].event != "close":
            assert len(events) < 50, "the disabled provider's stream went on"
            events.append(await stream.next(timeout=10))
        assert events[-1].json() == {"reason": "provider_disabled"}
        with pytest.raises(EOFError):
            await stream.next(timeout=10)


async def test_a_slow_subscriber_is_closed_and_the_others_get_everything(
    pricing: Start, push: Push, provider_id: str
) -> None:
    client = await pricing(stream_queue_size=128, stream_send_buffer_bytes=4096)
    port = client.server.port
    assert port is not None
    # A subscriber that reads its headers and then nothing, with a tiny receive window.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    slow_reader, slow_writer = await asyncio.open_connection(sock=sock, limit=4096)
    slow_writer.write(
        f"GET /v1/prices/stream?provider_id={provider_id} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {reader_headers()['Authorization']}\r\n\r\n".encode()
    )
    assert (await slow_reader.readline()).startswith(b"HTTP/1.1 200")

    async def slow_ones() -> float:
        text = await (await client.get("/metrics")).text()
        line = next(x for x in text.splitlines() if x.startswith("rwasync_price_stream_slow_total"))
        return float(line.split()[-1])

    dropped_before = await slow_ones()
    async with subscribe(client, f"provider_id={provider_id}") as fast:
        # Push until the stalled one overflows. Its small send buffer makes that soon: ~1,000
        # changes here, against ~14,500 when the kernel sized the buffer (up to 4 MiB).
        pushed = 0
        while await slow_ones() == dropped_before:
            assert pushed < 4_000, "the stalled subscriber was not dropped soon (send buffer?)"
            await push(provider_id, [(f"a{i}", str(pushed + 1)) for i in range(500)])
            pushed += 500
            received = await fast.prices(500, timeout=120)
            assert {e.json()["amount"] for e in received} == {str(pushed - 499)}
        assert await slow_ones() == dropped_before + 1

    tail = await asyncio.wait_for(slow_reader.read(), timeout=60)  # to the end of the stream
    slow_writer.close()
    # The last chunk, then the end of the chunked body.
    assert tail.endswith(b'event: close\ndata: {"reason":"slow_consumer"}\n\n\r\n0\r\n\r\n')


async def test_only_reader_tokens_read_and_stream(
    pricing: Start, db: Database, provider_id: str
) -> None:
    client = await pricing(auth_failures_per_minute=1000)  # 28 refusals from one client
    credential = issue_provider_credential()
    await db.execute(
        "INSERT INTO provider_credentials (key_id, provider_id, secret_digest, token_digest)"
        " VALUES ($1, $2, $3, $4)",
        credential.key_id,
        provider_id,
        credential.secret_digest,
        credential.token_digest,
    )
    basic = base64.b64encode(f"{credential.key_id}:{credential.secret}".encode()).decode()
    refused: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer rwr_unknown"},
        {"Authorization": f"Bearer {credential.token}"},
        {"Authorization": f"Basic {basic}"},
    ]
    paths = [
        f"/v1/prices/{provider_id}/a1",
        f"/v1/prices?provider_id={provider_id}&asset_id=a1",
        f"/v1/prices/{provider_id}/a1/history",
        f"/v1/prices/{provider_id}/a1/ohlc?interval=1h",
        f"/v1/prices/stream?provider_id={provider_id}",
        f"/v1/prices/stream?provider_id={provider_id}&access_token={credential.token}",
        f"/v1/prices/stream?provider_id={provider_id}&access_token=rwr_unknown",
    ]
    for path in paths:
        for headers in refused:
            response = await client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.content_type == "application/problem+json"
            # A provider's token is told which kind reads (it read "invalid credentials").
            used = headers.get("Authorization", path)  # the header counts over ?access_token=
            wrong_kind = used.endswith(credential.token) and "Basic" not in used
            detail = (await response.json())["detail"]
            assert ("use a reader token" in detail) is wrong_kind, (path, headers, detail)


async def test_two_authorization_headers_are_a_400_on_every_read(
    pricing: Start, provider_id: str
) -> None:
    """The stream read its header itself and served the first of two (review): every read
    refuses them, as ingest-api does."""
    client = await pricing()
    good = reader_headers()["Authorization"]
    for path in (
        f"/v1/prices/{provider_id}/a1",
        f"/v1/prices/stream?provider_id={provider_id}",
    ):
        for second in (good, "Bearer rwr_unknown"):
            headers = CIMultiDict([("Authorization", good), ("Authorization", second)])
            response = await client.get(path, headers=headers)
            assert response.status == 400, path  # (a served stream has no end to read)
            assert response.content_type == "application/problem+json"
            assert "more than one Authorization header" in await response.text()


async def test_stream_parameters_are_checked(pricing: Start, provider_id: str) -> None:
    client = await pricing()
    cases: dict[str, tuple[int, str, str]] = {
        "": (400, "provider_id", "is required"),
        "provider_id=": (400, "provider_id", "must not be empty"),
        "provider_id=prv_nobody": (404, "", ""),
        f"provider_id={provider_id}&asset_id=a,b%20c": (400, "asset_id", ""),
        # present but empty is not "every asset": an empty watch list must not get everything
        # (the answer said `asset_id: is required`, of a parameter that was there)
        f"provider_id={provider_id}&asset_id=": (400, "asset_id", "must not be empty"),
        f"provider_id={provider_id}&asset_id=a1&asset_id=": (400, "asset_id", ""),
    }
    for query, (status, parameter, message) in cases.items():
        response = await client.get(f"/v1/prices/stream?{query}", headers=reader_headers())
        assert response.status == status, query
        body: dict[str, Any] = await response.json()
        if parameter:
            assert body["errors"][0]["parameter"] == parameter
        if message:
            assert body["errors"][0]["message"] == message, body
            assert body["detail"] == f"{parameter}: {message}"
    # Malformed, or well formed but never sent (nothing was ever trimmed: it is not an old one).
    # `0-0` is the trim point before anything was trimmed: it used to replay the whole log.
    for bad_id in ("yesterday", "1-1", f"{2**62}-1", "0-0", "0-7", "7-0", "01-1"):
        headers = {**reader_headers(), "Last-Event-ID": bad_id}
        response = await client.get(f"/v1/prices/stream?provider_id={provider_id}", headers=headers)
        assert response.status == 400, bad_id
        body = await response.json()
        assert body["errors"] == [
            {
                "parameter": "Last-Event-ID",
                "message": f"'{bad_id}' is not an event id of this stream",
            }
        ]


async def test_head_answers_the_streams_head_and_subscribes_nothing(
    pricing: Start, provider_id: str
) -> None:
    """A HEAD subscribed as a GET does, and stayed counted while its client kept the connection
    open (until the next keep-alive write)."""
    client = await pricing()
    assert client.port is not None
    token = reader_headers()["Authorization"]
    held = []
    for _ in range(3):  # clients that keep their connections open after the answer
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            f"HEAD /v1/prices/stream?provider_id={provider_id} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        held.append(writer)
    try:
        metrics = await (await client.get("/metrics")).text()
        assert "rwasync_price_stream_subscribers 0.0" in metrics
    finally:
        for writer in held:
            writer.close()
    # checked as a GET is: an unknown provider is a 404
    response = await client.head(
        "/v1/prices/stream?provider_id=prv_nobody", headers=reader_headers()
    )
    assert response.status == 404


async def test_one_broker_queue_per_process_whatever_the_subscribers(
    pricing: Start, provider_id: str, vhost_amqp_url: str
) -> None:
    """Subscribers are fanned out in memory: the broker sees one change queue per process."""
    client = await pricing()

    async def change_queues() -> int:
        vhost = vhost_amqp_url.rsplit("/", 1)[1]
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "name",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return sum(1 for line in out.decode().split() if ".pricing.changes." in line)

    async with (
        subscribe(client, f"provider_id={provider_id}"),
        subscribe(client, f"provider_id={provider_id}&asset_id=a1"),
        subscribe(client, f"provider_id={provider_id}"),
    ):
        assert await change_queues() == 1


async def test_a_stopping_service_closes_its_streams_at_once(
    pricing: Start, provider_id: str
) -> None:
    """An open stream used to hold pricing's shutdown (SIGTERM) until its timeout and beyond: the
    service now tells each subscriber it is shutting down and ends the stream, so the client
    reconnects, with `Last-Event-ID`, to a replica still running."""
    client = await pricing()
    async with subscribe(client, f"provider_id={provider_id}") as stream:
        await client.app.shutdown()  # what SIGTERM runs before waiting for requests in flight
        event = await stream.next(timeout=5)
        assert event.event == "close"
        assert event.json() == {"reason": "shutting_down"}

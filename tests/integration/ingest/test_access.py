"""Who may call and how often, through the real service: partner credentials acting for the
providers they were granted (`X-Tenant-Id`), the per-client limit on failed authentications,
each provider's request rate, and a body that does not arrive in time."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from rwasync.schema.messages import decode_message
from rwasync.store.tenants import issue_provider_credential, new_id
from tests.integration.ingest.conftest import (
    Provider,
    Queues,
    create_provider,
    ingest_settings,
    readiness,
    serve,
)
from tests.integration.ingest.helpers import JSON, Client, accepted_event_id, house, problem
from tests.support.tcpproxy import TcpProxy, proxied
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def create_partner(store: Database, *providers: Provider) -> Provider:
    """A partner credential granted `providers` (its provider_id is the partner's id)."""
    partner_id = new_id("ptn")
    credential = issue_provider_credential()
    await store.execute("INSERT INTO partners (partner_id, name) VALUES ($1, 'Reach')", partner_id)
    for provider in providers:
        await store.execute(
            "INSERT INTO partner_providers (partner_id, provider_id) VALUES ($1, $2)",
            partner_id,
            provider.provider_id,
        )
    await store.execute(
        """INSERT INTO provider_credentials (key_id, partner_id, secret_digest, token_digest)
           VALUES ($1, $2, $3, $4)""",
        credential.key_id,
        partner_id,
        credential.secret_digest,
        credential.token_digest,
    )
    return Provider(partner_id, credential.key_id, credential.secret, credential.token)


def tenant(provider: Provider) -> dict[str, str]:
    return {"X-Tenant-Id": provider.provider_id}


async def test_a_partner_acts_for_each_granted_provider_by_x_tenant_id(
    ingest: Client, queues: Queues, store: Database
) -> None:
    first, second, stranger = [await create_provider(store) for _ in range(3)]
    partner = await create_partner(store, first, second)
    for provider, headers in ((first, partner.basic), (second, partner.bearer)):
        response = await ingest.put(
            "/v1/assets/p-1",
            data=json.dumps(house("p-1")),
            headers={**JSON, **headers, **tenant(provider)},
        )
        await accepted_event_id(response)
        (event,) = decode_message((await queues.next(queues.assets)).body).events
        assert event.provider_id == provider.provider_id

    # Not naming one, or naming none (an empty header: push trial, was a 401), is a 400.
    for named in ({}, {"X-Tenant-Id": ""}, {"X-Tenant-Id": " "}):
        response = await ingest.get("/v1/assets?limit=1", headers={**partner.bearer, **named})
        body = await problem(response, 400)
        assert "X-Tenant-Id" in body["detail"] and body["type"].endswith("tenant-required")
    # An empty one is a 400 for a provider's own credential too (a hostile trial: it was served
    # as if absent, while a partner's was refused), before any write or read.
    for named in ({"X-Tenant-Id": ""}, {"X-Tenant-Id": " \t"}):
        for method, path, data in (
            ("GET", "/v1/assets?limit=1", None),
            ("PUT", "/v1/assets/p-0", json.dumps(house("p-0"))),
        ):
            response = await ingest.request(
                method, path, data=data, headers={**JSON, **first.bearer, **named}
            )
            body = await problem(response, 400)
            assert body["type"].endswith("tenant-required"), body
            assert "X-Tenant-Id header is empty" in body["detail"], body
    assert await queues.depth(queues.assets) == 0
    for headers in (tenant(stranger), {"X-Tenant-Id": "prv_unknown"}):
        await problem(await ingest.get("/v1/assets", headers={**partner.basic, **headers}), 401)
    # A provider's own credential may name itself, and nobody else.
    response = await ingest.get("/v1/assets", headers={**first.basic, **tenant(first)})
    assert response.status == 200
    await problem(await ingest.get("/v1/assets", headers={**first.basic, **tenant(second)}), 401)
    # A disabled provider drops out of the partner's reach; a disabled partner is refused.
    await store.execute(
        "UPDATE providers SET disabled = true WHERE provider_id = $1", second.key_id
    )
    other = await create_partner(store, first)
    await store.execute(
        "UPDATE partners SET disabled = true WHERE partner_id = $1", other.provider_id
    )
    await problem(await ingest.get("/v1/assets", headers={**other.basic, **tenant(first)}), 401)


async def test_two_x_tenant_id_headers_are_a_400(
    ingest: Client, queues: Queues, store: Database
) -> None:
    """Which provider a partner acts for must not depend on who reads the headers: two
    X-Tenant-Id headers are refused as two Authorization headers are (they were served as the
    first one's, user trial), even when both name the same provider."""
    first, second = [await create_provider(store) for _ in range(2)]
    partner = await create_partner(store, first, second)
    for other in (second, first):
        request = (
            "PUT /v1/assets/p-2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            f"Authorization: {partner.bearer['Authorization']}\r\n"
            f"X-Tenant-Id: {first.provider_id}\r\nX-Tenant-Id: {other.provider_id}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        body = json.dumps(house("p-2")).encode()
        request += f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        status, headers, answer = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        assert status == 400, answer
        assert headers["content-type"] == "application/problem+json"
        assert b"more than one X-Tenant-Id header" in answer
    assert await queues.depth(queues.assets) == 0


@pytest.fixture
async def strict(database_url: str, vhost_amqp_url: str) -> AsyncIterator[tuple[Client, Database]]:
    """A service with a 3-a-minute failed-authentication limit and a 0.5 s body deadline."""
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    settings = ingest_settings(
        database_url, vhost_amqp_url, auth_failures_per_minute=3, body_timeout=0.5
    )
    client = await serve(create_app(settings))
    try:
        await eventually(lambda: readiness(client), lambda body: body["status"] == "ready")
        yield client, db
    finally:
        await client.close()
        await db.close()


async def test_a_client_failing_authentication_too_often_gets_429(
    strict: tuple[Client, Database],
) -> None:
    client, db = strict
    provider = await create_provider(db)
    for _ in range(3):
        await problem(await client.get("/v1/assets", headers={"Authorization": "Bearer nope"}), 401)
    for headers in ({"Authorization": "Bearer nope"}, provider.bearer):
        response = await client.get("/v1/assets", headers=headers)
        await problem(response, 429)
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Public calls are not affected.
    assert (await client.get("/v1/openapi.json")).status == 200


async def test_a_good_caller_behind_a_guessing_address_keeps_working(
    strict: tuple[Client, Database],
) -> None:
    client, db = strict
    provider = await create_provider(db)
    assert (await client.get("/v1/assets", headers=provider.bearer)).status == 200
    for _ in range(4):  # the same address (one NAT) guesses past its limit
        await client.get("/v1/assets", headers={"Authorization": "Bearer guess"})
    await problem(await client.get("/v1/assets", headers={"Authorization": "Bearer nope"}), 429)
    # Its credential was verified here before: it is not the one guessing.
    for _ in range(3):
        assert (await client.get("/v1/assets", headers=provider.bearer)).status == 200


async def test_behind_a_trusted_proxy_failures_count_against_the_forwarded_client(
    ingest_database_url: str, ingest_amqp_url: str, store: Database
) -> None:
    """Behind the compose gateway (or an ingress) every request's peer is the proxy: counted by
    peer, one client's 3 failures got every client a 429, including a new provider whose
    credential this process had never verified (review). With the proxy trusted
    (`RWASYNC_TRUSTED_PROXIES`), the client `X-Forwarded-For` names counts; an address the
    client wrote into the header itself, before the proxy's, is never taken."""
    settings = ingest_settings(
        ingest_database_url,
        ingest_amqp_url,
        auth_failures_per_minute=3,
        RWASYNC_TRUSTED_PROXIES="127.0.0.0/8",
    )
    client = await serve(create_app(settings))
    try:
        await eventually(lambda: readiness(client), lambda body: body["status"] == "ready")
        provider = await create_provider(store)
        guesser = {"Authorization": "Bearer nope", "X-Forwarded-For": "203.0.113.7"}
        for _ in range(3):
            await problem(await client.get("/v1/assets", headers=guesser), 401)
        await problem(await client.get("/v1/assets", headers=guesser), 429)
        # Forging an earlier hop does not make the guesser someone else.
        forged = {**guesser, "X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        await problem(await client.get("/v1/assets", headers=forged), 429)
        # Another client behind the same proxy is not locked out.
        other = {**provider.bearer, "X-Forwarded-For": "198.51.100.9"}
        assert (await client.get("/v1/assets", headers=other)).status == 200
    finally:
        await client.close()


async def test_a_provider_over_its_rate_gets_429(ingest: Client, store: Database) -> None:
    provider = await create_provider(store)
    await store.execute(
        "UPDATE providers SET rate_per_second = 0.5, rate_burst = 2 WHERE provider_id = $1",
        provider.provider_id,
    )
    statuses = [(await ingest.get("/v1/assets", headers=provider.basic)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = await ingest.get("/v1/assets", headers=provider.basic)
    await problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1
    # Other providers have their own buckets.
    other = await create_provider(store)
    assert (await ingest.get("/v1/assets", headers=other.basic)).status == 200


async def test_a_vanishing_rate_stored_before_the_cli_bounded_it_is_a_429_not_a_500(
    ingest: Client, store: Database
) -> None:
    provider = await create_provider(store)
    await store.execute(
        "UPDATE providers SET rate_per_second = 5e-324, rate_burst = 1 WHERE provider_id = $1",
        provider.provider_id,
    )
    assert (await ingest.get("/v1/assets", headers=provider.basic)).status == 200
    response = await ingest.get("/v1/assets", headers=provider.basic)
    await problem(response, 429)
    assert response.headers["Retry-After"] == "3600"


async def test_a_body_that_does_not_arrive_in_time_is_408(
    strict: tuple[Client, Database],
) -> None:
    client, db = strict
    provider = await create_provider(db)
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    head = (
        "PUT /v1/assets/slow-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {provider.bearer['Authorization']}\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"id": "slow-1", ')
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
    finally:
        writer.close()
    # The service goes on serving others meanwhile and after.
    assert (await client.get("/healthz")).status == 200


async def test_a_body_whose_chunks_break_off_mid_way_is_400_at_once(
    ingest: Client, store: Database
) -> None:
    """aiohttp drops such a body without telling the handler reading it, which waited for the
    rest until its 30 s deadline and answered 408."""
    provider = await create_provider(store)
    assert ingest.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
    head = (
        "PUT /v1/assets/chunky-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {provider.bearer['Authorization']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    try:
        writer.write(head.encode() + b'2\r\n{"\r\n')
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body by now
        writer.write(b"zz\r\n}\r\n0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 400 "), answer
    assert b"application/problem+json" in head_bytes
    detail = json.loads(body)["detail"]
    assert detail == "the request is not valid HTTP/1.1: Invalid character in chunk size", detail
    response = await ingest.get("/v1/assets/chunky-1", headers=provider.bearer)
    assert response.status == 404


SECRET = "rws_malformed_0123456789abcdef"


async def raw_answer(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send bytes as they are and read the answer up to the close the server forces: its status
    line, headers (by lowercase name) and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line, headers, body


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    status_line, headers, body = await raw_answer(port, request)
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "detail"),
    [
        (
            f"GET /v1/assets HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n",
            "not valid HTTP/1.1",
        ),
        (
            f"GET /v1/assets HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {SECRET}{'x' * 9000}"
            "\r\n\r\n",
            "longer than 8190 bytes",
        ),
        (
            f"GET /v1/assets?access_token={SECRET}\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            "not valid HTTP/1.1",
        ),
        (  # aiohttp's words for a bad target are the target itself
            f"GET http://[::1/?access_token={SECRET} HTTP/1.1\r\nHost: a\r\n\r\n",
            "the request target is not a valid URL",
        ),
        (f"CONNECT {SECRET}@:x HTTP/1.1\r\nHost: a\r\n\r\n", "not valid HTTP/1.1"),
        (
            f"PUT /v1/assets/a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {SECRET}\r\n"
            "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            "not valid HTTP/1.1",
        ),
        (
            f"PUT /v1/assets/a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {SECRET}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "not valid HTTP/1.1",
        ),
        (
            f"PUT /v1/assets/a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {SECRET}\r\n"
            "Content-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
            "Content-Encoding",
        ),
    ],
)
async def test_malformed_http_is_a_problem_and_no_log_line_quotes_it(
    ingest: Client, caplog: pytest.LogCaptureFixture, request_bytes: str, detail: str
) -> None:
    """aiohttp refuses these before any handler runs; its own answer was text/plain echoing the
    request, and its log line's traceback quoted the header or URL, credentials included."""
    assert ingest.port is not None
    with capture_logs() as logged:
        status, headers, body = await raw_exchange(ingest.port, request_bytes.encode("latin-1"))
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    answer = json.loads(body)
    assert answer["type"].endswith("/malformed-request") and detail in answer["detail"], answer
    assert SECRET not in body.decode("latin-1")
    assert SECRET not in caplog.text and SECRET not in repr(logged)
    assert [e["event"] for e in logged if e["log_level"] == "warning"] == [
        "malformed request refused"
    ]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"PUT /v1/assets/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
        b"PUT /v1/assets/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
async def test_a_request_refused_before_any_handler_has_a_trace_id_and_an_http_11_answer(
    ingest: Client, request_bytes: bytes
) -> None:
    """docs/api.md 1.2: every answer names its trace in `X-Trace-Id`, the one its log line
    carries. aiohttp's refusals (answered in `handle_error`, outside the middleware) had none,
    and came as HTTP/1.0: aiohttp answers its ERROR pseudo-request, which says 1.0."""
    assert ingest.port is not None
    with capture_logs() as logged:
        status_line, headers, body = await raw_answer(ingest.port, request_bytes)
    assert status_line.startswith("HTTP/1.1 400 "), status_line
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["type"].endswith("/malformed-request")
    trace_id = headers["x-trace-id"]
    assert len(trace_id) == 32 and int(trace_id, 16) >= 0
    refused = [e for e in logged if e["event"] == "malformed request refused"]
    assert [e["trace_id"] for e in refused] == [trace_id]


async def test_an_authorization_header_that_is_not_utf8_is_a_401_not_a_500(
    ingest: Client,
) -> None:
    """aiohttp hands header bytes that are not UTF-8 over as surrogate escapes; the credential
    cache key (`platform.auth._digest`) encodes the header as UTF-8 and raised
    UnicodeEncodeError: a 500 and an error-level traceback, before the per-client failure count."""
    for header in (b"Bearer \xff\xfe", b"Basic \xe9t\xe9", b"Bearer rwp_\xe9"):
        request = (
            b"GET /v1/assets HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: "
            + header
            + b"\r\n\r\n"
        )
        with capture_logs() as logged:
            status, headers, body = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        assert status == 401, (header, body)
        assert headers["www-authenticate"], header
        assert not [e for e in logged if e["log_level"] == "error"], logged


async def test_a_gzip_body_that_does_not_decompress_is_a_400_not_a_500(
    ingest: Client, provider: Provider, queues: Queues
) -> None:
    """docs/api.md 2.6: a body that cannot be decoded is a 400 (`malformed-request`). A body
    declared `Content-Encoding: gzip` that is not gzip made aiohttp raise RequestPayloadError
    from `bodies.read_body`, which nothing caught: a 500."""
    for encoding, body in (
        ("gzip", b"not gzip at all"),
        ("deflate", b"not deflate"),
        ("gzip", gzip.compress(json.dumps(house("gz-1")).encode())[:-12]),  # truncated
    ):
        request = (
            f"PUT /v1/assets/gz-1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            f"Authorization: {provider.bearer['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Encoding: {encoding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        status, headers, answer = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        assert status == 400, (encoding, answer)
        assert headers["content-type"] == "application/problem+json"
    assert await queues.depth(queues.assets) == 0


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Encoding: foo",
        "Content-Encoding: x-gzip",
        "Content-Encoding: compress",
        "Content-Encoding: gzip, identity",
        "Content-Encoding: identity\r\nContent-Encoding: gzip",
        "Transfer-Encoding: foo, chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ],
)
async def test_a_body_coding_aiohttp_would_pass_through_is_a_400_before_authentication(
    ingest: Client, provider: Provider, queues: Queues, framing: str
) -> None:
    """aiohttp decodes only gzip and deflate and takes any other Content-Encoding (a list of
    them too) as none, and reads `foo, chunked` as chunked: such bodies were accepted as sent
    (a 202, the asset stored) or read garbled (hostile trial). Refused before authentication,
    with or without credentials, and nothing is published."""
    body = json.dumps(house("ce-1")).encode()
    if "Transfer-Encoding" in framing:
        framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        framing += f"\r\nContent-Length: {len(body)}"
        framed = body
    for credentials in (f"Authorization: {provider.bearer['Authorization']}\r\n", ""):
        request = (
            "PUT /v1/assets/ce-1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            f"{credentials}Content-Type: application/json\r\n{framing}\r\n\r\n"
        ).encode() + framed
        status, headers, answer = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        assert status == 400, (framing, answer)
        assert headers["content-type"] == "application/problem+json"
        detail = json.loads(answer)["detail"]
        assert detail.startswith("the request is not valid HTTP/1.1: "), detail
        assert ("Content-Encoding" if "Content" in framing else "Transfer-Encoding") in detail
    # the codings served still are
    for coding in ("identity", "IDENTITY", "gzip"):
        data = gzip.compress(body) if coding == "gzip" else body
        response = await ingest.put(
            "/v1/assets/ce-1",
            data=data,
            headers={**JSON, **provider.bearer, "Content-Encoding": coding},
        )
        await accepted_event_id(response)
    assert await queues.depth(queues.assets) == 3


async def test_an_unread_body_that_does_not_decode_logs_no_error(
    ingest: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A body answered before it was read (here a 401) is drained after the answer; one that
    does not decode as its Content-Encoding says was logged by aiohttp as an error-level
    "Unhandled exception" with its tracebacks: any client could flood the log (security
    trial). One warning line now, and the answer is the 401."""
    request = (
        b"PUT /v1/assets/q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n"
        b"\r\n[]"
    )
    with capture_logs() as logged:
        status, _, _ = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)  # the drain runs after the answer
    assert status == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records
    assert [e["event"] for e in logged if e["log_level"] in ("error", "critical")] == []
    assert "request body could not be read after the answer; connection closed" in [
        e["event"] for e in logged
    ]


async def test_two_authorization_headers_are_a_400(ingest: Client, provider: Provider) -> None:
    """Which of two credentials counts would depend on who reads them (a proxy, the service):
    the request is refused as two Content-Lengths are. It was served as the first one's
    (push trial)."""
    for second in (provider.bearer["Authorization"], "Bearer rwp_bogus"):
        request = (
            "GET /v1/assets HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            f"Authorization: {provider.bearer['Authorization']}\r\n"
            f"Authorization: {second}\r\n\r\n"
        ).encode()
        status, headers, body = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
        assert status == 400, body
        assert headers["content-type"] == "application/problem+json"
        assert b"more than one Authorization header" in body


@pytest.mark.parametrize("target", ["127.0.0.1:443", "/v1/assets"])
async def test_a_connect_request_is_a_400_saying_the_service_is_no_proxy(
    ingest: Client, target: str
) -> None:
    """aiohttp reads a CONNECT target as an authority: the router answered 404 with an empty
    path, "no such resource: " (hostile trial)."""
    assert ingest.port is not None
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    status, headers, body = await raw_exchange(ingest.port, request.encode())
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    answer = json.loads(body)
    assert answer["type"].endswith("/malformed-request"), answer
    assert answer["detail"] == (
        "CONNECT is not served: this service is no proxy; send requests to a path such as "
        "/v1/assets"
    )


@pytest.fixture
async def tight(
    database_url: str, vhost_amqp_url: str
) -> AsyncIterator[tuple[Client, Database, TcpProxy]]:
    """A service whose batch bodies may hold 64 KiB at once (and be at most that), with a 1 s
    body deadline and a 3 s publish timeout, its broker behind a proxy the test can stall."""
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    async with proxied(vhost_amqp_url) as (proxy, amqp_url):
        settings = ingest_settings(
            database_url,
            amqp_url,
            body_bytes_at_once=64 * 1024,
            max_batch_body_bytes=64 * 1024,
            body_timeout=1.0,
            publish_timeout=3.0,
        )
        client = await serve(create_app(settings))
        try:
            await eventually(lambda: readiness(client), lambda body: body["status"] == "ready")
            yield client, db, proxy
        finally:
            proxy.resume()
            await client.close()
            await db.close()


def _large_house(asset_id: str) -> dict[str, Any]:
    """An asset of about 40 KiB: two of them do not fit in 64 KiB at once."""
    return {**house(asset_id), "attributes": {f"k{n}": "x" * 1000 for n in range(40)}}


def _batch(asset_id: str) -> str:
    return json.dumps({"assets": [_large_house(asset_id)]})


async def test_single_item_bodies_take_none_of_the_batch_budget(
    tight: tuple[Client, Database, TcpProxy],
) -> None:
    """Bodies of single-item calls, slow or not, leave the budget to batches (and a batch's
    body takes its declared size, not its limit): a batch goes through at once beside them."""
    client, db, _ = tight
    provider = await create_provider(db)
    assert client.port is not None
    stalled = []
    try:
        for _n in range(3):  # chunked: as batches, each would take its whole limit
            _reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(
                (
                    f"PUT /v1/assets/slow-{_n} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\n"
                    f"Authorization: {provider.bearer['Authorization']}\r\n"
                    'Transfer-Encoding: chunked\r\n\r\n2\r\n{"\r\n'
                ).encode()
            )
            await writer.drain()
            stalled.append(writer)
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        response = await client.post(
            "/v1/assets/batch", data=_batch("quick-1"), headers={**JSON, **provider.bearer}
        )
        assert response.status == 202, await response.text()
        assert asyncio.get_running_loop().time() - started < 0.9
    finally:
        for writer in stalled:
            writer.close()


async def test_batch_bodies_beyond_the_memory_budget_wait_then_get_503(
    tight: tuple[Client, Database, TcpProxy],
) -> None:
    """Three 16 MiB batches at once took a process past its container's 512 MiB (deployment
    trial). A batch body is not read while others hold the budget, within its deadline;
    then it is a 503 with Retry-After, and the budget is whole again once the holders are done.
    A single-item call takes none of it: it never queues behind batches (a provider's batches
    made another's pushes wait 23-29 s, hostile trial). Here a holder is a batch waiting on a
    broker that stalls."""
    client, db, proxy = tight
    provider = await create_provider(db)
    headers = {**JSON, **provider.bearer}
    proxy.pause()
    holding = asyncio.create_task(
        client.post("/v1/assets/batch", data=_batch("big-1"), headers=headers)
    )
    await asyncio.sleep(0.5)  # read, and waiting for its confirm with 40 KiB held
    started = asyncio.get_running_loop().time()
    response = await client.post("/v1/assets/batch", data=_batch("big-2"), headers=headers)
    waited = asyncio.get_running_loop().time() - started
    body = await problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "as many request bodies as its memory allows" in body["detail"], body
    assert 0.9 <= waited < 2.5, waited
    # A single push is no batch: it goes straight to the (stalled) broker, and fails there.
    single = await client.put(
        "/v1/assets/big-3", data=json.dumps(_large_house("big-3")), headers=headers
    )
    assert "could not be stored durably" in (await problem(single, 503))["detail"]
    held = await holding
    assert "could not be stored durably" in (await problem(held, 503))["detail"]
    proxy.resume()
    await eventually(lambda: readiness(client), lambda body: body["status"] == "ready")
    response = await client.post("/v1/assets/batch", data=_batch("big-2"), headers=headers)
    assert response.status == 202, await response.text()


async def test_a_charset_with_a_byte_beyond_ascii_is_a_415(ingest: Client, store: Database) -> None:
    """The refusal quoted the charset, whose non-ASCII byte came as a surrogate no JSON answer
    can carry: a 500 (hostile trial)."""
    provider = await create_provider(store)
    body = json.dumps(house("cs-1")).encode()
    request = (
        b"PUT /v1/assets/cs-1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        + f"Authorization: {provider.bearer['Authorization']}\r\n".encode()
        + b"Content-Type: application/json; charset=utf-8\xa0\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status, headers, answer = await raw_exchange(ingest.port, request)  # type: ignore[arg-type]
    assert status == 415, answer
    assert headers["content-type"] == "application/problem+json"
    assert "utf-8\\\\xa0" in answer.decode() or "utf-8\\\\udca0" in answer.decode(), answer

"""Hostile clients against the real running services: JSON bombs, a gzip bomb at feed fetch,
slow-loris clients on both HTTP services, guessed credentials, feed URLs aimed inside the network,
and — over all of it — no secret in any service's log.

The gzip bomb, SSRF and slow-loris scenarios take 10-20 s each and run with `make test-slow`
(`-m slow`); the rest are in the default suite. The services run on their own (database, vhost,
logs) with short deadlines so the defences show within seconds: a 2 s idle timeout (the request
head must be complete by then), a 1 s body deadline, 5 failed authentications a minute, a 64 MiB
decoded-feed cap, feeds allowed only to 127.0.0.2 (so that 127.0.0.1 and `localhost` stand for
the inside of the network), and DEBUG logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from tests.e2e.conftest import own_system
from tests.e2e.test_flows import now
from tests.support.events import asset_doc
from tests.support.infra import Infra, unique_name
from tests.support.system import System, free_port, http_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MIB = 1024 * 1024
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT = 1.0
AUTH_FAILURES = 5
DECODED_CAP = 64 * MIB
FEED_HOST = "127.0.0.2"  # the only address feeds may reach here
GUESSER = "127.0.0.3"  # where the credential guessing comes from
FEED_TOKEN = "feed-bearer-" + "s3cr3t-" * 3
FEED_QUERY_TOKEN = "qk-" + "9f8e7d6c5b4a" * 2
FEED_PASSWORD = "pw-" + "0a1b2c3d" * 3
PROBLEM = "application/problem+json"


@dataclass
class Secrets:
    """Every secret the tests present, to look for in the logs at the end."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


@pytest.fixture(scope="module")
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="module")
def hostile_system(
    test_infra: Infra, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {
        "RWASYNC_LOG_LEVEL": "DEBUG",
        "RWASYNC_FEED_ALLOWED_NETWORKS": f"{FEED_HOST}/32",
        "RWASYNC_FEED_SECRETS_KEY": Fernet.generate_key().decode(),
        "RWASYNC_FEED_POLLER_MAX_DECODED_BYTES": str(DECODED_CAP),
        "RWASYNC_FEED_POLLER_RETRY_DELAY": "0.2",
        "RWASYNC_INGEST_HTTP_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "RWASYNC_PRICING_HTTP_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "RWASYNC_INGEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "RWASYNC_INGEST_AUTH_FAILURES_PER_MINUTE": str(AUTH_FAILURES),
        "RWASYNC_PRICING_AUTH_FAILURES_PER_MINUTE": str(AUTH_FAILURES),
        # Read by the CLI's --auth-secret-env when the feed with credentials is added.
        "HOSTILE_FEED_TOKEN": FEED_TOKEN,
    }
    workdir = Path(tmp_path_factory.mktemp("hostile"))
    with own_system(test_infra, template_database, workdir, env) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(hostile_system: System, secrets: Secrets) -> dict[str, str]:
    _, provider = hostile_system.cli("provider", "create", unique_name("Hostile"), "--json")
    _, reader = hostile_system.cli("reader", "create", unique_name("Portal"), "--json")
    secrets.add(provider["secret"], provider["token"], reader["token"])
    return {**provider, "reader_token": reader["token"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def cli(system: System, *args: str) -> tuple[int, dict[str, Any]]:
    # In a thread: the feed hosts a run fetches from are served by this test's event loop.
    code, document = await asyncio.to_thread(system.cli, *args, check=False)
    return code, dict(document or {})


# --- JSON bombs -------------------------------------------------------------------------------


def many_keys(count: int) -> bytes:
    body = {"id": "bomb-keys", "updated_at": "2025-05-01T00:00:00Z", "status": "active"}
    return json.dumps({**body, "name": "x", **{f"k{i}": i for i in range(count)}}).encode()


JSON_BOMBS: list[tuple[str, bytes, int, str]] = [
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, "nests deeper than 32"),
    ("deep objects", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 400, "nests deeper than 32"),
    ("a huge number", b'{"id":"n","name":' + b"9" * 500_000 + b"}", 400, "more than 100 digits"),
    ("a huge exponent", b'{"id":"n","name":1e999999999999}', 422, "/name"),
    ("a giant string", b'{"id":"s","name":"' + b"x" * 900_000 + b'"}', 422, "/name"),
    ("a body over the cap", b'{"name":"' + b"x" * (2 * MIB) + b'"}', 413, "larger than"),
    ("many keys", many_keys(60_000), 422, "keys: far too many"),
    ("lone surrogates", b'{"id":"u","name":"' + b"\\udc00" * 50_000 + b'"}', 400, "surrogate"),
    ("not UTF-8", b'{"id":"u","name":"\xff\xfe"}', 400, "UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "says"), JSON_BOMBS, ids=[b[0] for b in JSON_BOMBS]
)
async def test_a_json_bomb_gets_a_clear_4xx_problem_and_changes_nothing(
    hostile_system: System, tenant: dict[str, str], name: str, body: bytes, status: int, says: str
) -> None:
    ingest = hostile_system.url("ingest-api")
    headers = {**bearer(tenant["token"]), "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        started = time.perf_counter()
        async with http.put(f"{ingest}/v1/assets/bomb-1", data=body, headers=headers) as answer:
            problem = await answer.json(content_type=None)
            assert answer.status == status, (name, problem)
            assert answer.content_type == PROBLEM
        elapsed = time.perf_counter() - started
        assert says in json.dumps(problem), problem
        assert elapsed < 5, f"{name}: answered in {elapsed:.1f} s"
        # Nothing was accepted, and the service goes on answering.
        async with http.get(f"{ingest}/v1/assets/bomb-1", headers=bearer(tenant["token"])) as read:
            assert read.status == 404
        async with http.get(f"{ingest}/healthz") as health:
            assert health.status == 200


async def test_a_batch_of_crowded_items_is_refused_item_by_item_in_bounded_time(
    hostile_system: System, tenant: dict[str, str]
) -> None:
    ingest = hostile_system.url("ingest-api")
    crowded = {f"k{i}": i for i in range(5_000)}
    good = asset_doc("batch-good", now())
    items = [good] + [{**asset_doc(f"batch-bad-{n}", now()), **crowded} for n in range(100)]
    body = json.dumps({"assets": items}).encode()
    headers = {**bearer(tenant["token"]), "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        started = time.perf_counter()
        async with http.post(f"{ingest}/v1/assets/batch", data=body, headers=headers) as answer:
            result = await answer.json(content_type=None)
        elapsed = time.perf_counter() - started
    assert answer.status == 207 or answer.status == 202, result
    statuses = [item["status"] for item in result["results"]]
    assert statuses[0] == "accepted" and statuses[1:] == ["rejected"] * 100, statuses[:3]
    assert result["results"][1]["errors"] == [
        {"pointer": "", "message": "has 5004 keys: far too many"}
    ]
    assert elapsed < 10, f"a {len(body)}-byte batch answered in {elapsed:.1f} s"


# --- the feed hosts ---------------------------------------------------------------------------


@dataclass
class FeedHost:
    """A provider's web server on `host` with handlers the test sets; records every request."""

    host: str
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
    port: int = field(default_factory=free_port)
    seen: list[str] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> None:
        async def dispatch(request: web.Request) -> web.StreamResponse:
            self.seen.append(request.path_qs)
            self.headers_seen.append(dict(request.headers))
            handler = self.routes.get(request.path)
            if handler is None:
                return web.Response(status=404)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", dispatch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@contextlib.asynccontextmanager
async def feed_host(
    host: str, routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
) -> AsyncIterator[FeedHost]:
    server = FeedHost(host, routes)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def gzip_bomb(decoded_bytes: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    return b"".join(squeeze.compress(zeros) for _ in range(decoded_bytes // MIB)) + squeeze.flush()


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow  # about 15 s: kept out of the default suite's budget
async def test_a_gzip_bomb_at_feed_fetch_fails_the_run_at_the_cap_in_bounded_memory(
    hostile_system: System, tenant: dict[str, str]
) -> None:
    bomb = gzip_bomb(1024 * MIB)  # 1 GiB of zeros in about 1 MiB

    async def serve_bomb(_: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    poller = hostile_system.services["feed-poller"].process
    assert poller is not None
    async with feed_host(FEED_HOST, {"/bomb.json": serve_bomb}) as host:
        _, feed = await cli(
            hostile_system, "feed", "add", tenant["provider_id"], host.url("/bomb.json"), "--json"
        )
        started = time.perf_counter()
        code, run = await cli(
            hostile_system, "feed", "trigger", feed["feed_id"], "--wait", "--json"
        )
        elapsed = time.perf_counter() - started
    assert code != 0 and run["status"] == "failed", run
    assert run["reason_code"] == "size_limit", run
    assert f"cap of {DECODED_CAP} bytes" in run["reason"], run
    assert host.seen == ["/bomb.json"]  # not retried: a size limit is final
    assert elapsed < 30
    # The poller decoded in bounded steps: its peak resident memory stayed far below the bomb.
    peak = peak_rss_bytes(poller.pid)
    assert peak < 400 * MIB
    print(
        f"gzip bomb: {len(bomb)} bytes for 1 GiB, refused at the {DECODED_CAP >> 20} MiB cap "
        f"in {elapsed:.1f} s; feed-poller peak RSS {peak >> 20} MiB"
    )
    health = hostile_system.url("feed-poller") + "/healthz"
    assert await asyncio.to_thread(http_status, health) == 200


# --- SSRF at fetch time -----------------------------------------------------------------------


@pytest.mark.slow  # about 15 s: kept out of the default suite's budget
async def test_feed_urls_aimed_inside_the_network_are_refused_with_a_clear_reason(
    hostile_system: System, tenant: dict[str, str]
) -> None:
    items = [asset_doc("ssrf-1", now())]

    async def inside(_: web.Request) -> web.Response:
        return web.json_response(items)

    async with feed_host("127.0.0.1", {"/internal.json": inside}) as internal:
        target = internal.url("/internal.json")

        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        async def redirect_v6(_: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://[::1]:{internal.port}/internal.json")

        async def redirect_decimal(_: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://2130706433:{internal.port}/internal.json")

        routes = {"/r1": redirect, "/r6": redirect_v6, "/rd": redirect_decimal}
        async with feed_host(FEED_HOST, routes) as public:
            cases = {
                # A host name that resolves to loopback only.
                f"http://localhost:{internal.port}/internal.json": "localhost resolves only to",
                # Redirects from an allowed host to the inside, in three spellings.
                public.url("/r1"): "127.0.0.1",
                public.url("/r6"): "::1",
                public.url("/rd"): "127.0.0.1",  # 2130706433, read as a browser reads it
            }
            for url, reason in cases.items():
                code, feed = await cli(
                    hostile_system, "feed", "add", tenant["provider_id"], url, "--json"
                )
                assert code == 0, feed
                code, run = await cli(
                    hostile_system, "feed", "trigger", feed["feed_id"], "--wait", "--json"
                )
                assert run["status"] == "failed" and run["reason_code"] == "address_refused", run
                assert reason in run["reason"], (url, run)
            # The literal inside address is refused when the feed is registered.
            code, refused = await cli(
                hostile_system, "feed", "add", tenant["provider_id"], target, "--json"
            )
            assert code != 0, refused
        assert internal.seen == [], "a request reached the inside host"
        assert len(public.seen) == 3


# --- slow loris -------------------------------------------------------------------------------


# aiohttp drains a body no handler read for at most this long before closing the connection.
LINGER = 10.0


@dataclass
class Trickled:
    answered_after: float  # seconds until the first byte of an answer (inf: none)
    closed_after: float  # seconds until the server closed the connection (inf: it did not)
    answer: bytes


async def _trickle(
    port: int, head: bytes, body_length: int | None, interval: float, most: float
) -> Trickled:
    """Send `head` a byte every `interval` (or whole, then a body a byte every `interval`)
    until the server closes the connection or `most` seconds pass."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    result = Trickled(float("inf"), float("inf"), b"")
    if body_length is None:
        pieces = [head[i : i + 1] for i in range(len(head))]
    else:
        writer.write(head)
        pieces = [b"x"] * body_length

    def elapsed() -> float:
        return time.monotonic() - started

    try:
        for piece in [*pieces, None]:
            if piece is not None:
                writer.write(piece)
                await writer.drain()
            while True:
                try:
                    wait = interval if piece is not None else max(0.0, most - elapsed())
                    chunk = await asyncio.wait_for(reader.read(65536), wait)
                except TimeoutError:
                    break
                if not chunk:
                    result.closed_after = elapsed()
                    return result
                if not result.answer:
                    result.answered_after = elapsed()
                result.answer += chunk
            if elapsed() > most:
                break
    except ConnectionError:
        result.closed_after = elapsed()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return result


async def _latencies(url: str, headers: dict[str, str], count: int) -> list[float]:
    taken = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for _ in range(count):
            started = time.perf_counter()
            async with http.get(url, headers=headers) as answer:
                await answer.read()
                assert answer.status in (200, 404), answer.status
            taken.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return taken


async def _loris(system: System, tenant: dict[str, str], service: str) -> str:
    port = system.services[service].port
    if service == "ingest-api":
        auth = bearer(tenant["token"])
        good = system.url(service) + "/v1/assets?limit=1"
        slow_body_head = b"PUT /v1/assets/slow-1 HTTP/1.1\r\nContent-Type: application/json\r\n"
        answer_within = BODY_TIMEOUT  # the handler reads the body: 408 at its deadline
    else:
        auth = bearer(tenant["reader_token"])
        good = f"{system.url(service)}/v1/prices?provider_id={tenant['provider_id']}&asset_id=a"
        slow_body_head = b"GET /v1/prices/prv_none/a HTTP/1.1\r\n"
        answer_within = 0.0  # no handler reads a body here: the answer goes out at once
    slow_body_head += (
        b"Host: x\r\nAuthorization: " + auth["Authorization"].encode() + b"\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    slow_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    heads = [_trickle(port, slow_head, None, 0.25, 20) for _ in range(40)]
    bodies = [_trickle(port, slow_body_head, 1000, 0.25, 20) for _ in range(20)]
    slow = asyncio.gather(*heads, *bodies)
    await asyncio.sleep(0.5)
    served = await _latencies(good, auth, 20)
    results = await slow
    cut_heads, cut_bodies = results[: len(heads)], results[len(heads) :]
    assert all(not r.answer for r in cut_heads), "a trickled head was answered"
    assert max(r.closed_after for r in cut_heads) < IDLE_TIMEOUT + 2, cut_heads
    assert max(r.answered_after for r in cut_bodies) < answer_within + 2, cut_bodies
    if service == "ingest-api":
        assert all(r.answer.startswith(b"HTTP/1.1 408 ") for r in cut_bodies), cut_bodies[0]
    assert max(r.closed_after for r in cut_bodies) < answer_within + LINGER + 3, cut_bodies
    assert max(served) < 1.0, f"{service}: good requests took up to {max(served):.2f} s"
    return (
        f"{service}: {len(heads)} slow heads cut after <= "
        f"{max(r.closed_after for r in cut_heads):.1f} s; {len(bodies)} slow bodies answered "
        f"after <= {max(r.answered_after for r in cut_bodies):.1f} s, closed after <= "
        f"{max(r.closed_after for r in cut_bodies):.1f} s; 20 good requests meanwhile, slowest "
        f"{max(served) * 1000:.0f} ms"
    )


@pytest.mark.slow  # about 15 s: kept out of the default suite's budget
async def test_slow_loris_clients_are_cut_off_while_others_are_served(
    hostile_system: System, tenant: dict[str, str]
) -> None:
    """Both services at once: 40 clients trickling their request head and 20 trickling a body
    each, while a good client goes on being served."""
    figures = await asyncio.gather(
        _loris(hostile_system, tenant, "ingest-api"), _loris(hostile_system, tenant, "pricing")
    )
    print("\n".join(figures))


# --- brute force ------------------------------------------------------------------------------


async def test_guessed_credentials_get_429_while_good_callers_are_served(
    hostile_system: System, tenant: dict[str, str], secrets: Secrets
) -> None:
    targets = {
        "ingest-api": (
            hostile_system.url("ingest-api") + "/v1/assets?limit=1",
            bearer(tenant["token"]),
        ),
        "pricing": (
            f"{hostile_system.url('pricing')}/v1/prices?provider_id={tenant['provider_id']}"
            "&asset_id=a",
            bearer(tenant["reader_token"]),
        ),
    }
    guesser = aiohttp.TCPConnector(local_addr=(GUESSER, 0))
    async with (
        aiohttp.ClientSession(connector=guesser) as attacker,
        aiohttp.ClientSession() as others,
    ):
        for service, (url, good) in targets.items():
            # A good caller at the guessing address, verified before the guessing starts.
            async with attacker.get(url, headers=good) as first:
                assert first.status in (200, 404), service
            statuses = []
            for n in range(30):
                guess = f"rw{'p' if service == 'ingest-api' else 'r'}_guess{n:04d}xyz"
                secrets.add(guess)
                async with attacker.get(url, headers=bearer(guess)) as answer:
                    statuses.append(answer.status)
                    if answer.status == 429:
                        assert 1 <= int(answer.headers["Retry-After"]) <= 60
                        assert answer.content_type == PROBLEM
            assert statuses[:AUTH_FAILURES] == [401] * AUTH_FAILURES, (service, statuses)
            assert set(statuses[AUTH_FAILURES:]) == {429}, (service, statuses)
            # Basic credentials and the stream's access_token count the same way.
            basic = "Basic " + base64.b64encode(b"key_guess:nope").decode()
            async with attacker.get(url, headers={"Authorization": basic}) as answer:
                assert answer.status == 429
            # Good callers elsewhere are served, and so is the verified one at that address.
            async with others.get(url, headers=good) as answer:
                assert answer.status in (200, 404), service
            async with attacker.get(url, headers=good) as answer:
                assert answer.status in (200, 404), service
            print(f"{service}: {statuses.count(401)} x 401 then {statuses.count(429)} x 429")
        stream = (
            f"{hostile_system.url('pricing')}/v1/prices/stream?provider_id={tenant['provider_id']}"
            "&access_token=rwr_guess_stream"
        )
        secrets.add("rwr_guess_stream")
        async with attacker.get(stream) as answer:
            assert answer.status == 429


# --- secrets never in logs --------------------------------------------------------------------


async def test_no_secret_reaches_any_log(
    hostile_system: System, tenant: dict[str, str], secrets: Secrets
) -> None:
    """Runs last in this module: by then every secret above was presented, right and wrong."""
    ingest = hostile_system.url("ingest-api")
    pricing = hostile_system.url("pricing")
    basic = base64.b64encode(f"{tenant['key_id']}:{tenant['secret']}".encode()).decode()
    wrong_basic = base64.b64encode(f"{tenant['key_id']}:wrong-{tenant['secret']}".encode())
    secrets.add(f"wrong-{tenant['secret']}", basic, wrong_basic.decode())
    async with aiohttp.ClientSession() as http:
        for headers in (
            {"Authorization": f"Basic {basic}"},
            {"Authorization": f"Basic {wrong_basic.decode()}"},
            bearer(tenant["token"]),
        ):
            body = {**asset_doc("logged-1", now()), "status": "bogus"}
            async with http.put(
                f"{ingest}/v1/assets/logged-1",
                json=body,
                headers=headers,
            ) as answer:
                assert answer.status in (401, 422, 429)
        async with http.get(
            f"{pricing}/v1/prices/stream?provider_id=prv_nobody&access_token={tenant['reader_token']}"
        ) as answer:
            assert answer.status == 404

    # A feed with a Bearer credential and a token in its query, which fails (the host answers
    # 401): the failure is logged and recorded, the secrets are not. A password in the URL is
    # refused when the feed is added.
    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=401)

    secrets.add(FEED_TOKEN, FEED_PASSWORD, FEED_QUERY_TOKEN)
    async with feed_host(FEED_HOST, {"/private.json": refuse}) as host:
        with_password = host.url("/private.json").replace(
            "http://", f"http://feeduser:{FEED_PASSWORD}@"
        )
        code, refused = await cli(
            hostile_system, "feed", "add", tenant["provider_id"], with_password, "--json"
        )
        assert code != 0, refused
        url = host.url("/private.json") + f"?api_key={FEED_QUERY_TOKEN}"
        code, feed = await cli(
            hostile_system,
            "feed", "add", tenant["provider_id"], url,
            "--auth", "bearer", "--auth-secret-env", "HOSTILE_FEED_TOKEN", "--json",
        )  # fmt: skip
        assert code == 0, feed
        code, run = await cli(
            hostile_system, "feed", "trigger", feed["feed_id"], "--wait", "--json"
        )
        assert run["status"] == "failed" and run["reason_code"] == "http_status", run
        # The credential did reach the feed's own origin: the test is about logs, not transport.
        assert host.headers_seen[0]["Authorization"] == f"Bearer {FEED_TOKEN}"
        # The run's record (what the provider and operator read) names the URL without its query.
        assert not any(secret in json.dumps(run) for secret in secrets.values), run
        assert "auth" in feed and FEED_TOKEN not in json.dumps(feed)

    logs = {
        name: service.log_path.read_text(errors="replace")
        for name, service in hostile_system.services.items()
    }
    # The logs are the real ones, at DEBUG: the failed run is there with its context.
    assert feed["feed_id"] in logs["feed-poller"] and '"level": "debug"' in logs["feed-poller"]
    leaks = {
        name: sorted(secret[:12] + "…" for secret in secrets.values if secret in text)
        for name, text in logs.items()
    }
    assert not any(leaks.values()), leaks
    assert len(secrets.values) >= 9  # its own; 70 when the whole module runs first
    print(
        f"{len(secrets.values)} secrets presented, {sum(len(t) for t in logs.values())} bytes of "
        "logs from four services, 0 found"
    )

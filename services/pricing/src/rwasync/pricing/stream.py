"""`GET /v1/prices/stream`: Server-Sent Events of latest-price changes for a reader token.

The response starts (headers sent) only once the subscription is registered with the process's
hub, so every change committed after the headers arrive is delivered. With `Last-Event-ID` the
changes after it are first replayed from the change log up to where the live feed took over;
ids are positions in one order every replica shares, so a client may resume on any replica. A
subscriber whose queue overflows gets `event: close` (`slow_consumer`) and is dropped; the others
never wait for it.

Written by hand rather than with aiohttp-sse: that library's keep-alive comment is fixed to
`: ping` and its ping task is private, while this stream sends `: keep-alive` from the one task
that also drains the subscriber's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import UTC, datetime
from typing import Final

import structlog
from aiohttp import web

from rwasync.platform.auth import Authenticator, authorization_header
from rwasync.platform.db import Database
from rwasync.platform.http import Problem, bad_query, service_unavailable
from rwasync.platform.openapi import Operation, Param, Reply
from rwasync.pricing import params, queries
from rwasync.pricing.api import READER_AUTH
from rwasync.pricing.hub import (
    EVENT_ID_PATTERN,
    ChangeHub,
    HubUnavailable,
    Position,
    PriceChange,
    Subscriber,
    parse_event_id,
)
from rwasync.pricing.settings import PricingSettings
from rwasync.schema.fields import ProviderId

log = structlog.get_logger(__name__)

KEEP_ALIVE: Final = b": keep-alive\n\n"
SLOW_CLOSE: Final = b'event: close\ndata: {"reason":"slow_consumer"}\n\n'
SHUTDOWN_CLOSE: Final = b'event: close\ndata: {"reason":"shutting_down"}\n\n'
REVOKED_CLOSE: Final = b'event: close\ndata: {"reason":"unauthorized"}\n\n'
DISABLED_CLOSE: Final = b'event: close\ndata: {"reason":"provider_disabled"}\n\n'
# A stream checks its token again every auth-cache period (at least this often), each check
# waiting at most TOKEN_CHECK_TIMEOUT for the database (the stream goes on if it does not answer).
MIN_TOKEN_CHECK_SECONDS: Final = 1.0
TOKEN_CHECK_TIMEOUT: Final = 1.0
RESET: Final = b'event: reset\ndata: {"reason":"last_event_id_expired"}\n\n'
# How long a new subscriber waits for the hub to be connected before a 503.
SUBSCRIBE_TIMEOUT: Final = 5.0
# The most bytes HTTP chunked encoding adds to one write (size line and CRLFs).
CHUNK_OVERHEAD: Final = 64
REPLAY_PAGE: Final = 1000


def unsent(changes: list[PriceChange], sent: Position) -> list[PriceChange]:
    """The changes after `sent` (they come in order: only a head already replayed is skipped)."""
    start = 0
    while start < len(changes) and changes[start].position <= sent:
        start += 1
    return changes[start:] if start else changes


def _bad_resume_point(message: str) -> Problem:
    return bad_query("Last-Event-ID", message, kind="bad-header")


def never_waits(transport: asyncio.BaseTransport | None, size: int) -> bool:
    """Whether writing `size` bytes cannot wait for the subscriber: nothing is buffered (so the
    transport is not paused) and the write stays under its high-water mark, so aiohttp's write
    returns without waiting for a drain. A subscriber that keeps up is always in this state; the
    send timeout (a timer per write: 50 subscribers' writes made it a few % of the process) is
    then only armed for a subscriber that has fallen behind."""
    if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
        return False
    _, high = transport.get_write_buffer_limits()
    return transport.get_write_buffer_size() == 0 and size + CHUNK_OVERHEAD <= high


class PriceStream:
    def __init__(
        self, db: Database, hub: ChangeHub, auth: Authenticator[str], settings: PricingSettings
    ) -> None:
        self._db = db
        self._hub = hub
        self._auth = auth
        self._settings = settings

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "GET",
                "/v1/prices/stream",
                self.stream,
                "streamPrices",
                "Server-Sent Events of a provider's latest-price changes",
                description="Events `price` (the latest price object), `reset` and `close`; "
                "`: keep-alive` comments in silences. Resume with `Last-Event-ID`.",
                replies=(
                    Reply(
                        200,
                        "the event stream, open until the client leaves",
                        {"type": "string"},
                        media_type="text/event-stream",
                    ),
                ),
                problems=(400, 404, 503),
                params=(
                    Param("provider_id", "query", ProviderId, "the provider", True),
                    Param(
                        "asset_id",
                        "query",
                        params.AssetIdList,
                        "only these assets, comma-separated; repeated, every value counts",
                        repeated=True,
                    ),
                    Param(
                        "access_token",
                        "query",
                        str,
                        "the reader token, for clients that cannot send headers (EventSource)",
                    ),
                    Param(
                        "Last-Event-ID",
                        "header",
                        {"type": "string", "pattern": f"^{EVENT_ID_PATTERN}$"},
                        "resume after this event id (one this stream sent)",
                    ),
                ),
                tag="stream",
                security=READER_AUTH,
            )
        ]

    async def stream(self, request: web.Request) -> web.StreamResponse:
        authorization = authorization_header(request)
        token = request.query.get("access_token")
        if not authorization and token:
            # Browsers' EventSource cannot send headers.
            authorization = f"Bearer {token}"
        await self._auth.authenticate_request(request, authorization)
        assert authorization is not None  # authenticated
        provider_id = params.required(request.query, "provider_id")
        asset_ids = params.asset_ids(request.query, optional=True)
        resume = self._resume_position(request)
        served = params.known_form(provider_id) and await self._db.fetchval(
            queries.PROVIDER_SERVED, provider_id
        )
        if not served:
            raise Problem(404, "Not Found", f"unknown provider {provider_id!r}", kind="not-found")
        expired = False
        if resume is not None:
            expired = await self._expired(resume)
        try:
            subscriber, live_from = await self._hub.subscribe(
                provider_id, asset_ids, self._settings.stream_queue_size, SUBSCRIBE_TIMEOUT
            )
        except HubUnavailable as exc:
            raise service_unavailable(str(exc), retry_after=2) from None
        try:
            response = await self._start(request)
            if request.method != "HEAD":  # HEAD: the answer's head (or its 503) alone
                await self._serve(
                    request, response, subscriber, resume, expired, live_from, authorization
                )
            return response
        finally:
            self._hub.unsubscribe(subscriber)

    async def _trim_point(self) -> Position:
        row = await self._db.fetchrow(queries.TRIM_POINT)
        return (row["xid"], row["change_id"]) if row is not None else (0, 0)

    async def _expired(self, resume: Position) -> bool:
        """Whether the changes after `resume` are partly gone (then the stream starts with a
        reset); a 400 for a position this stream never handed out. The trim point is the newest
        change removed, and resuming right after it misses nothing."""
        trim = await self._trim_point()
        if resume <= trim:
            return resume < trim
        if await self._db.fetchval(queries.CHANGE_KEPT, *resume):
            return False
        if resume < await self._trim_point():  # trimmed since the first look
            return True
        raise _bad_resume_point(f"'{resume[0]}-{resume[1]}' is not an event id of this stream")

    def _resume_position(self, request: web.Request) -> Position | None:
        text = request.headers.get("Last-Event-ID")
        if not text:
            return None
        try:
            return parse_event_id(text)
        except ValueError as exc:
            raise _bad_resume_point(str(exc)) from None

    async def _start(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        response.force_close()
        # A small kernel buffer, so a stalled subscriber shows up as a full queue soon. (The
        # event loop hands out a stand-in for the socket, not a `socket.socket`: uvloop's
        # PseudoSocket, asyncio's TransportSocket; both pass `setsockopt` on.)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, self._settings.stream_send_buffer_bytes
            )
        await response.prepare(request)
        return response

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        async with asyncio.timeout(self._settings.stream_send_timeout):
            await response.write(data)

    async def _serve(
        self,
        request: web.Request,
        response: web.StreamResponse,
        subscriber: Subscriber,
        resume: Position | None,
        expired: bool,
        live_from: Position,
        authorization: str,
    ) -> None:
        sent = live_from
        ending: bytes | None = None  # REVOKED_CLOSE or DISABLED_CLOSE, when the check says so
        try:
            if expired:
                await self._send(response, RESET)
            elif resume is not None:
                sent = await self._replay(response, subscriber, resume, live_from)
            keep_alive = self._settings.stream_keepalive_seconds
            check_every = max(self._settings.auth_cache_seconds, MIN_TOKEN_CHECK_SECONDS)
            keep_alive_at = time.monotonic() + keep_alive
            check_at = time.monotonic() + check_every
            while not subscriber.slow.is_set() and not subscriber.closing.is_set():
                now = time.monotonic()
                if now >= check_at:
                    # A token revoked (or its reader removed) ends the streams it opened too,
                    # and a provider disabled the streams of its prices, within about the time
                    # a new request would take to be refused.
                    ending = await self._ending(authorization, subscriber.provider_id)
                    if ending is not None:
                        break
                    check_at = now + check_every
                if now >= keep_alive_at:
                    await self._send(response, KEEP_ALIVE)
                    keep_alive_at = now + keep_alive
                try:
                    async with asyncio.timeout(max(0.0, min(keep_alive_at, check_at) - now)):
                        await subscriber.wait()
                except TimeoutError:
                    continue
                if subscriber.slow.is_set() or subscriber.closing.is_set():
                    break
                # Everything queued since the last write goes in this one: one syscall and one
                # chunk for a burst, not one per event; the frames were rendered by the hub.
                changes = unsent(subscriber.take(), sent)
                if changes:
                    keep_alive_at = time.monotonic() + keep_alive
                    sent = changes[-1].position
                    data = b"".join([c.frame for c in changes])
                    if never_waits(request.transport, len(data)):
                        await response.write(data)  # no timeout to arm: it cannot wait
                    else:
                        await self._send(response, data)
            if ending is not None:
                log.info(
                    "closing a stream no longer allowed",
                    provider_id=subscriber.provider_id,
                    reason="unauthorized" if ending is REVOKED_CLOSE else "provider_disabled",
                )
                await self._send(response, ending)
            elif subscriber.closing.is_set():
                await self._send(response, SHUTDOWN_CLOSE)
            else:
                log.info("closing a slow stream subscriber", provider_id=subscriber.provider_id)
                await self._send(response, SLOW_CLOSE)
        except (ConnectionError, TimeoutError, asyncio.CancelledError) as exc:
            # The subscriber went away or stopped reading: nothing to answer any more.
            if request.transport is not None:
                request.transport.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
        with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
            async with asyncio.timeout(self._settings.stream_send_timeout):
                await response.write_eof()

    async def _ending(self, authorization: str, provider_id: str) -> bytes | None:
        """How the stream must end now, if it must: its credentials refused (revoked), or its
        provider no longer served (disabled). A database that does not answer just now keeps
        the stream (it is asked again at the next check)."""
        try:
            # Bounded: the check runs between deliveries, which a slow lookup must not stall.
            async with asyncio.timeout(TOKEN_CHECK_TIMEOUT):
                await self._auth.authenticate(authorization)
                if not await self._db.fetchval(queries.PROVIDER_SERVED, provider_id):
                    return DISABLED_CLOSE
        except Problem as refused:
            return REVOKED_CLOSE if refused.status == 401 else None
        except Exception:
            return None
        return None

    async def _replay(
        self,
        response: web.StreamResponse,
        subscriber: Subscriber,
        after: Position,
        upto: Position,
    ) -> Position:
        """Send the subscriber's changes in (after, upto] from the log; returns the last sent."""
        asset_ids = sorted(subscriber.asset_ids) if subscriber.asset_ids is not None else None
        sent = after
        while True:
            rows = await self._db.fetch(
                queries.REPLAY, subscriber.provider_id, asset_ids, *sent, *upto, REPLAY_PAGE
            )
            now = datetime.now(UTC)
            frames = [PriceChange.from_row(row, now).frame for row in rows if not row["disabled"]]
            if rows:
                sent = (rows[-1]["xid"], rows[-1]["change_id"])
            if frames:
                await self._send(response, b"".join(frames))  # a page in one write
            if len(rows) < REPLAY_PAGE:
                return max(sent, upto)

"""`Idempotency-Key` on writes: per provider, the first request with a key claims it in the
database before anything is published, so two requests with one key can never both publish; its
accepted answer is stored, and a repeat with the same method, path and body gets that answer
again (same `event_id`). The same key with another request is a 422. A repeat arriving while the
first is still in flight waits for its answer, up to a bound, then gets a 409. A request that
fails (4xx, 503) releases the key, so a retry runs anew. Keys are kept for the retention period
(at least 24 h) and pruned after it.

Each claim has its own id: only the request holding the claim stores its answer or releases the
key. A running request renews its claim; one that stops renewing (its process died) is taken
over after the lease, and if it was only stalled, it finds its claim gone and touches nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final

import structlog
from aiohttp import hdrs, web

from rwasync.ingest_api import queries
from rwasync.ingest_api.bodies import bad_request
from rwasync.ingest_api.callers import Call
from rwasync.platform.auth import single_header
from rwasync.platform.db import Database
from rwasync.platform.http import Problem

log = structlog.get_logger(__name__)

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
# Printable ASCII, space included: what a header value carries unchanged through any client,
# proxy or log, and what the API document's pattern says.
KEY_PATTERN: Final = f"^[ -~]{{1,{MAX_KEY_LENGTH}}}$"
_KEY: Final = re.compile(KEY_PATTERN)
# A claim without an answer after this long belongs to a process that died: it may be taken over.
CLAIM_LEASE: Final = timedelta(seconds=60)
# How often a request still running renews its claim: well within the lease.
RENEW_EVERY: Final = CLAIM_LEASE.total_seconds() / 4
POLL_INTERVAL: Final = 0.05
PRUNE_EVERY: Final = 600.0


def fingerprint(call: Call) -> bytes:
    digest = hashlib.sha256(f"{call.request.method} {call.request.path}\n".encode())
    digest.update(call.body)
    return digest.digest()


def checked_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key, None without one; a 400 for a key of the wrong form or
    for two keys (a retry with either would publish again). The validation calls, which write
    nothing and so have nothing to replay, check it too: a key a client's write would have
    refused is refused there as well."""
    key = single_header(request, HEADER)
    if key is not None and _KEY.fullmatch(key) is None:
        raise bad_request(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
            kind="bad-idempotency-key",
        )
    return key


class IdempotencyKeys:
    def __init__(self, db: Database, *, wait_seconds: float, retention: timedelta) -> None:
        self._db = db
        self._wait_seconds = wait_seconds
        self._retention = retention

    async def run(self, call: Call, answer: Callable[[], Awaitable[web.Response]]) -> web.Response:
        """`answer()` under the request's Idempotency-Key, if it has one."""
        key = checked_key(call.request)
        if key is None:
            return await answer()
        structlog.contextvars.bind_contextvars(idempotency_key=key)
        provider_id, sent = call.provider_id, fingerprint(call)
        claim = uuid.uuid4()
        replay = await self._claim_or_replay(provider_id, key, sent, claim)
        if replay is not None:
            return replay
        renewal = asyncio.create_task(self._renew_forever(provider_id, key, claim))
        try:
            response = await answer()
        except BaseException:
            await self._release(provider_id, key, claim)
            raise
        finally:
            renewal.cancel()
        if 200 <= response.status < 300:
            await self._store(provider_id, key, claim, response)
        else:
            await self._release(provider_id, key, claim)
        return response

    async def _claim_or_replay(
        self, provider_id: str, key: str, sent: bytes, claim: uuid.UUID
    ) -> web.Response | None:
        """None once this request holds the key; else the first request's answer."""
        deadline = time.monotonic() + self._wait_seconds
        while True:
            claimed = await self._db.fetchval(
                queries.CLAIM_KEY, provider_id, key, sent, CLAIM_LEASE, claim
            )
            if claimed:
                return None
            row = await self._db.fetchrow(queries.KEY_STATE, provider_id, key)
            if row is None and time.monotonic() < deadline:  # released meanwhile: claim it again
                continue
            if row is not None and row["fingerprint"] != sent:
                raise Problem(
                    422,
                    "Unprocessable Content",
                    f"this {HEADER} was used with a different request (method, path or body)",
                    kind="idempotency-key-reused",
                )
            if row is not None and row["status"] is not None:
                headers = {REPLAYED_HEADER: "true"}
                if row["location"] is not None:
                    headers[hdrs.LOCATION] = row["location"]
                return web.Response(
                    status=row["status"],
                    body=row["body"],
                    content_type="application/json",
                    headers=headers,
                )
            if time.monotonic() >= deadline:
                raise Problem(
                    409,
                    "Conflict",
                    f"a request with this {HEADER} is still in progress; retry shortly",
                    kind="idempotency-key-in-progress",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def _renew_forever(self, provider_id: str, key: str, claim: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await self._db.execute(queries.RENEW_CLAIM, provider_id, key, claim)
            except Exception as exc:
                log.warning("idempotency claim not renewed", error=repr(exc))

    async def _store(
        self, provider_id: str, key: str, claim: uuid.UUID, response: web.Response
    ) -> None:
        body = response.body if isinstance(response.body, bytes) else b""
        try:
            status = await self._db.execute(
                queries.STORE_ANSWER,
                provider_id,
                key,
                response.status,
                body,
                response.headers.get(hdrs.LOCATION),
                claim,
            )
        except Exception as exc:
            # The change is accepted; a repeat after the claim's lease would publish it again,
            # which the version guard makes harmless.
            log.error("idempotent answer not stored", error=repr(exc))
            return
        if status == "UPDATE 0":
            # Another request took the claim over while this one ran (its lease passed): the
            # key now belongs to that request, whose answer is the one to keep.
            log.warning("idempotent answer not stored: the key's claim was taken over")

    async def _release(self, provider_id: str, key: str, claim: uuid.UUID) -> None:
        try:
            await self._db.execute(queries.RELEASE_KEY, provider_id, key, claim)
        except Exception as exc:
            log.warning("idempotency key not released; it expires with its lease", error=repr(exc))

    async def prune_forever(self) -> None:
        """Delete keys older than the retention period, every few minutes."""
        await self._db.wait_connected()
        while True:
            try:
                deleted = await self._db.execute(queries.PRUNE_KEYS, self._retention)
                log.debug("idempotency keys pruned", result=deleted)
            except Exception as exc:  # the next round tries again
                log.warning("idempotency keys not pruned", error=repr(exc))
            await asyncio.sleep(PRUNE_EVERY)

"""Idempotency-Key claims against the real database: a request whose claim another request took
over (its lease ran out) neither stores its answer under the other's request nor gives the key
back, and a request still running renews its claim so that it is not taken over."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from rwasync.ingest_api import idempotency
from rwasync.ingest_api.idempotency import IdempotencyKeys
from rwasync.platform.db import Database
from rwasync.platform.http import Problem

pytestmark = pytest.mark.integration


def call(provider_id: str, body: bytes) -> SimpleNamespace:
    request = make_mocked_request("PUT", "/v1/assets/a1", headers={"Idempotency-Key": "k1"})
    return SimpleNamespace(request=request, provider_id=provider_id, body=body)


def accepted(event_id: str) -> web.Response:
    return web.json_response({"event_id": event_id}, status=202)


async def stalled_past_its_lease(
    keys: IdempotencyKeys, db: Database, provider_id: str, may_answer: asyncio.Event
) -> asyncio.Task[web.Response]:
    """Request A under key k1, whose answer waits for `may_answer`, and whose claim has outlived
    its lease meanwhile (as if it stalled for minutes)."""

    async def answer_a() -> web.Response:
        await may_answer.wait()
        return accepted("EVENT-OF-A")

    a = asyncio.create_task(keys.run(call(provider_id, b'{"name":"A"}'), answer_a))
    await asyncio.sleep(0.3)
    await db.execute("UPDATE idempotency_keys SET claimed_at = now() - interval '2 minutes'")
    return a


async def test_a_request_whose_claim_was_taken_over_neither_answers_for_it_nor_releases_it(
    db: Database, provider_id: str
) -> None:
    keys = IdempotencyKeys(db, wait_seconds=1, retention=timedelta(hours=24))
    a_may_answer = asyncio.Event()
    a = await stalled_past_its_lease(keys, db, provider_id, a_may_answer)

    async def answer_b() -> web.Response:
        a_may_answer.set()
        assert (await a).status == 202  # A answers while B holds the key
        return web.json_response({"type": "service-unavailable"}, status=503)

    # B, another body under the same key, takes the abandoned claim over, then fails.
    assert (await keys.run(call(provider_id, b'{"name":"B"}'), answer_b)).status == 503

    async def answer_retry() -> web.Response:
        return accepted("EVENT-OF-B")

    # B's failure gave the key back: its retry runs anew, never getting A's answer.
    retry = await keys.run(call(provider_id, b'{"name":"B"}'), answer_retry)
    assert retry.status == 202 and idempotency.REPLAYED_HEADER not in retry.headers
    assert retry.body == accepted("EVENT-OF-B").body


async def test_a_late_answer_never_replaces_the_answer_of_the_claim_holder(
    db: Database, provider_id: str
) -> None:
    keys = IdempotencyKeys(db, wait_seconds=1, retention=timedelta(hours=24))
    a_may_answer = asyncio.Event()
    a = await stalled_past_its_lease(keys, db, provider_id, a_may_answer)

    async def answer_b() -> web.Response:
        return accepted("EVENT-OF-B")

    assert (await keys.run(call(provider_id, b'{"name":"B"}'), answer_b)).status == 202
    a_may_answer.set()
    assert (await a).status == 202  # A answers after B's answer was stored

    async def never() -> web.Response:
        raise AssertionError("a repeat of B ran again")

    again = await keys.run(call(provider_id, b'{"name":"B"}'), never)
    assert again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert again.body == accepted("EVENT-OF-B").body


async def test_a_running_request_renews_its_claim(
    db: Database, provider_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "CLAIM_LEASE", timedelta(seconds=1))
    monkeypatch.setattr(idempotency, "RENEW_EVERY", 0.2, raising=False)
    keys = IdempotencyKeys(db, wait_seconds=0.5, retention=timedelta(hours=24))

    async def slow() -> web.Response:
        await asyncio.sleep(2.5)  # over twice the lease
        return accepted("EVENT-OF-A")

    a = asyncio.create_task(keys.run(call(provider_id, b'{"name":"A"}'), slow))
    await asyncio.sleep(1.5)

    async def never() -> web.Response:
        raise AssertionError("B took over the claim of a request still running")

    # B (another body) is refused as the key's misuse, not given the claim as abandoned.
    with pytest.raises(Problem) as refused:
        await keys.run(call(provider_id, b'{"name":"B"}'), never)
    assert refused.value.status == 422
    assert (await a).status == 202
    stored = await db.fetchrow("SELECT status, body FROM idempotency_keys")
    assert stored is not None and stored["status"] == 202
    assert stored["body"] == accepted("EVENT-OF-A").body

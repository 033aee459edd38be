"""The provider's feed API: its feed sources (`GET /v1/feeds`, `PUT`/`GET /v1/feeds/{feed_id}`)
and their runs (request one, list them, read one, approve or reject a held one).

Every rule lives below HTTP, in `rwasync.store.feeds`, which the operator CLI calls too; here the
operations are only scoped to the calling provider (another provider's feed or run is a 404, as
one that does not exist) and their errors mapped onto problems (`feed_errors`). The feed-poller
does the work: a request is recorded, and it picks it up within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

from aiohttp import hdrs, web
from pydantic import Field

from rwasync.feeds.auth import FeedSecrets
from rwasync.ingest_api.bodies import not_found, query_limit
from rwasync.ingest_api.callers import Call
from rwasync.ingest_api.context import (
    IDEMPOTENCY_KEY,
    PROVIDER_AUTH,
    READ_PROBLEMS,
    TENANT,
    WRITE_PROBLEMS,
    Ingest,
)
from rwasync.ingest_api.models import (
    Feed,
    FeedPage,
    FeedRegistration,
    FeedRun,
    RunPage,
    RunRequested,
)
from rwasync.platform.http import Problem, bad_query, json_response, optional_query
from rwasync.platform.openapi import Body, Operation, Param, Reply
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.feeds import FeedSettingInvalid
from rwasync.store import feed_settings, feeds
from rwasync.store.feeds import FeedIdTaken, FeedNotFound, RunNotDecidable, RunNotFound

# A read that takes longer than this answers 503 rather than holding the caller.
READ_TIMEOUT: Final = 5.0
DEFAULT_FEEDS_PAGE: Final = 100
DEFAULT_RUNS_PAGE: Final = 50

FEED_ID_PARAM: Final = Param("feed_id", "path", str, "the feed's id (chosen by the provider)")
RUN_ID_PARAM: Final = Param("run_id", "path", str, "the run's id")
# A run's writes also answer 404 for an unknown (or another provider's) feed or run.
RUN_WRITE_PROBLEMS: Final = (*WRITE_PROBLEMS, 404)
# A run's writes take no body (`Callers.write`'s `no_body`).
NO_BODY_MEANINGS: Final = (
    (400, "a body (this call takes none), or a bad query parameter or header"),
    (415, "a body whose Content-Type is not application/json (this call takes no body)"),
)
CURSOR_PARAM: Final = Param("cursor", "query", str, "the `next_cursor` of the previous page")


def _limit_param(default: int) -> Param:
    return Param(
        "limit",
        "query",
        Annotated[int, Field(ge=1, le=feeds.MAX_PAGE)],
        f"page size (default {default})",
    )


@dataclass(frozen=True)
class FeedRules:
    """What a feed registration is checked and sealed with: the operator's address policy
    (`RWASYNC_FEED_ALLOWED_NETWORKS`) and the keys of `RWASYNC_FEED_SECRETS_KEY`, the same the
    CLI and the feed-poller read."""

    policy: AddressPolicy
    secrets: FeedSecrets


@contextlib.contextmanager
def feed_errors() -> Iterator[None]:
    """The store's feed errors as problems: bad settings 422 listing every field, an unknown (or
    another provider's) feed or run 404, a feed id in use or a run that cannot be decided 409."""
    try:
        yield
    except FeedSettingInvalid as exc:
        count = f"{len(exc.errors)} error" + ("" if len(exc.errors) == 1 else "s")
        raise Problem(
            422,
            "Unprocessable Content",
            f"the feed settings are invalid ({count}); see errors",
            kind="invalid-feed-settings",
            errors=[error.as_dict() for error in exc.errors],
        ) from None
    except (FeedNotFound, RunNotFound) as exc:
        raise not_found(str(exc)) from None
    except FeedIdTaken as exc:
        raise Problem(409, "Conflict", str(exc), kind="feed-id-taken") from None
    except RunNotDecidable as exc:
        raise Problem(409, "Conflict", str(exc), kind="run-not-decidable") from None


@contextlib.contextmanager
def listing_errors() -> Iterator[None]:
    """A cursor the listing cannot use is a bad query (400 naming it), not a bad document."""
    try:
        yield
    except FeedSettingInvalid as exc:
        raise bad_query(exc.pointer.lstrip("/"), exc.message) from None


def path_id(request: web.Request, name: str) -> str:
    """A feed or run id from the path; one that no feed or run can have is simply not found
    (and never reaches the database)."""
    value = request.match_info[name]
    if not feed_settings.FEED_ID_PATTERN.fullmatch(value):
        raise not_found(f"unknown {name.removesuffix('_id')} {value[:140]!r}")
    return value


def page_cursor(request: web.Request) -> str | None:
    return optional_query(request.query, "cursor")


def run_location(feed_id: str, run_id: str) -> str:
    return f"/v1/feeds/{feed_id}/runs/{run_id}"


class FeedRoutes:
    def __init__(self, ingest: Ingest, rules: FeedRules) -> None:
        self._ingest = ingest
        self._rules = rules

    def operations(self) -> list[Operation]:
        common: dict[str, Any] = {"tag": "feeds", "security": PROVIDER_AUTH}
        requested = Reply(
            202, "recorded: the feed-poller starts it within seconds", RunRequested, ("Location",)
        )
        return [
            Operation(
                "GET",
                "/v1/feeds",
                self.list_feeds,
                "listFeeds",
                "The provider's feed sources, oldest first, page by page",
                replies=(Reply(200, "a page", FeedPage),),
                problems=(400, 503),
                params=(CURSOR_PARAM, _limit_param(DEFAULT_FEEDS_PAGE), TENANT),
                **common,
            ),
            Operation(
                "PUT",
                "/v1/feeds/{feed_id}",
                self.put_feed,
                "putFeed",
                "Register or replace a feed source (its secrets are never returned)",
                replies=(Reply(200, "the feed as stored", Feed),),
                problems=WRITE_PROBLEMS,
                params=(FEED_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                body=Body(FeedRegistration),
                **common,
            ),
            Operation(
                "GET",
                "/v1/feeds/{feed_id}",
                self.get_feed,
                "getFeed",
                "One of the provider's feed sources",
                replies=(Reply(200, "the feed", Feed),),
                problems=READ_PROBLEMS,
                params=(FEED_ID_PARAM, TENANT),
                **common,
            ),
            Operation(
                "POST",
                "/v1/feeds/{feed_id}/runs",
                self.request_run,
                "requestFeedRun",
                "Run the feed now (after a run of it still in progress)",
                description=(
                    "No body. A disabled feed runs too, once: it stays disabled, with no next "
                    "run (docs/api.md 2.8)."
                ),
                replies=(requested,),
                problems=RUN_WRITE_PROBLEMS,
                params=(FEED_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                problem_meanings=NO_BODY_MEANINGS,
                **common,
            ),
            Operation(
                "GET",
                "/v1/feeds/{feed_id}/runs",
                self.list_runs,
                "listFeedRuns",
                "The feed's runs, newest first, page by page",
                replies=(Reply(200, "a page", RunPage),),
                problems=READ_PROBLEMS,
                params=(FEED_ID_PARAM, CURSOR_PARAM, _limit_param(DEFAULT_RUNS_PAGE), TENANT),
                **common,
            ),
            Operation(
                "GET",
                "/v1/feeds/{feed_id}/runs/{run_id}",
                self.get_run,
                "getFeedRun",
                "One run: status, counts, reason code and the invalid items by index and id",
                replies=(Reply(200, "the run", FeedRun),),
                problems=READ_PROBLEMS,
                params=(FEED_ID_PARAM, RUN_ID_PARAM, TENANT),
                **common,
            ),
            Operation(
                "POST",
                "/v1/feeds/{feed_id}/runs/{run_id}/approve",
                self.approve_run,
                "approveFeedRun",
                "Apply a held run no later run superseded (the feed-poller applies it within "
                "seconds)",
                replies=(
                    Reply(
                        202,
                        "approved: the run becomes ok once applied",
                        RunRequested,
                        ("Location",),
                    ),
                ),
                problems=RUN_WRITE_PROBLEMS,
                params=(FEED_ID_PARAM, RUN_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                problem_meanings=NO_BODY_MEANINGS,
                **common,
            ),
            Operation(
                "POST",
                "/v1/feeds/{feed_id}/runs/{run_id}/reject",
                self.reject_run,
                "rejectFeedRun",
                "Reject a held run, even one a later run superseded: nothing of it is applied",
                replies=(Reply(200, "the rejected run", FeedRun),),
                problems=RUN_WRITE_PROBLEMS,
                params=(FEED_ID_PARAM, RUN_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                problem_meanings=NO_BODY_MEANINGS,
                **common,
            ),
        ]

    # --- feeds ---

    async def list_feeds(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        limit = query_limit(request, DEFAULT_FEEDS_PAGE, feeds.MAX_PAGE)
        cursor = page_cursor(request)
        async with asyncio.timeout(READ_TIMEOUT), self._ingest.db.connection() as conn:
            with listing_errors():
                page = await feeds.list_feeds(
                    conn, identity.provider_id, cursor=cursor, limit=limit
                )
        return json_response(page)

    async def put_feed(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._put_feed)

    async def _put_feed(self, call: Call) -> web.Response:
        feed_id = call.request.match_info["feed_id"]
        with feed_errors():
            settings = feed_settings.parse_feed_settings(
                call.json(), self._rules.policy, feed_id=feed_id, secrets=self._rules.secrets
            )
            async with self._ingest.db.connection() as conn:
                feed, _ = await feeds.put_feed(
                    conn,
                    provider_id=call.provider_id,
                    feed_id=feed_id,
                    settings=settings,
                    secrets=self._rules.secrets,
                )
        return json_response(feed)

    async def get_feed(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        async with asyncio.timeout(READ_TIMEOUT), self._ingest.db.connection() as conn:
            with feed_errors():
                feed = await feeds.get_feed(
                    conn, path_id(request, "feed_id"), provider_id=identity.provider_id
                )
        return json_response(feed)

    # --- runs ---

    async def request_run(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._request_run, no_body=True)

    async def _request_run(self, call: Call) -> web.Response:
        feed_id = path_id(call.request, "feed_id")
        with feed_errors():
            async with self._ingest.db.connection() as conn:
                run_id = await feeds.request_run(conn, feed_id, provider_id=call.provider_id)
        return json_response(
            {"run_id": run_id},
            status=202,
            headers={hdrs.LOCATION: run_location(feed_id, run_id)},
        )

    async def list_runs(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        limit = query_limit(request, DEFAULT_RUNS_PAGE, feeds.MAX_PAGE)
        cursor = page_cursor(request)
        async with asyncio.timeout(READ_TIMEOUT), self._ingest.db.connection() as conn:
            with feed_errors(), listing_errors():
                page = await feeds.list_runs(
                    conn,
                    path_id(request, "feed_id"),
                    provider_id=identity.provider_id,
                    cursor=cursor,
                    limit=limit,
                )
        return json_response(page)

    async def get_run(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        async with asyncio.timeout(READ_TIMEOUT), self._ingest.db.connection() as conn:
            run = await feeds.get_run(
                conn,
                path_id(request, "run_id"),
                feed_id=path_id(request, "feed_id"),
                provider_id=identity.provider_id,
            )
        if run is None:
            raise not_found(f"unknown run {request.match_info['run_id'][:140]!r}")
        return json_response(run)

    async def approve_run(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._approve, no_body=True)

    async def _approve(self, call: Call) -> web.Response:
        feed_id, run_id = path_id(call.request, "feed_id"), path_id(call.request, "run_id")
        with feed_errors():
            async with self._ingest.db.connection() as conn:
                await feeds.decide_run(
                    conn, run_id, "approve", feed_id=feed_id, provider_id=call.provider_id
                )
        return json_response(
            {"run_id": run_id}, status=202, headers={hdrs.LOCATION: run_location(feed_id, run_id)}
        )

    async def reject_run(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._reject, no_body=True)

    async def _reject(self, call: Call) -> web.Response:
        feed_id, run_id = path_id(call.request, "feed_id"), path_id(call.request, "run_id")
        with feed_errors():
            async with self._ingest.db.connection() as conn:
                await feeds.decide_run(
                    conn, run_id, "reject", feed_id=feed_id, provider_id=call.provider_id
                )
                run = await feeds.get_run(
                    conn, run_id, feed_id=feed_id, provider_id=call.provider_id
                )
        return json_response(run)

"""`POST /v1/validate/feed`: what a run of a feed would do now, written nowhere.

The provider sends either the feed's settings (`{"url", ...}` as for `PUT /v1/feeds/{feed_id}`:
the feed is fetched under the same address policy and caps as a run) or a feed body itself, in
any format the poller reads: a JSON envelope or bare array (`application/json`), JSON Lines
(`application/x-ndjson`), CSV (`text/csv`), or any of these gzip-compressed (`Content-Encoding:
gzip`, `application/gzip` with `?format=` naming the inner format, or a body that starts as gzip
does under its format's type). The work is the store's preview (`rwasync.store.feed_preview`):
the run's parsing and validation, then the comparison with the provider's stored assets and the
hold that would apply.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import asyncpg
from aiohttp import web

from rwasync.feeds.fetch import FetchLimits
from rwasync.ingest_api.bodies import CSV, JSON, JSON_LINES, not_found
from rwasync.ingest_api.callers import Call
from rwasync.ingest_api.context import PROVIDER_AUTH, TENANT, Ingest
from rwasync.ingest_api.feeds import FeedRules, feed_errors
from rwasync.ingest_api.models import FeedPreview, FeedRegistration
from rwasync.platform.http import (
    bad_query,
    json_response,
    optional_query,
    service_unavailable,
    too_many_requests,
)
from rwasync.platform.openapi import Body, Operation, Param, Reply
from rwasync.schema import jsonsafe
from rwasync.schema.feeds import DEFAULT_DELETION_THRESHOLD, DeletionThreshold, FeedFormat
from rwasync.store import feed_preview, feed_settings, feeds

GZIP: Final = ("application/gzip", "application/x-gzip")
FEED_MEDIA_TYPES: Final = (JSON, *JSON_LINES, CSV, *GZIP)
FORMAT_OF: Final = {JSON: FeedFormat.JSON, CSV: FeedFormat.CSV} | dict.fromkeys(
    JSON_LINES, FeedFormat.JSONL
)
# A body this small may be the `{"url"}` form; a larger one can only be a feed.
MAX_SETTINGS_BYTES: Final = 64 * 1024
# How long a request waits for a preview slot before answering 503.
SLOT_WAIT: Final = 5.0

PARAMS: Final = (
    Param(
        "format",
        "query",
        {"enum": [f.value for f in FeedFormat]},
        "the body's format when it is sent as application/gzip (default json); with another "
        "Content-Type it must name that type's format (400 otherwise)",
    ),
    Param(
        "feed_id",
        "query",
        str,
        "preview as this feed's next run: its deletion threshold, and its pushes protected",
    ),
    TENANT,
)


@dataclass(frozen=True)
class PreviewLimits:
    fetch: FetchLimits
    max_items: int
    # The largest item: ingest-api's limit on one asset's body, as the poller reads it.
    max_item_bytes: int
    at_once: int


class FeedValidation:
    def __init__(self, ingest: Ingest, rules: FeedRules, limits: PreviewLimits) -> None:
        self._ingest = ingest
        self._rules = rules
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.at_once)
        # One provider may hold all the slots but one (all of one): a provider previewing in a
        # loop left every other provider a 503 (found in a trial).
        self._per_provider = max(1, limits.at_once - 1)
        self._running: collections.Counter[str] = collections.Counter()

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/v1/validate/feed",
                self.validate_feed,
                "validateFeed",
                "Preview a feed (by URL, or its body in any feed format); nothing is written",
                description=(
                    'Send `{"url", ...}` (the settings of PUT /v1/feeds/{feed_id}) to have the '
                    "feed fetched as a run would, or the feed itself: a JSON envelope or array, "
                    "JSON Lines (application/x-ndjson), CSV (text/csv), gzip-compressed with "
                    "Content-Encoding: gzip, as application/gzip with ?format=, or as it is "
                    "(a gzip body is recognised by its first bytes)."
                ),
                replies=(Reply(200, "the preview and the hold that would apply", FeedPreview),),
                problems=(400, 404, 408, 413, 415, 422, 503),
                params=PARAMS,
                body=Body(FeedRegistration, media_types=FEED_MEDIA_TYPES),
                tag="validation",
                security=PROVIDER_AUTH,
            )
        ]

    async def validate_feed(self, request: web.Request) -> web.Response:
        call = await self._ingest.validation_call(request, batch=True, media_types=FEED_MEDIA_TYPES)
        fmt = self._format(request)
        document = self._settings_document(call)
        registration = None
        if document is not None:
            with feed_errors():  # a bad setting is a 422 before any work
                registration = feed_settings.parse_feed_settings(document, self._rules.policy)
        async with self._slot(call.provider_id), self._ingest.db.connection() as conn:
            threshold = await self._threshold(conn, call)
            if registration is not None:
                assert document is not None
                if "deletion_threshold" not in document:
                    registration = dataclasses.replace(registration, threshold=threshold)
                # The connection is held while the feed downloads: previews at once are
                # few (`at_once`), so they never take the pool from the other calls.
                preview = await feed_preview.preview_url(
                    conn,
                    provider_id=call.provider_id,
                    settings=registration,
                    policy=self._rules.policy,
                    limits=self._limits.fetch,
                    max_items=self._limits.max_items,
                    max_item_bytes=self._limits.max_item_bytes,
                    feed_id=request.query.get("feed_id"),
                )
            else:
                preview = await feed_preview.preview_body(
                    conn,
                    call.body,
                    provider_id=call.provider_id,
                    fmt=fmt,
                    gzipped=request.content_type in GZIP,
                    # aiohttp has decoded a Content-Encoding: gzip body already
                    content_decoded=_content_encoded(request),
                    threshold=threshold,
                    # a body's cap holds once decompressed, as for Content-Encoding
                    max_decoded_bytes=self._ingest.batch.max_bytes,
                    max_items=self._limits.max_items,
                    max_item_bytes=self._limits.max_item_bytes,
                    feed_id=request.query.get("feed_id"),
                )
        return json_response(preview)

    @contextlib.asynccontextmanager
    async def _slot(self, provider_id: str) -> AsyncIterator[None]:
        """A preview slot: a 429 when the provider holds its share of them, a 503 when none frees
        up within `SLOT_WAIT`."""
        if self._running[provider_id] >= self._per_provider:
            raise too_many_requests(
                f"{self._running[provider_id]} feed preview(s) of this provider are running "
                "here; retry once one has ended",
                retry_after=5,
            )
        self._running[provider_id] += 1
        try:
            try:
                async with asyncio.timeout(SLOT_WAIT):
                    await self._slots.acquire()
            except TimeoutError:
                raise service_unavailable(
                    "too many feed previews are running; retry shortly", retry_after=5
                ) from None
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._running[provider_id] -= 1
            if not self._running[provider_id]:
                del self._running[provider_id]

    def _format(self, request: web.Request) -> FeedFormat:
        """The body's format: its Content-Type's, or `?format=` (default json) for
        application/gzip, whose type names none. `?format=` beside a type that names another
        format is a 400: obeying either would silently read the body as what it may not be."""
        declared = FORMAT_OF.get(request.content_type)
        named = request.query.get("format")
        if named is None:
            return declared or FeedFormat.JSON
        try:
            fmt = FeedFormat(named)
        except ValueError:
            formats = ", ".join(f.value for f in FeedFormat)
            raise bad_query("format", f"must be one of {formats}") from None
        if declared is not None and fmt is not declared:
            raise bad_query(
                "format",
                f"{fmt.value} contradicts Content-Type {request.content_type} ({declared.value}): "
                "?format= names the format of an application/gzip body (a feed's settings give "
                "theirs as `format`)",
            )
        return fmt

    @staticmethod
    def _settings_document(call: Call) -> dict[str, Any] | None:
        """The `{"url", ...}` form, told from a feed (an envelope has no `url`, an array is
        not an object); None for a feed body. A body that is not JSON is left to the preview,
        which reports it as the run would (`parse_error`)."""
        if call.request.content_type != JSON or len(call.body) > MAX_SETTINGS_BYTES:
            return None
        try:
            document = jsonsafe.loads(call.body)
        except jsonsafe.MalformedJSON:
            return None
        if isinstance(document, dict) and "url" in document and "assets" not in document:
            return document
        return None

    async def _threshold(self, conn: asyncpg.Connection, call: Call) -> DeletionThreshold:
        """The named feed's deletion threshold (404 for an unknown or another provider's)."""
        feed_id = optional_query(call.request.query, "feed_id")  # empty: a 400, as elsewhere
        if feed_id is None:
            return DEFAULT_DELETION_THRESHOLD
        if not feed_settings.FEED_ID_PATTERN.fullmatch(feed_id):
            raise not_found(f"unknown feed {feed_id[:140]!r}")
        with feed_errors():
            feed = await feeds.get_feed(conn, feed_id, provider_id=call.provider_id)
        stored = feed["deletion_threshold"]
        return DeletionThreshold(Decimal(str(stored["percent"])), int(stored["min_count"]))


def _content_encoded(request: web.Request) -> bool:
    """Whether aiohttp took a gzip layer off the body: it decodes `gzip` alone (the platform
    middleware refuses x-gzip and other codings it would pass through undecoded)."""
    return request.headers.get("Content-Encoding", "").strip().lower() == "gzip"

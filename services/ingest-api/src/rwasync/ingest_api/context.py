"""What every handler module of ingest-api shares: its collaborators, the 202 answer, and the
parameters and problem lists its operations declare."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Final

import structlog
from aiohttp import hdrs, web
from pydantic import StringConstraints

from rwasync.ingest_api.acceptance import AcceptanceClock, EventPublisher
from rwasync.ingest_api.bodies import JSON, BodyLimits
from rwasync.ingest_api.callers import TENANT_HEADER, Call, Callers
from rwasync.ingest_api.idempotency import HEADER as IDEMPOTENCY_HEADER
from rwasync.ingest_api.idempotency import KEY_PATTERN, IdempotencyKeys, checked_key
from rwasync.platform.db import Database
from rwasync.platform.http import json_response
from rwasync.platform.openapi import Param
from rwasync.schema.asset import ASSET_ID
from rwasync.schema.events import EventSource
from rwasync.schema.messages import WireEvent

# Security schemes of the provider API (see `ApiRegistry.security_schemes` in app.py).
PROVIDER_AUTH: Final = ("basic", "bearer")
# Problems every write can answer besides 401 and 429.
WRITE_PROBLEMS: Final = (400, 408, 409, 413, 415, 422, 503)
READ_PROBLEMS: Final = (400, 404, 503)

TENANT: Final = Param(
    TENANT_HEADER,
    "header",
    str,
    "the provider a partner credential acts for (required with partner credentials)",
)
IDEMPOTENCY_KEY: Final = Param(
    IDEMPOTENCY_HEADER,
    "header",
    Annotated[str, StringConstraints(pattern=KEY_PATTERN)],
    "a repeat with the same key and request gets the first answer again (kept at least 24 h)",
)
ASSET_ID_PARAM: Final = Param(
    "id",
    "path",
    Annotated[str, StringConstraints(pattern=f"^{ASSET_ID.pattern}$")],
    "the asset id (1-128 of A-Za-z0-9._:-)",
)


@dataclass(frozen=True)
class Ingest:
    db: Database
    callers: Callers
    publisher: EventPublisher
    clock: AcceptanceClock
    idempotency: IdempotencyKeys
    single: BodyLimits
    batch: BodyLimits

    async def write(
        self,
        request: web.Request,
        handle: Callable[[Call], Awaitable[web.Response]],
        *,
        batch: bool = False,
        media_types: Collection[str] = (JSON,),
        body_optional: bool = False,
        no_body: bool = False,
        source: EventSource = EventSource.PUSH,
    ) -> web.Response:
        """Every write: the caller and its body (`Callers.write`), then `handle` under the
        request's Idempotency-Key."""
        call = await self.callers.write(
            request,
            self.batch if batch else self.single,
            media_types=media_types,
            body_optional=body_optional,
            no_body=no_body,
            source=source,
        )
        return await self.idempotency.run(call, lambda: handle(call))

    async def validation_call(
        self, request: web.Request, *, batch: bool = False, media_types: Collection[str] = (JSON,)
    ) -> Call:
        """A validation call's caller and body, as a write's (`Callers.write`); its
        Idempotency-Key is checked for its form and otherwise ignored: a validation writes
        nothing, so there is nothing to replay."""
        call = await self.callers.write(
            request, self.batch if batch else self.single, media_types=media_types
        )
        checked_key(request)
        return call


def accepted(event: WireEvent) -> web.Response:
    """202 for one accepted event, pointing at its receipt."""
    event_id = str(event["event_id"])
    structlog.contextvars.bind_contextvars(event_id=event_id)
    return json_response(
        {"event_id": event_id, "status": "accepted"},
        status=202,
        headers={hdrs.LOCATION: f"/v1/events/{event_id}"},
    )

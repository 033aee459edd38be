"""Who is calling and what they sent: the credentials (the platform authenticator, with its
per-client limit on failures), the provider the request acts for (`X-Tenant-Id` for partner
credentials), the provider's request rate, and for writes the raw body within its limits."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from rwasync.ingest_api.bodies import JSON, BodyLimits, parse_json, read_body, require_media_type
from rwasync.ingest_api.limits import ProviderRates
from rwasync.platform.auth import Authenticator, single_header
from rwasync.platform.budget import BudgetTimeout, ByteBudget
from rwasync.platform.http import TRACE_ID, Problem, service_unavailable
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.timestamps import utc_now
from rwasync.store.tenants import ProviderCredential, ProviderIdentity, TenantRefused

TENANT_HEADER: Final = "X-Tenant-Id"
# The trace id travels in every event, whose envelope caps it.
MAX_TRACE_ID: Final = 128
# The answer to a body sent to a call that takes none (a run requested, approved or rejected).
NO_BODY: Final = "this call takes no body: send the request without one"
# Where a request keeps the bytes of the body budget it holds (`Callers.give_back`).
_HELD: Final = web.RequestKey("body_bytes_held", int)


@dataclass(frozen=True)
class Call:
    """An authenticated write: whose, when it arrived, and its raw body (b"" when none)."""

    request: web.Request
    identity: ProviderIdentity
    arrival: Arrival
    body: bytes

    @property
    def provider_id(self) -> str:
        return self.identity.provider_id

    def json(self, items: str | None = None) -> Any:
        """The body as JSON; 400 when it is not, an empty body included: where a body is
        required, nothing is not JSON (docs/api.md 2.6), not a document missing every field.
        `items`: a batch's key of its array of items, so that a 400 names the item at fault."""
        return parse_json(self.body, items)

    def optional_json(self) -> Any:
        """An optional body (a DELETE's) as JSON; an empty object when there is none (an empty
        body included). A body of JSON `null` is a body, not an object, and is refused as one
        (it was taken for no body: hostile trial)."""
        return parse_json(self.body) if self.body else {}


class Callers:
    def __init__(
        self,
        authenticator: Authenticator[ProviderCredential],
        rates: ProviderRates,
        bodies: ByteBudget | None = None,
    ) -> None:
        """`bodies`: the bytes of batch calls' bodies the process holds at once (none: no
        limit); a body that does not fit waits, within its deadline, then is a 503."""
        self._authenticator = authenticator
        self._rates = rates
        self._bodies = bodies

    async def identify(self, request: web.Request) -> ProviderIdentity:
        """The provider this request acts for (401, 400 or 429 otherwise)."""
        credential = await self._authenticator.authenticate_request(request)
        # One X-Tenant-Id at most, as with Authorization. An empty one names no provider, for any
        # credential: a 400, not read as absent (a provider's own credential was let through
        # while a partner's was refused, so a client's unset variable worked for one and not
        # the other).
        header = single_header(request, TENANT_HEADER)
        tenant = header.strip() if header is not None else None
        if tenant == "":
            raise Problem(
                400,
                "Bad Request",
                f"the {TENANT_HEADER} header is empty: name the provider in it, or send none "
                "with a provider's own credential",
                kind="tenant-required",
            )
        try:
            identity = credential.acting_for(tenant)
        except TenantRefused as refused:
            if tenant is None:
                raise Problem(400, "Bad Request", str(refused), kind="tenant-required") from None
            raise self._authenticator.refused(str(refused)) from None
        structlog.contextvars.bind_contextvars(provider_id=identity.provider_id)
        await self._rates.admit(identity.provider_id)
        return identity

    async def write(
        self,
        request: web.Request,
        limits: BodyLimits,
        *,
        media_types: Collection[str] = (JSON,),
        body_optional: bool = False,
        no_body: bool = False,
        source: EventSource = EventSource.PUSH,
    ) -> Call:
        """Authenticate, then take the body: declared as one of `media_types` (unless optional
        and absent), within the size limit and the deadline. A call that takes `no_body` refuses
        one that is not empty: 415 unless it is declared as one of `media_types` (the media type
        is checked first, as for every write), else 400; an empty body is none."""
        received_at = utc_now()
        identity = await self.identify(request)
        arrival = Arrival(
            provider_id=identity.provider_id,
            source=source,
            received_at=received_at,
            trace_id=request.get(TRACE_ID, "")[:MAX_TRACE_ID],
        )
        optional = body_optional or no_body
        if optional and not request.body_exists:
            return Call(request, identity, arrival, b"")
        if limits.budgeted:
            await self._reserve(request, limits)
        if optional and request.content_length is None and "Content-Type" not in request.headers:
            # A body sent chunked says only once read whether it is empty: an empty one is none.
            body = await read_body(request, limits)
            if not body:
                return Call(request, identity, arrival, b"")
        if no_body and request.content_type not in media_types:
            raise Problem(415, "Unsupported Media Type", NO_BODY, kind="unsupported-media-type")
        require_media_type(request, media_types)
        body = await read_body(request, limits)
        if no_body and body:
            raise Problem(400, "Bad Request", NO_BODY, kind="unexpected-body")
        return Call(request, identity, arrival, body)

    async def _reserve(self, request: web.Request, limits: BodyLimits) -> None:
        """A batch call's body takes its bytes from the process's budget before it is read:
        its declared size, or its limit when sent chunked or compressed (it may decode to
        that). A body that does not fit is not read (the client waits, its bytes in the
        network's buffers) until it does, within the body's deadline, then is a 503. The
        request holds them until its answer is made (`give_back`, the app's middleware),
        because its parsed items and events cost memory until then, several times the body.
        Taken once read, bodies still arriving were counted nowhere (thirty 16 MB uploads at
        once: 978 MB); taken as they arrive, bodies each holding part of the budget waited for
        one another for ever (hostile trials). Single-item calls take none: small, they must
        not queue behind batches. A body declared over its limit takes none: it is a 413."""
        if self._bodies is None or request.get(_HELD):
            return
        declared = request.content_length
        if declared is not None and declared > limits.max_bytes:
            return
        size = limits.max_bytes
        if declared is not None and hdrs.CONTENT_ENCODING not in request.headers:
            size = declared
        try:
            request[_HELD] = await self._bodies.take(size, limits.timeout)
        except BudgetTimeout:
            raise service_unavailable(
                "this ingest-api process is handling as many request bodies as its memory "
                f"allows and none finished within {limits.timeout:g} s: retry"
            ) from None

    def give_back(self, request: web.Request) -> None:
        """Return the body budget `request` holds, if any (once its answer is made)."""
        held = request.pop(_HELD, 0) if self._bodies is not None else 0
        if held:
            assert self._bodies is not None
            self._bodies.give_back(held)

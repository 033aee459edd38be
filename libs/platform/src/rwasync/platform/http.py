"""HTTP plumbing for every service: RFC 9457 problem responses, the middleware that produces
them, the same answers for requests aiohttp refuses before any handler runs, JSON responses, and
the `/healthz`, `/readyz` and `/metrics` routes.

Sections: problems and JSON answers; `Expect: 100-continue` (deferred until a handler reads the
body); the middleware; health routes and the app; requests aiohttp refuses before any handler
runs; serving (`run`, the garbage collector's settings)."""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any, Final

import orjson
import structlog
import uvloop
from aiohttp import http_exceptions, web, web_protocol, web_server
from aiohttp.http import HttpVersion11
from aiohttp.web_request import BaseRequest
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic_core import PydanticCustomError

from rwasync.platform import tracing
from rwasync.platform.db import is_transient
from rwasync.platform.metrics import HTTP_LATENCY, HTTP_REQUESTS
from rwasync.platform.settings import ServiceSettings
from rwasync.schema.fields import as_utc_datetime
from rwasync.schema.jsonsafe import dumps
from rwasync.schema.timestamps import query_hint

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://rwasync.dev/problems/"

# The request's trace id (from `traceparent`, else `X-Request-Id`, else generated), carried into
# published events and their message headers.
TRACE_ID = web.RequestKey("trace_id", str)


# --- problems and JSON answers -------------------------------------------------------------------


class Problem(Exception):
    """An error answered as application/problem+json; raise it from any handler."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = list(errors) if errors is not None else None
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        # The status line's reason phrase is the title, so the two never disagree (aiohttp's
        # phrase for 422 is still RFC 4918's "Unprocessable Entity"; RFC 9110 names it
        # "Unprocessable Content", as the title does).
        return web.Response(
            status=self.status,
            reason=self.title,
            body=orjson.dumps(body),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=dumps(data), content_type="application/json", headers=headers
    )


def bad_query(parameter: str, message: str, *, kind: str = "bad-query") -> Problem:
    """A query parameter (or, with `kind="bad-header"`, a header) that cannot be used: a 400 whose
    detail starts with the parameter's name and whose `errors` name it, the same shape in every
    service (docs/api.md 1.3)."""
    return Problem(
        400,
        "Bad Request",
        f"{parameter}: {message}",
        kind=kind,
        errors=[{"parameter": parameter, "message": message}],
    )


def optional_query(query: Mapping[str, str], name: str) -> str | None:
    """A query parameter that may be left out, but not sent empty: `since=` read as no `since`
    restarted the change feed from its oldest entry, `cursor=` a listing from its first page
    (a client's loop that sent an empty cursor when it meant the end read the first page again)."""
    value = query.get(name)
    if value == "":
        raise bad_query(name, "must not be empty: leave the parameter out instead")
    return value


def query_timestamp(parameter: str, text: str) -> datetime:
    """A timestamp query parameter's value, in UTC: RFC 3339 with an offset, read by the same
    rule as the documents' timestamps (`datetime.fromisoformat` would also take ISO 8601 forms
    that are not RFC 3339, such as `2026-W30-4T08:42:26Z`); a 400 naming `parameter` otherwise,
    with a hint for a `+` that arrived as a space."""
    try:
        return as_utc_datetime(text)
    except PydanticCustomError as exc:  # the rule's own words: malformed, naive, out of range
        raise bad_query(parameter, exc.message() + query_hint(text)) from None


def unauthorized(detail: str, *, scheme: str = 'Basic realm="rwasync", Bearer') -> Problem:
    return Problem(
        401, "Unauthorized", detail, kind="unauthorized", headers={"WWW-Authenticate": scheme}
    )


def service_unavailable(detail: str, *, retry_after: int = 1) -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        detail,
        kind="service-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def too_many_requests(detail: str, *, retry_after: int) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        detail,
        kind="too-many-requests",
        headers={"Retry-After": str(retry_after)},
    )


# --- Expect: 100-continue -------------------------------------------------------------------------
# aiohttp answers `100 Continue` before the handler runs, so a client declaring a body over the
# limit (or without valid credentials) was invited to upload all of it before its 413 (or 401).
# Routes with bodies defer it instead: the handler sends it when it starts reading the body, once
# the request has passed its checks; a request refused before that gets its answer at once.


def _waits_for_continue(request: web.Request) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


async def defer_continue(request: web.Request) -> web.StreamResponse | None:
    """The expect handler of every API route: sends nothing yet (see `send_continue`); an
    expectation other than 100-continue is a 417 problem."""
    if not _waits_for_continue(request):
        return Problem(
            417,
            "Expectation Failed",
            "the only expectation this server meets is Expect: 100-continue",
            kind="expectation-failed",
        ).response()
    return None


async def _close_when_body_unread(request: web.Request, response: web.StreamResponse) -> None:
    """An answer given before the body was read, to a client that waits for `100 Continue`,
    closes the connection (RFC 9110 10.1.1): the client may then skip the body it declared,
    and on a kept connection its next request would be read as that body."""
    if "Expect" in request.headers and not request.content.is_eof():
        response.force_close()
        # (this hook runs after aiohttp wrote the response's Connection header: say it here)
        response.headers["Connection"] = "close"


async def send_continue(request: web.Request) -> None:
    """`100 Continue`, if the client waits for it before sending the body it declared."""
    if request.version == (1, 1) and _waits_for_continue(request) and not request.content.is_eof():
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # what was written is not part of the response (aiohttp's own expect handler does this)
        request.writer.output_size = 0


# --- the middleware ------------------------------------------------------------------------------


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


# Methods counted by name in the request metrics; any other the HTTP parser lets through (WebDAV's
# and the like) counts as "other", so the label sets stay few.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _request_metrics(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter's and latency histogram's children for this route, method and status,
    looked up once (`labels()` checks and locks on every call)."""
    key = (route, method if method in _METHODS else "other", status)
    children = _request_children.get(key)
    if children is None:
        labels = (key[0], key[1], str(status))
        children = _request_children[key] = (
            HTTP_REQUESTS.labels(*labels),
            HTTP_LATENCY.labels(*labels),
        )
    return children


# Probes and scrapes answer every few seconds; their lines would drown the requests that matter.
_QUIET_ROUTES: Final = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every error into problem+json, count, time and log every request under its trace id
    (the log line carries what the handler bound: provider_id, asset_id, event_id)."""
    trace_id = tracing.request_trace_id(request.headers)
    request[TRACE_ID] = trace_id
    tracing.bind(trace_id)
    started = time.perf_counter()
    route = _route_name(request)
    try:
        response = await _answer(request, handler, route)
        if not response.prepared:  # a stream has sent its headers already
            response.headers["X-Trace-Id"] = trace_id
        elapsed = time.perf_counter() - started
        counted, timed = _request_metrics(route, request.method, response.status)
        counted.inc()
        timed.observe(elapsed)
        if route not in _QUIET_ROUTES:
            log.info(
                "request answered",
                method=request.method,
                route=route,
                status=response.status,
                ms=round(elapsed * 1000, 1),
            )
        return response
    finally:
        structlog.contextvars.unbind_contextvars("trace_id", "provider_id", "asset_id", "event_id")
        tracing.current_trace_id.set("")


# The Content-Encodings aiohttp takes off a request body ("identity" is none). It passes any
# other value through as if there were none (x-gzip, compress, a list such as "gzip, gzip"): the
# body was then taken as it came, garbled or, worse, accepted as sent (hostile trial).
BODY_CODINGS: Final = frozenset({"gzip", "deflate", "identity"})


def _refused_body_coding(request: web.Request) -> Problem | None:
    """Unless a body's Content-Encoding is one aiohttp decodes and its Transfer-Encoding (if any)
    is `chunked` alone, the 400 to answer before any handler (and authentication) runs. aiohttp's
    parser reads `foo, chunked` as chunked, which a proxy in front may read otherwise (request
    smuggling)."""
    headers = request.headers
    codings = headers.getall("Content-Encoding", ())
    if codings and (len(codings) > 1 or codings[0].strip().lower() not in BODY_CODINGS):
        return Problem(
            400,
            "Bad Request",
            "the request is not valid HTTP/1.1: the body's Content-Encoding is not one this "
            "service decodes (gzip, deflate, each alone)",
            kind="malformed-request",
        )
    transfer = headers.getall("Transfer-Encoding", ())
    if transfer and (len(transfer) > 1 or transfer[0].strip().lower() != "chunked"):
        return Problem(
            400,
            "Bad Request",
            "the request is not valid HTTP/1.1: the Transfer-Encoding is not chunked alone "
            "(no other transfer coding is served)",
            kind="malformed-request",
        )
    return None


async def _answer(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    route: str,
) -> web.StreamResponse:
    try:
        if request.method == "CONNECT":
            # Its target is an authority (host:port), never a path: the router answered 404
            # "no such resource: " with an empty path (hostile trial).
            raise Problem(
                400,
                "Bad Request",
                "CONNECT is not served: this service is no proxy; "
                "send requests to a path such as /v1/assets",
                kind="malformed-request",
            )
        if request.body_exists and (refused := _refused_body_coding(request)) is not None:
            answer = refused.response()
            answer.force_close()  # the body is not read: nothing after it can be a request
            return answer
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep headers such as Allow (405) but not the plain-text body's own.
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        detail = exc.text or exc.reason
        if isinstance(exc, web.HTTPNotFound) and detail == f"{exc.status}: {exc.reason}":
            detail = f"no such resource: {request.path}"  # aiohttp's router found no route
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            detail = f"{exc.method} is not allowed on {request.path}; allowed: {allowed}"
        return Problem(exc.status, exc.reason, detail, headers=headers).response()
    except Exception as exc:
        if is_transient(exc):
            # The database is away or a read timed out: a retry may well succeed.
            log.warning("database unavailable", route=route, error=repr(exc))
            return service_unavailable(
                "the store cannot be reached right now; retry shortly"
            ).response()
        log.exception("unhandled error", route=route, method=request.method)
        return Problem(
            500, "Internal Server Error", "an unexpected error occurred; it has been logged"
        ).response()


ReadinessCheck = Callable[[], Awaitable[tuple[str, bool]]]


# --- health routes and the app -------------------------------------------------------------------


def add_health_routes(app: web.Application, checks: Iterable[ReadinessCheck]) -> None:
    """`/healthz`: the process answers; `/readyz`: every dependency answers; `/metrics`."""
    checks = tuple(checks)

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results = dict([await check() for check in checks])
        ready = all(results.values())
        # Its own body (which checks fail), not a problem: a probe's answer, documented so; a
        # 503 still says when to ask again, as every other 503 does.
        return json_response(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status=200 if ready else 503,
            headers=None if ready else {"Retry-After": "1"},
        )

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


# aiohttp's limit on the request line (and on each header line, which stays at it everywhere).
MAX_LINE_SIZE: Final = 8190


def new_app(
    *, client_max_size: int = 1024**2, max_line_size: int = MAX_LINE_SIZE
) -> web.Application:
    """`max_line_size`: the longest request line taken (a longer one is a 400), for a
    service whose documented queries need more than aiohttp's 8190 bytes (pricing's 500 ids)."""
    # Requests aiohttp cannot parse never reach the middleware: `_ProblemRequestHandler` answers.
    web_server.RequestHandler = _ProblemRequestHandler  # type: ignore[attr-defined]
    # As handler_args, so both `run` and a test server build their request handlers with it.
    handler_args = {"max_line_size": max_line_size} if max_line_size != MAX_LINE_SIZE else None
    app = web.Application(
        middlewares=[problem_middleware],
        client_max_size=client_max_size,
        handler_args=handler_args,
    )
    app.on_response_prepare.append(_close_when_body_unread)
    return app


# --- requests aiohttp refuses before any handler runs ------------------------------------------
# aiohttp answers a request it cannot parse (a bad chunk size, a duplicate Content-Length, a
# header over 8190 bytes, an invalid header character, an undecodable Content-Encoding) in its
# `RequestHandler.handle_error`: a text/plain body, and an error-level log line whose traceback
# quotes the offending line, which can be an Authorization header or a URL's reader token.
# `new_app` makes aiohttp's `Server` build `_ProblemRequestHandler` instead (the name that
# `Server.__call__` reads), which answers problem+json and logs only the error's type.

# What aiohttp's words quote of the request: a header name stays, anything else (a header's
# value, the request line, raw bytes) may be a credential and is left out.
_QUOTED: Final = re.compile(r"""(?<![A-Za-z])(?:b?'(?:[^'\\]|\\.)*'?|b?"(?:[^"\\]|\\.)*"?)""")
_HEADER_NAME: Final = re.compile(r"""b?['"][A-Za-z0-9-]{1,40}['"]""")


def _unquoted(match: re.Match[str]) -> str:
    return match.group() if _HEADER_NAME.fullmatch(match.group()) else "…"


# What is wrong, for the refusals whose words carry the request itself (its target, its request
# line, a header's name or line): said in these words alone.
_REFUSED_PARTS: Final = (
    (http_exceptions.ContentEncodingError, "the body's Content-Encoding is not one this service "
     "decodes (gzip, deflate), or does not match the body"),
    (http_exceptions.InvalidURLError, "the request target is not a valid URL"),
    (http_exceptions.BadHttpMethod, "the method is not a valid HTTP method"),
    (http_exceptions.BadStatusLine, "the request line is not valid"),
    (http_exceptions.InvalidHeader, "a header's name is not valid"),
)  # fmt: skip


def malformed_request_detail(
    exc: BaseException | None, status: int, *, max_line_size: int = MAX_LINE_SIZE
) -> str:
    """What was wrong with a request aiohttp refused, quoting nothing the client sent."""
    if isinstance(exc, http_exceptions.LineTooLong):
        if max_line_size == MAX_LINE_SIZE:
            words = f"the request line or a header is longer than {MAX_LINE_SIZE} bytes"
        else:
            words = (
                f"the request line is longer than {max_line_size} bytes, "
                f"or a header longer than {MAX_LINE_SIZE}"
            )
        return f"the request is not valid HTTP/1.1: {words}"
    for kind, words in _REFUSED_PARTS:
        if isinstance(exc, kind):
            return f"the request is not valid HTTP/1.1: {words}"
    if isinstance(exc, http_exceptions.HttpProcessingError):
        # The parser's own words (a duplicate Content-Length, a bad chunk size...) come first,
        # any echo of the request after them, on lines of its own or quoted.
        said = _QUOTED.sub(_unquoted, exc.message.partition("\n")[0]).strip().rstrip(".:")
        return f"the request is not valid HTTP/1.1: {said or type(exc).__name__}"
    if status >= 500:
        return "the service failed to answer this request"
    return "the request is not valid HTTP/1.1"


class BodyBroken(web.RequestPayloadError):
    """The body's framing broke after its request reached a handler (a chunk size that is not
    hexadecimal, say): what is wrong, quoting nothing the client sent."""


class _ProblemRequestHandler(web_protocol.RequestHandler):
    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body left unread (a 401 answered before it, a call that takes none) is drained
        # after the answer; one that does not decode as its Content-Encoding says then failed
        # there, logged as an error-level "Unhandled exception" with three tracebacks: any
        # client, no credentials needed, could flood the log and page on it (security trial).
        # The answer went out already; the connection closes. One warning line says so.
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            log.warning(
                "request body could not be read after the answer; connection closed",
                error=type(exc.__cause__ or exc).__name__,
            )
            return
        super().log_exception(*args, **kw)

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        # aiohttp drops the body of a request whose framing breaks mid-way without telling it,
        # and queues the refusal as a request of its own: the handler reading the body waited
        # for the rest until its deadline (a 408 for a 400), and the refusal was answered after
        # it. The refusal goes to the body's reader instead, whose answer closes the connection.
        request = self._current_request
        if request is None or len(self._messages) <= queued:
            return
        refused = self._messages[-1][0]
        if isinstance(refused, web_protocol._ErrInfo) and not request.content.is_eof():
            self._messages.pop()
            log.warning(
                "malformed request refused",
                status=400,
                error=type(refused.exc).__name__,
                client=request.remote,
            )
            detail = malformed_request_detail(refused.exc, 400, max_line_size=self.max_line_size)
            request.content.set_exception(BodyBroken(detail))
            self.close()  # once it is answered: nothing after it can be read as a request

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Every answer names its trace, as the middleware's do (docs/api.md 1.2): the request's
        # own if the middleware saw it, else from its headers. A request aiohttp could not parse
        # arrives as its ERROR pseudo-request, without headers: a new trace id.
        trace_id = request.get(TRACE_ID) or tracing.request_trace_id(request.headers)
        if status >= 500:
            # Our own failure (an exception past the middleware, a handler timing out): its
            # traceback is ours to read, not the client's request.
            log.error(
                "request failed outside the middleware",
                status=status,
                trace_id=trace_id,
                exc_info=exc,
            )
        elif isinstance(exc, http_exceptions.BadHttpMethod) and self._request_count == 1:
            # TLS or other traffic that is not HTTP at all, as any open port gets (aiohttp: debug)
            log.debug("not HTTP traffic refused", client=request.remote, trace_id=trace_id)
        else:
            log.warning(
                "malformed request refused",
                status=status,
                error=type(exc).__name__ if exc is not None else None,
                client=request.remote,
                trace_id=trace_id,
            )
        if request.writer.output_size > 0:  # as aiohttp: the answer has begun, the link is broken
            raise ConnectionError("the response was begun: no error answer can follow it")
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        kind = None if status >= 500 else "malformed-request"  # 5xx: by its title
        detail = malformed_request_detail(exc, status, max_line_size=self.max_line_size)
        problem = Problem(status, title, detail, kind=kind, headers={"X-Trace-Id": trace_id})
        answer = problem.response()
        answer.force_close()
        if request._message is web_protocol.ERROR:  # (`Request.message` is deprecated)
            # aiohttp's pseudo-request says HTTP/1.0, which its answer's status line repeats; the
            # client's version is unknown (its request could not be read), and a server answers
            # in the highest version it speaks (RFC 9110 6.2). The answer has a Content-Length
            # and closes the connection, as an HTTP/1.0 client also understands.
            request._version = HttpVersion11
        return answer


# --- serving -------------------------------------------------------------------------------------


# On SIGTERM, requests in flight get this long to finish before they are cancelled.
SHUTDOWN_TIMEOUT: Final = 10.0

# The cyclic garbage collector's thresholds while serving (CPython's default: 700, 10, 10).
# A consumer holds tens of thousands of decoded events (prefetched messages waiting for their
# transaction), and every collection walks the tracked objects of the generations it collects:
# with the defaults, collections cost decoding three to four times its own CPU (py-spy charges
# it to pydantic's decode, which allocates). Almost all garbage here is freed by reference
# counting; the rare cycles (exceptions, futures) wait a little longer.
GC_THRESHOLDS: Final = (100_000, 50, 100)


def freeze_start_up_objects() -> None:
    """Every service, once its app is built: what start-up allocated (modules, pydantic schemas,
    settings: about 90,000 objects in ingest-api) is never garbage, so it is frozen out of the
    collector's sight. Else every full collection walks it all, and every request in flight waits
    for it: 60–100 ms each in ingest-api under load, several a minute at 1,000 requests/s."""
    gc.collect()
    gc.freeze()


def tune_garbage_collector() -> None:
    """For the consumers (reconciler, pricing): collect less often (GC_THRESHOLDS). Not for
    ingest-api: there every request leaves a few reference cycles (aiohttp's request and response
    objects), and with them piling up between rare collections its single PUT ran about a quarter
    slower relative to the HTTP ceiling in two A/B pairs."""
    gc.set_threshold(*GC_THRESHOLDS)


def run(app: web.Application, settings: ServiceSettings, *, reuse_port: bool = False) -> None:
    """Serve until SIGINT/SIGTERM. Then aiohttp stops listening, closes idle connections, runs
    the app's shutdown hooks (a consumer stops consuming), lets requests in flight finish for up
    to SHUTDOWN_TIMEOUT seconds, and runs the cleanup contexts (connections close) in reverse.
    With `reuse_port`, several processes may listen on the same port (SO_REUSEPORT).

    It listens on the settings' `host` and `port`, on the event loop they name (`event_loop`:
    uvloop, or the standard library's). Their `http_idle_timeout` is aiohttp's keep-alive timer,
    which also runs from the moment a connection opens until its first request head is complete:
    a client trickling its headers (slow loris) is cut off after it, as is an idle keep-alive
    connection. A body that is never read is
    drained for at most aiohttp's lingering time (10 s), then the connection closes; a body a
    handler reads has the handler's own deadline (ingest-api's `body_timeout`)."""

    async def announce(_: web.Application) -> None:
        log.info("shutting down: no new requests, finishing those in flight")

    app.on_shutdown.insert(0, announce)
    freeze_start_up_objects()
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=settings.http_idle_timeout,
            reuse_port=reuse_port or None,
            loop=uvloop.new_event_loop() if settings.event_loop == "uvloop" else None,
        )
    except OSError as exc:  # socket.gaierror included: a host name that does not resolve
        if isinstance(exc, TimeoutError):  # an OSError too, and never a listening problem
            raise
        # A port in use, an address not of this machine: one log line naming the settings, not
        # a traceback (which is no JSON line either: operator trial).
        log.error(
            "cannot listen: change the address or stop what holds the port",
            address=f"{settings.host}:{settings.port}",
            settings=f"{settings.variable('host')}, {settings.variable('port')}",
            error=exc.strerror or str(exc),
        )
        raise SystemExit(1) from None
    log.info("stopped")

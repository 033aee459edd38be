"""Fetching a feed over HTTP without letting a provider's URL reach inside the network.

Every address the client connects to is checked against the `AddressPolicy`: host names through
a resolver that drops refused addresses (so DNS answers cannot smuggle in a private address, and
the address checked is the one connected to), IP literals before each request (aiohttp does not
consult the resolver for them), and each redirect hop anew (redirects are followed here, not by
aiohttp). Bodies are streamed under a size cap, an idle timeout per read and a total timeout per
try. 5xx answers, connection errors and timeouts are tried again; everything else fails at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from rwasync.platform.retry import retrying
from rwasync.schema.addresses import AddressPolicy, AddressRefused
from rwasync.schema.feeds import ReasonCode
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES: Final = 64 * 1024
USER_AGENT: Final = "rwasync-feed-poller/0.1"


class FetchFailed(Exception):
    """The feed could not be fetched; `reason_code` says why, as the run records it."""

    def __init__(self, reason_code: ReasonCode, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 10.0
    # Seconds a single read may wait for the next chunk before the try fails.
    read_timeout: float = 30.0
    # Seconds one try may take, redirects and body included.
    total_timeout: float = 600.0
    tries: int = 3
    retry_delay: float = 30.0
    max_redirects: int = 5
    max_body_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class FetchResult:
    """The raw body as received (not decoded), with what later steps need from the response."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    # When the successful try began: the `received_at` of the run's events.
    started_at: datetime
    tries: int

    @property
    def byte_count(self) -> int:
        return len(self.body)


class GuardedResolver(AbstractResolver):
    """Resolves through another resolver and keeps only addresses the policy permits.

    aiohttp connects to exactly the addresses returned here, so a name cannot resolve to a
    public address when checked and a private one when connected (DNS rebinding).
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        permitted: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if self._policy.permits(address):
                permitted.append(result)
            else:
                refused.append(result["host"])
        if refused:
            log.info("resolved addresses refused", host=host, refused=refused)
        if not permitted:
            raise AddressRefused(
                f"{host} resolves only to addresses that are not public and not allow-listed "
                f"({', '.join(sorted(set(refused)))})"
            )
        return permitted

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: URL, policy: AddressPolicy) -> None:
    if url.scheme not in ("http", "https") or not url.host:
        raise FetchFailed(
            ReasonCode.FETCH_ERROR, f"not an absolute http or https URL: {url.scheme}:..."
        )
    try:
        policy.check_host_literal(url.host)
    except AddressRefused as exc:
        raise FetchFailed(ReasonCode.ADDRESS_REFUSED, str(exc)) from exc


def _redact(url: URL) -> str:
    """The URL without credentials or query (which may carry tokens), for reasons and logs."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


async def _read_body(response: aiohttp.ClientResponse, limits: FetchLimits) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limits.max_body_bytes:
        raise FetchFailed(
            ReasonCode.SIZE_LIMIT,
            f"the feed declares {declared} bytes, over the cap of {limits.max_body_bytes}",
        )
    body = bytearray()
    # Each read waits at most `read_timeout` for the next chunk (aiohttp's sock_read).
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise FetchFailed(
                ReasonCode.SIZE_LIMIT,
                f"the feed is larger than the cap of {limits.max_body_bytes} bytes",
            )
    return bytes(body)


async def _try_once(
    session: aiohttp.ClientSession, url: URL, policy: AddressPolicy, limits: FetchLimits
) -> tuple[URL, aiohttp.ClientResponse, bytes]:
    """One try: follow up to `max_redirects` hops, checking each, then read the body."""
    for _hop in range(limits.max_redirects + 1):
        _check_url(url, policy)
        async with session.get(url, allow_redirects=False) as response:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(
                        ReasonCode.HTTP_STATUS, f"HTTP {response.status} without a Location header"
                    )
                url = url.join(URL(location))
                continue
            if response.status >= 500:
                raise FetchFailed(
                    ReasonCode.HTTP_STATUS,
                    f"HTTP {response.status} from {_redact(url)}",
                    retryable=True,
                )
            if response.status != 200:
                # 4xx and anything unexpected (204, 304 without a conditional request) fail now.
                raise FetchFailed(
                    ReasonCode.HTTP_STATUS, f"HTTP {response.status} from {_redact(url)}"
                )
            body = await _read_body(response, limits)
            return url, response, body
    raise FetchFailed(ReasonCode.FETCH_ERROR, f"more than {limits.max_redirects} redirects")


def _classify(exc: BaseException) -> FetchFailed:
    """A client-side failure as a run reason: timeouts and connection errors may be retried."""
    if isinstance(exc, FetchFailed):
        return exc
    if isinstance(exc, AddressRefused):
        return FetchFailed(ReasonCode.ADDRESS_REFUSED, str(exc))
    if isinstance(exc, TimeoutError):
        return FetchFailed(ReasonCode.TIMEOUT, f"timed out ({type(exc).__name__})", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchFailed(ReasonCode.FETCH_ERROR, f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchFailed(ReasonCode.FETCH_ERROR, f"cannot resolve host: {exc}", retryable=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return FetchFailed(ReasonCode.FETCH_ERROR, f"{type(exc).__name__}: {exc}", retryable=True)
    raise exc


async def fetch_feed(url: str, policy: AddressPolicy, limits: FetchLimits) -> FetchResult:
    """Fetch the feed at `url`; raises FetchFailed with the run's reason code."""
    start_url = URL(url)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout
    )
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), use_dns_cache=False, force_close=True
    )
    headers = CIMultiDict({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        auto_decompress=False,
        trust_env=False,
    ) as session:
        tries = 0
        try:
            async for attempt in retrying(
                f"feed fetch of {_redact(start_url)}",
                retry_on=lambda exc: isinstance(exc, FetchFailed) and exc.retryable,
                fixed=limits.retry_delay,
                attempts=limits.tries,
            ):
                with attempt:
                    tries += 1
                    started_at = utc_now()
                    try:
                        async with asyncio.timeout(limits.total_timeout):
                            final_url, response, body = await _try_once(
                                session, start_url, policy, limits
                            )
                    except Exception as exc:  # classified; unknown errors are re-raised there
                        raise _classify(exc) from exc
        except FetchFailed as failure:
            if failure.retryable and tries > 1:
                raise FetchFailed(
                    failure.reason_code, f"{failure.reason} (after {tries} tries)"
                ) from failure
            raise
        return FetchResult(
            url=str(final_url),
            status=response.status,
            headers=response.headers,
            body=body,
            started_at=started_at,
            tries=tries,
        )

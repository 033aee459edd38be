"""Downloading a feed: guarded (see `guard`), conditional, capped, and spooled to a file.

One try follows up to `max_redirects` hops, then streams the body to a temporary file while
decoding it (gzip by `Content-Encoding`, a `.gz` path, or the body's own first bytes) only to
measure and hash it: the compressed and the decoded size are capped as they grow, so a gzip bomb
stops at the cap, and a try fails when fewer than `min_rate_bytes` arrive in `min_rate_seconds`
or it outlasts `total_timeout`. 5xx answers, connection errors and timeouts are tried again from
scratch; everything else fails at once. The body is read from the file afterwards
(`open_decoded`), so memory never grows with the feed, a body identical to the last one is known
before any parsing, and a failed try never leaves half a snapshot behind.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Final

import aiohttp
import structlog
from multidict import CIMultiDict
from yarl import URL

from rwasync.feeds.guard import GuardedResolver, redact, same_origin
from rwasync.feeds.spool import forget, spool_file
from rwasync.platform.retry import retrying
from rwasync.schema.addresses import AddressPolicy, AddressRefused
from rwasync.schema.feeds import ReasonCode, shown_reason
from rwasync.schema.timestamps import utc_now

log = structlog.get_logger(__name__)

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES: Final = 64 * 1024
USER_AGENT: Final = "rwasync-feed-poller/0.2"
KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
# What every gzip member starts with. No usable feed starts so (JSON cannot start with a control
# character, no CSV header can, and a JSON Lines line that did would be an invalid item), so a
# body that does is read as gzip whatever its URL and headers say, under the same caps.
GZIP_MAGIC: Final = b"\x1f\x8b"
# The `Content-Encoding` values of a fetched feed that mean gzip, which a run takes off once.
GZIP_ENCODINGS: Final = ("gzip", "x-gzip")
# A body gzip-compressed twice (a .gz file served with `Content-Encoding: gzip`): refused by name,
# rather than read as a first item in its format that is garbled.
GZIP_TWICE: Final = (
    "the body is gzip inside gzip (a .gz file sent with Content-Encoding: gzip?): compress it once"
)


_FOUR_DIGIT_YEAR: Final = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")


class FetchFailed(Exception):
    """The feed could not be fetched; `reason_code` says why, as the run records it."""

    def __init__(self, reason_code: ReasonCode, reason: str, *, retryable: bool = False) -> None:
        reason = shown_reason(reason)  # it may quote the server: a bad status line, a header
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 10.0
    # A try fails when fewer than `min_rate_bytes` arrive in any `min_rate_seconds`.
    min_rate_bytes: int = 10 * KIB
    min_rate_seconds: float = 30.0
    # Seconds one try may take, redirects and body included.
    total_timeout: float = 600.0
    tries: int = 3
    retry_delay: float = 30.0
    max_redirects: int = 5
    max_compressed_bytes: int = 512 * MIB
    max_decoded_bytes: int = 2 * GIB


@dataclass(frozen=True)
class Validators:
    """What the last good response said about itself, sent back as a conditional request."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        sent = {}
        if self.etag:
            sent["If-None-Match"] = self.etag
        if self.last_modified:
            sent["If-Modified-Since"] = self.last_modified
        return sent


@dataclass
class Downloaded:
    """A finished download: `not_modified` (a 304, no body) or a body spooled to `path`."""

    url: str
    not_modified: bool
    # When the successful try began: the `received_at` of the run's events.
    started_at: datetime
    tries: int
    validators: Validators
    gzip: bool = False
    body_bytes: int = 0
    decoded_bytes: int = 0
    # SHA-256 of the decoded body.
    sha256: bytes | None = None
    path: Path | None = None
    # The spool file's owner lock (see `spool`), held until `discard()`.
    held: int | None = field(default=None, repr=False)

    @property
    def last_modified_at(self) -> datetime | None:
        """The response's `Last-Modified` as an instant, if it sent a valid one."""
        if not self.validators.last_modified:
            return None
        text = self.validators.last_modified
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        # The email parser reads years 0-99 as 2000-2099 even when written with four digits
        # (`0001` became 2001: newcomer trial); such a header, or one before the year 1000 that
        # no other timestamp may have, is no snapshot time.
        written = _FOUR_DIGIT_YEAR.search(text)
        if (written is not None and int(written.group()) != moment.year) or moment.year < 1000:
            return None
        return moment if moment.tzinfo is not None else None

    def open_decoded(self) -> IO[bytes]:
        """The decoded body as a binary stream (read it in pieces)."""
        if self.path is None:
            raise ValueError("a not-modified response has no body")
        if self.gzip:
            return gzip.GzipFile(self.path, "rb")  # type: ignore[return-value]
        return self.path.open("rb")

    def discard(self) -> None:
        if self.path is not None:
            forget(self.path, self.held)
            self.path = self.held = None


class _Decoder:
    """Decodes as the body arrives, only to count and hash it: caps hold on both sizes. A body
    not declared gzip is still decoded as gzip when it starts with `GZIP_MAGIC`."""

    def __init__(self, compressed: bool, limits: FetchLimits) -> None:
        self._limits = limits
        self.compressed = compressed
        self._in_member = False
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if compressed else None
        # The first bytes of a body not declared gzip, held until there are enough to tell
        # (a chunk may be a single byte).
        self._head: bytes | None = None if compressed else b""
        self.body_bytes = 0
        self.decoded_bytes = 0
        self.sha256 = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes > self._limits.max_compressed_bytes:
            raise FetchFailed(
                ReasonCode.SIZE_LIMIT,
                f"the feed is larger than the cap of {self._limits.max_compressed_bytes} bytes",
            )
        if self._head is not None:
            data = self._head + data
            if len(data) < len(GZIP_MAGIC):
                self._head = data
                return
            self._head = None
            if data.startswith(GZIP_MAGIC):
                self.compressed = True
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._inflate is None:
            self._count(data)
            return
        while data:
            try:
                # Bounded output per call, so one small chunk can never inflate to gigabytes.
                out = self._inflate.decompress(data, CHUNK_BYTES * 4)
            except zlib.error as exc:
                raise FetchFailed(
                    ReasonCode.PARSE_ERROR, f"the gzip body is corrupt: {exc}"
                ) from exc
            self._in_member = True
            self._count(out)
            if self._inflate.eof:  # one member ended; gzip allows another to follow
                self._in_member = False
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if not data.strip(b"\x00"):  # zero padding after the last member
                    return
            else:
                data = self._inflate.unconsumed_tail

    def _count(self, data: bytes) -> None:
        if self.compressed and self.decoded_bytes == 0 and data.startswith(GZIP_MAGIC):
            # A gzip file served with `Content-Encoding: gzip` (or gzipped twice): read on, it
            # failed as a garbled first line of its format, which named no cause.
            raise FetchFailed(ReasonCode.PARSE_ERROR, GZIP_TWICE)
        self.decoded_bytes += len(data)
        if self.decoded_bytes > self._limits.max_decoded_bytes:
            raise FetchFailed(
                ReasonCode.SIZE_LIMIT,
                f"the decoded feed is larger than the cap of {self._limits.max_decoded_bytes} "
                "bytes",
            )
        self.sha256.update(data)

    def finish(self) -> None:
        if self._head:  # a body shorter than `GZIP_MAGIC`
            self._count(self._head)
        self._head = None
        if self._in_member:
            raise FetchFailed(ReasonCode.PARSE_ERROR, "the gzip body is truncated")


def _url(text: str, what: str) -> URL:
    """`text` as a URL, or a `fetch_error` run naming `what` (a port out of range, a host IDNA
    refuses, a broken IPv6 literal): never the run's internal error."""
    try:
        return URL(text)
    except ValueError as exc:  # UnicodeError included
        raise FetchFailed(ReasonCode.FETCH_ERROR, f"{what} is not a valid URL: {exc}") from None


def _check_url(url: URL, policy: AddressPolicy) -> None:
    if url.scheme not in ("http", "https") or not url.host:
        raise FetchFailed(
            ReasonCode.FETCH_ERROR, f"not an absolute http or https URL: {url.scheme}:..."
        )
    if url.user is not None or url.password is not None:
        # Registration refuses such a URL; a redirect could still name one, and aiohttp would
        # send it as Basic credentials to wherever the hop leads (hostile trial).
        raise FetchFailed(
            ReasonCode.FETCH_ERROR,
            f"{redact(url)} carries credentials (user:password@), which are never sent: "
            "give them as the feed's auth",
        )
    try:
        policy.check_host_literal(url.host)
    except AddressRefused as exc:
        raise FetchFailed(ReasonCode.ADDRESS_REFUSED, str(exc)) from exc


def _is_gzip(response: aiohttp.ClientResponse, url: URL) -> bool:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in GZIP_ENCODINGS:
        return True
    if encoding not in ("", "identity"):
        raise FetchFailed(ReasonCode.PARSE_ERROR, f"unsupported Content-Encoding {encoding!r}")
    return url.path.lower().endswith(".gz")


async def _spool(
    response: aiohttp.ClientResponse, url: URL, out: IO[bytes], limits: FetchLimits
) -> _Decoder:
    declared = response.content_length
    if declared is not None and declared > limits.max_compressed_bytes:
        raise FetchFailed(
            ReasonCode.SIZE_LIMIT,
            f"the feed declares {declared} bytes, over the cap of {limits.max_compressed_bytes}",
        )
    decoder = _Decoder(_is_gzip(response, url), limits)
    window_start, window_bytes = time.monotonic(), 0
    # Each read waits at most `min_rate_seconds` (aiohttp's sock_read); a trickle is caught by the
    # rate window below.
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        decoder.feed(chunk)
        out.write(chunk)
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= limits.min_rate_seconds:
            if window_bytes < limits.min_rate_bytes:
                raise FetchFailed(
                    ReasonCode.TIMEOUT,
                    f"fewer than {limits.min_rate_bytes} bytes arrived in "
                    f"{limits.min_rate_seconds:g} s",
                    retryable=True,
                )
            window_start, window_bytes = now, 0
    decoder.finish()
    return decoder


async def _try_once(
    session: aiohttp.ClientSession,
    start: URL,
    policy: AddressPolicy,
    limits: FetchLimits,
    request_headers: Mapping[str, str],
    conditional: Validators,
    out: IO[bytes],
) -> tuple[URL, int, Validators, _Decoder | None]:
    """One try: follow up to `max_redirects` hops, checking each, then spool the body."""
    url = start
    for _hop in range(limits.max_redirects + 1):
        _check_url(url, policy)
        headers = dict(conditional.headers())
        if same_origin(url, start):
            headers.update(request_headers)
        async with session.get(url, allow_redirects=False, headers=headers) as response:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(
                        ReasonCode.HTTP_STATUS, f"HTTP {response.status} without a Location header"
                    )
                url = url.join(_url(location, "the redirect's Location"))
                continue
            if response.status >= 500:
                raise FetchFailed(
                    ReasonCode.HTTP_STATUS,
                    f"HTTP {response.status} from {redact(url)}",
                    retryable=True,
                )
            answered = Validators(
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
            if response.status == 304 and (conditional.etag or conditional.last_modified):
                return url, 304, answered, None
            if response.status != 200:
                # 4xx and anything unexpected (204, 304 without a conditional request) fail now.
                raise FetchFailed(
                    ReasonCode.HTTP_STATUS, f"HTTP {response.status} from {redact(url)}"
                )
            decoder = await _spool(response, url, out, limits)
            return url, 200, answered, decoder
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
    if isinstance(exc, UnicodeError):  # a host name IDNA cannot encode (`a..b`), met connecting
        return FetchFailed(ReasonCode.FETCH_ERROR, f"invalid host name: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchFailed(ReasonCode.FETCH_ERROR, f"cannot resolve host: {exc}", retryable=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return FetchFailed(ReasonCode.FETCH_ERROR, f"{type(exc).__name__}: {exc}", retryable=True)
    raise exc


async def download(
    url: str,
    policy: AddressPolicy,
    limits: FetchLimits,
    *,
    headers: Mapping[str, str] | None = None,
    conditional: Validators | None = None,
    spool_dir: str | None = None,
) -> Downloaded:
    """Fetch the feed at `url` into a temporary file; raises FetchFailed with the run's reason
    code. `headers` (the feed's credentials) go only to the URL's own origin. The caller owns the
    returned file: `discard()` it when done."""
    start_url = _url(url, "the feed's URL")
    conditional = conditional or Validators()
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=limits.connect_timeout, sock_read=limits.min_rate_seconds
    )
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), use_dns_cache=False, force_close=True
    )
    session_headers = CIMultiDict({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})
    fd, path, held = spool_file(spool_dir)
    tries = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async with aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                headers=session_headers,
                auto_decompress=False,
                trust_env=False,
            ) as session:
                async for attempt in retrying(
                    f"feed fetch of {redact(start_url)}",
                    retry_on=lambda exc: isinstance(exc, FetchFailed) and exc.retryable,
                    fixed=limits.retry_delay,
                    attempts=limits.tries,
                ):
                    with attempt:
                        tries += 1
                        started_at = utc_now()
                        out.seek(0)
                        out.truncate()
                        try:
                            async with asyncio.timeout(limits.total_timeout):
                                final, status, answered, decoder = await _try_once(
                                    session,
                                    start_url,
                                    policy,
                                    limits,
                                    headers or {},
                                    conditional,
                                    out,
                                )
                        except Exception as exc:  # classified; unknown errors are re-raised
                            raise _classify(exc) from exc
    except FetchFailed as failure:
        forget(path, held)
        if failure.retryable and tries > 1:
            raise FetchFailed(
                failure.reason_code, f"{failure.reason} (after {tries} tries)"
            ) from failure
        raise
    except BaseException:
        forget(path, held)
        raise
    result = Downloaded(
        url=str(final), not_modified=status == 304, started_at=started_at, tries=tries,
        validators=answered,
    )  # fmt: skip
    if decoder is None:
        forget(path, held)
        return result
    result.gzip = decoder.compressed
    result.body_bytes = decoder.body_bytes
    result.decoded_bytes = decoder.decoded_bytes
    result.sha256 = decoder.sha256.digest()
    result.path, result.held = path, held
    return result

"""The demo provider's identity, made with the operator CLI as a newcomer would: a provider with
its credential, a reader for the investor side, and a feed pointing at the demo's own feed host.
An identity from an earlier run is reused while the database still knows it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from demo.state import DemoState, FeedIdentity, ProviderIdentity, ReaderIdentity

log = structlog.get_logger(__name__)

PROVIDER_NAME: Final = "Demo Estates"
READER_NAME: Final = "Demo investor"
FEED_SCHEDULE: Final = "2m"
# The CLI of the same virtualenv as this interpreter, so a bare `make run` needs no PATH set-up.
RWASYNC: Final = Path(sys.executable).parent / "rwasync"
ATTEMPTS: Final = 3


class DemoFailed(Exception):
    """The demo cannot go on; the message tells the newcomer why and what to check."""


class CommandFailed(Exception):
    def __init__(self, args: tuple[str, ...], code: int | None, stderr: str) -> None:
        self.code = code
        self.stderr = stderr
        shown = " ".join(args)
        super().__init__(f"`rwasync {shown}` failed (exit {code}): {stderr or 'no output'}")


async def rwasync_json(*args: str, timeout: float = 60.0) -> tuple[int, Any]:
    """Run `rwasync ARGS --json`; its exit code and the one JSON document it printed.

    A non-zero exit with a JSON document is returned (`feed trigger --wait` exits 3 or 4 with the
    run); a non-zero exit without one raises CommandFailed with the CLI's error text.
    """
    process = await asyncio.create_subprocess_exec(
        str(RWASYNC),
        *args,
        "--json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:  # a timeout or our own shutdown: leave no CLI process behind
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    code = process.returncode if process.returncode is not None else -1
    error_text = stderr.decode(errors="replace").strip().splitlines()[-3:]
    try:
        document = orjson.loads(stdout)
    except orjson.JSONDecodeError:
        raise CommandFailed(args, code, " ".join(error_text)) from None
    return code, document


async def _with_retries(*args: str, timeout: float = 60.0) -> Any:
    """A CLI call that must succeed: a few tries with backoff (the database may be restarting)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            code, document = await rwasync_json(*args, timeout=timeout)
            if code == 0:
                return document
            failure: Exception = CommandFailed(args, code, orjson.dumps(document).decode())
        except (CommandFailed, TimeoutError, OSError) as exc:
            failure = exc
        command = " ".join(args[:2])
        log.warning(
            "operator CLI call failed", command=command, attempt=attempt, error=str(failure)
        )
        if attempt < ATTEMPTS:
            await asyncio.sleep(2.0 * attempt)
    raise DemoFailed(f"could not run `rwasync {' '.join(args[:2])}`: {failure}")


async def _provider_is_live(provider: ProviderIdentity) -> bool:
    listing = await _with_retries("provider", "list")
    for item in listing["items"]:
        if item["provider_id"] == provider.provider_id:
            return not item["disabled"]
    return False


async def _feed_is_current(provider_id: str, feed: FeedIdentity, url: str) -> bool:
    listing = await _with_retries("feed", "list", "--provider", provider_id)
    return any(item["feed_id"] == feed.feed_id and item["url"] == url for item in listing["items"])


async def ensure_identity(state: DemoState, feed_url: str) -> bool:
    """Make `state` name a live provider, a reader and a feed at `feed_url`; True if it changed."""
    changed = False
    if state.provider is not None and not await _provider_is_live(state.provider):
        log.info(
            "demo provider from an earlier run is gone (database reset?); creating a new one",
            provider_id=state.provider.provider_id,
        )
        state.provider = state.reader = state.feed = None
    if state.provider is None:
        created = await _with_retries("provider", "create", PROVIDER_NAME)
        state.provider = ProviderIdentity.model_validate(created)
        reader = await _with_retries("reader", "create", READER_NAME)
        state.reader = ReaderIdentity.model_validate(reader)
        log.info(
            "created demo provider and reader",
            provider_id=state.provider.provider_id,
            reader_id=state.reader.reader_id,
        )
        changed = True
    provider_id = state.provider.provider_id
    if state.feed is None or not await _feed_is_current(provider_id, state.feed, feed_url):
        try:
            added = await _with_retries(
                "feed", "add", provider_id, feed_url, "--format", "json", "--every", FEED_SCHEDULE
            )
        except DemoFailed as exc:
            raise DemoFailed(
                f"{exc}. The feed lives on 127.0.0.1, which feed URLs may only use when "
                "RWASYNC_FEED_ALLOWED_NETWORKS allows it (`make run` sets 127.0.0.0/8,::1)."
            ) from exc
        state.feed = FeedIdentity(feed_id=added["feed_id"], url=feed_url)
        log.info("added demo feed", feed_id=state.feed.feed_id, url=feed_url, every=FEED_SCHEDULE)
        changed = True
    else:
        log.info(
            "reusing demo provider from .run/demo.json",
            provider_id=provider_id,
            feed_id=state.feed.feed_id,
        )
    return changed


def describe_run(run: dict[str, Any]) -> str:
    """`ok: 12 created, 0 updated, 0 unchanged, 0 invalid` and the reason of a run that stopped."""
    counts = run.get("counts") or {}
    figures = ", ".join(
        f"{counts.get(name, 0)} {name}" for name in ("created", "updated", "unchanged", "invalid")
    )
    reason = f" ({run['reason']})" if run.get("reason") else ""
    return f"{run.get('status')}{reason}: {figures}"


async def trigger_feed(feed_id: str) -> str | None:
    """Run the feed now and wait for it, so assets appear within seconds; the run's id."""
    log.info("triggering the demo feed once; the 2 min schedule keeps it going", feed_id=feed_id)
    try:
        code, run = await rwasync_json(
            "feed", "trigger", feed_id, "--wait", "--timeout", "90", timeout=120
        )
    except (CommandFailed, TimeoutError, OSError) as exc:
        log.warning("feed trigger failed; the schedule will retry", feed_id=feed_id, error=str(exc))
        return None
    line = f"feed run {describe_run(run)}"
    if code == 0:
        log.info(line, feed_id=feed_id, run_id=run.get("run_id"))
    else:
        log.warning(line, feed_id=feed_id, run_id=run.get("run_id"), errors=run.get("errors"))
    run_id = run.get("run_id")
    return str(run_id) if run_id else None


async def latest_run(feed_id: str) -> dict[str, Any] | None:
    """The feed's newest run, or None when it cannot be read (logged)."""
    try:
        code, listing = await rwasync_json("feed", "runs", feed_id, "--limit", "1")
    except (CommandFailed, TimeoutError, OSError) as exc:
        log.warning("could not read the feed's runs", feed_id=feed_id, error=str(exc))
        return None
    items = listing.get("items") if code == 0 and isinstance(listing, dict) else None
    return items[0] if items else None

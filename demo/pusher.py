"""The demo provider's pushes and the investor's view of them.

Every tick (about 5 s) it pushes price ticks for two or three assets; every third tick it changes
one asset (a rent review or a tenant moving) and follows that change's receipt until the
reconciler decides it; a tick later it reads back a price from pricing and an asset from
ingest-api, as a portal would. Every failure is logged and the next tick tries again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import aiohttp
import orjson
import structlog

from demo.catalogue import change_occupancy, change_rent, listed_price, next_price
from demo.settings import DemoSettings
from demo.state import DemoState, StateStore
from rwasync.schema.timestamps import timestamp_text, utc_now

log = structlog.get_logger(__name__)

CHANGE_EVERY: Final = 3
# A change still `accepted` after this long is reported once and no longer followed.
FOLLOW_SECONDS: Final = 60.0


def shown_amount(value: Any) -> str:
    """`14060.3` as `14,060.30`: the API's normalised decimals, written for a reader."""
    try:
        return f"{Decimal(str(value)):,.2f}"
    except ArithmeticError:
        return str(value)


def shown_share(value: Any) -> str:
    """An occupancy rate of `0.75` as `75 %`."""
    try:
        return f"{Decimal(str(value)) * 100:.0f} %"
    except ArithmeticError:
        return str(value)


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def problem(self) -> str:
        """The problem+json title and detail of an error answer, for the log line."""
        if isinstance(self.body, dict):
            parts = [str(self.body[key]) for key in ("title", "detail") if self.body.get(key)]
            if parts:
                return ": ".join(parts)
        return f"HTTP {self.status}"

    def get(self, key: str) -> Any:
        return self.body.get(key) if isinstance(self.body, dict) else None


@dataclass
class FollowedEvent:
    event_id: str
    asset_id: str
    status: str
    started: float


class Pusher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: DemoSettings,
        state: DemoState,
        store: StateStore,
        rng: random.Random,
    ) -> None:
        assert state.provider is not None and state.reader is not None
        self.session = session
        self.settings = settings
        self.state = state
        self.store = store
        self.rng = rng
        self.provider_id = state.provider.provider_id
        self.provider_token = state.provider.token
        self.reader_token = state.reader.token
        self.prices: dict[str, Decimal] = {}
        self.last_ticked: str | None = None
        self.last_changed: str | None = None
        self.followed: FollowedEvent | None = None

    async def _call(self, method: str, url: str, token: str, body: Any = None) -> Answer | None:
        """One HTTP call; None (logged) when no answer came. The token is never logged."""
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        try:
            async with self.session.request(method, url, data=data, headers=headers) as response:
                raw = await response.read()
                try:
                    parsed = orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    parsed = raw[:200].decode(errors="replace")
                return Answer(response.status, parsed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("no answer", method=method, url=url, error=str(exc) or type(exc).__name__)
            return None

    def _ingest(self, path: str) -> str:
        return f"{self.settings.ingest_url}{path}"

    async def push_prices(self) -> None:
        candidates = self.state.active_ids()
        for asset_id in self.rng.sample(candidates, min(len(candidates), self.rng.randint(2, 3))):
            listed = listed_price(self.state.asset(asset_id))
            amount = next_price(self.prices.get(asset_id, listed), listed, self.rng)
            tick = {"amount": str(amount), "currency": "USD", "as_of": timestamp_text(utc_now())}
            answer = await self._call(
                "PUT", self._ingest(f"/v1/assets/{asset_id}/price"), self.provider_token, tick
            )
            if answer is None:
                continue
            if answer.status == 202:
                self.prices[asset_id] = amount
                self.last_ticked = asset_id
                log.info(
                    f"pushed price {amount} USD",
                    asset_id=asset_id,
                    status=answer.status,
                    event_id=answer.get("event_id"),
                )
            else:
                log.warning(
                    "price tick refused",
                    asset_id=asset_id,
                    status=answer.status,
                    problem=answer.problem,
                )

    async def change_asset(self) -> None:
        candidates = self.state.active_ids()
        if not candidates:
            return
        asset_id = self.rng.choice(candidates)
        edit = change_rent if self.rng.random() < 0.5 else change_occupancy
        change = edit(self.state.asset(asset_id), utc_now(), self.rng)
        # The provider's own system has changed either way: the feed carries it from now on,
        # so a push that fails here still reaches the portal with the next feed run.
        self.state.replace_asset(change.document)
        self.store.save(self.state)
        answer = await self._call(
            "PUT", self._ingest(f"/v1/assets/{asset_id}"), self.provider_token, change.document
        )
        if answer is None:
            return
        if answer.status != 202:
            log.warning(
                "asset change refused; the next feed run will carry it",
                asset_id=asset_id,
                status=answer.status,
                problem=answer.problem,
            )
            return
        event_id = str(answer.get("event_id"))
        self.last_changed = asset_id
        self.followed = FollowedEvent(event_id, asset_id, "accepted", time.monotonic())
        log.info(
            f"pushed asset change: {change.summary}",
            asset_id=asset_id,
            status=answer.status,
            event_id=event_id,
        )

    async def follow_event(self) -> None:
        """Show the pushed change's receipt moving on: accepted → applied (or why not)."""
        followed = self.followed
        if followed is None:
            return
        answer = await self._call(
            "GET", self._ingest(f"/v1/events/{followed.event_id}"), self.provider_token
        )
        if answer is None:
            return
        if answer.status != 200:
            log.warning(
                "event receipt unreadable",
                event_id=followed.event_id,
                status=answer.status,
                problem=answer.problem,
            )
            self.followed = None
            return
        status = str(answer.get("status"))
        if status != followed.status:
            reason = answer.get("reason")
            log.info(
                f"change {followed.status} → {status}" + (f" ({reason})" if reason else ""),
                asset_id=followed.asset_id,
                event_id=followed.event_id,
            )
            followed.status = status
        if status != "accepted":
            self.followed = None
        elif time.monotonic() - followed.started > FOLLOW_SECONDS:
            log.warning(
                f"change still accepted after {FOLLOW_SECONDS:.0f} s: is the reconciler running?",
                asset_id=followed.asset_id,
                event_id=followed.event_id,
            )
            self.followed = None

    async def read_back(self) -> None:
        """What the other side sees: a price from pricing, an asset from ingest-api."""
        if self.last_ticked is not None:
            asset_id = self.last_ticked
            url = f"{self.settings.pricing_url}/v1/prices/{self.provider_id}/{asset_id}"
            answer = await self._call("GET", url, self.reader_token)
            if answer is not None and answer.status == 200:
                stale = " (stale)" if answer.get("stale") else ""
                log.info(
                    f"investor sees {asset_id} at {shown_amount(answer.get('amount'))}"
                    f" {answer.get('currency')}"
                    f" as of {answer.get('as_of')}{stale}",
                    provider_id=self.provider_id,
                )
            elif answer is not None:
                log.warning(
                    "price read-back failed",
                    asset_id=asset_id,
                    status=answer.status,
                    problem=answer.problem,
                )
        asset_id = self.last_changed or self.rng.choice([a["id"] for a in self.state.assets])
        url = self._ingest(f"/v1/assets/{asset_id}")
        answer = await self._call("GET", url, self.provider_token)
        if answer is not None and answer.status == 200:
            rental = answer.get("rental") or {}
            meta = answer.get("_meta") or {}
            log.info(
                f"portal holds {asset_id}: occupancy {shown_share(rental.get('occupancy_rate'))},"
                f" gross rent {shown_amount(rental.get('gross_yearly'))} {rental.get('currency')}"
                "/year,"
                f" version {meta.get('updated_at') or answer.get('updated_at')}",
            )
        elif answer is not None:
            log.warning(
                "asset read-back failed",
                asset_id=asset_id,
                status=answer.status,
                problem=answer.problem,
            )

    async def run(self) -> None:
        """Tick forever; each action is tried once per tick, so failures never spin."""
        tick = 0
        while True:
            steps: list[Callable[[], Awaitable[None]]] = []
            # Read back first: what was pushed a tick ago has been applied by now.
            if tick % CHANGE_EVERY == CHANGE_EVERY - 1:
                steps.append(self.read_back)
            steps.append(self.push_prices)
            if tick % CHANGE_EVERY == 0:
                steps.append(self.change_asset)
            steps.append(self.follow_event)
            for step in steps:
                try:
                    await step()
                except Exception:
                    # The demo must keep running for the newcomer watching it; say what broke.
                    log.exception("demo step failed; the next tick tries again", step=step.__name__)
            tick += 1
            await asyncio.sleep(self.settings.tick_seconds)

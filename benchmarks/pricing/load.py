"""Pushing ticks: through ingest-api's `POST /v1/prices` when it serves it, otherwise as
multi-tick messages straight to the price exchange (what that endpoint publishes), and counting
what pricing has decided from its `/metrics`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from rwasync.platform.broker import Broker
from rwasync.schema import topology
from rwasync.schema.events import Arrival, EventSource, price_updated
from rwasync.schema.messages import message_for


class Pusher:
    def __init__(
        self, provider_id: str, token: str, ingest_url: str, broker: Broker | None
    ) -> None:
        self.provider_id = provider_id
        self.token = token
        self.ingest_url = ingest_url
        self.broker = broker  # None: through ingest-api
        self._sequence = 0

    @property
    def mode(self) -> str:
        return "broker (multi-tick messages)" if self.broker else "POST /v1/prices"

    def ticks(self, assets: list[str]) -> list[dict[str, Any]]:
        """One tick per asset (distinct assets), each with an as_of of now."""
        now = datetime.now(UTC).isoformat()
        items = []
        for asset_id in assets:
            self._sequence += 1
            amount = f"{100 + self._sequence % 997}.{self._sequence % 100:02d}"
            items.append({"asset_id": asset_id, "amount": amount, "currency": "USD", "as_of": now})
        return items

    async def push(self, http: aiohttp.ClientSession, ticks: list[dict[str, Any]]) -> None:
        if self.broker is None:
            async with http.post(
                f"{self.ingest_url}/v1/prices",
                json={"prices": ticks},
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST /v1/prices answered {response.status}")
            return
        now = datetime.now(UTC)
        arrival = Arrival(self.provider_id, EventSource.BATCH, now)
        events = [
            price_updated(
                arrival,
                asset_id=t["asset_id"],
                amount=Decimal(t["amount"]),
                currency="USD",
                as_of=datetime.fromisoformat(t["as_of"]),
                accepted_at=now + timedelta(microseconds=i),
            )
            for i, t in enumerate(ticks)
        ]
        await self.broker.publish(
            topology.PRICES_EXCHANGE, topology.PRICE_BATCH_KEY, message_for(events)
        )


async def serves_price_batches(http: aiohttp.ClientSession, ingest_url: str) -> bool:
    """Whether ingest-api has `POST /v1/prices` (an unauthenticated call gets 401, not 404)."""
    async with http.post(f"{ingest_url}/v1/prices", json={"prices": []}) as response:
        return response.status not in (404, 405)


DECIDED_PREFIX = "rwasync_events_decided_total{"
PRICE_TYPE = 'type="price.updated"'


async def decided(http: aiohttp.ClientSession, pricing_url: str) -> float:
    """Ticks pricing has decided so far (its `rwasync_events_decided_total` of price.updated,
    every outcome)."""
    async with http.get(f"{pricing_url}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(DECIDED_PREFIX) and PRICE_TYPE in line
    )


def elapsed_since(began: float) -> float:
    return time.perf_counter() - began

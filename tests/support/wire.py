"""The reconciler's applier driven as its consumer drives it: each batch written as a broker
message and decoded by the asset queue's raw decoder (documents kept as JSON text)."""

from __future__ import annotations

from collections.abc import Sequence

from rwasync.reconciler.apply import AssetApplier
from rwasync.schema.events import AnyEvent
from rwasync.schema.messages import encode_message, message_for
from rwasync.schema.raw_events import (
    RawAssetDeleted,
    RawAssetPatched,
    RawAssetUpserted,
    decode_asset_message,
)


class ThroughTheWire:
    def __init__(self, applier: AssetApplier) -> None:
        self._applier = applier

    async def apply(self, events: Sequence[AnyEvent]) -> None:
        decoded = decode_asset_message(encode_message(message_for(list(events))))
        assert all(
            isinstance(e, RawAssetUpserted | RawAssetPatched | RawAssetDeleted) for e in decoded
        )
        await self._applier.apply(decoded)

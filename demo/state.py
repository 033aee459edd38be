"""What the demo provider remembers across restarts, in `.run/demo.json`: its credentials, its
reader token, its feed and its catalogue (so versions stay put and a re-served feed is
unchanged)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

log = structlog.get_logger(__name__)


class ProviderIdentity(BaseModel):
    provider_id: str
    key_id: str
    secret: str
    token: str


class ReaderIdentity(BaseModel):
    reader_id: str
    token: str


class FeedIdentity(BaseModel):
    feed_id: str
    url: str


class DemoState(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    provider: ProviderIdentity | None = None
    reader: ReaderIdentity | None = None
    feed: FeedIdentity | None = None
    assets: list[dict[str, Any]]
    # How many times the feed was served; every few generations the catalogue evolves.
    feed_generations: int = 0

    def asset(self, asset_id: str) -> dict[str, Any]:
        return next(asset for asset in self.assets if asset["id"] == asset_id)

    def replace_asset(self, document: dict[str, Any]) -> None:
        self.assets = [document if a["id"] == document["id"] else a for a in self.assets]

    def active_ids(self) -> list[str]:
        return [asset["id"] for asset in self.assets if asset["status"] == "active"]


class StateStore:
    """Reads and atomically rewrites the state file, readable by its owner only: it holds
    secrets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DemoState | None:
        try:
            return DemoState.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.warning(
                "demo state unreadable; starting afresh", path=str(self.path), error=str(exc)
            )
            return None

    def save(self, state: DemoState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(state.model_dump_json(indent=2).encode())
        os.replace(partial, self.path)

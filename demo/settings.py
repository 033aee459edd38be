"""The demo provider's settings: where the services listen, where it hosts its feed, its pace."""

from pathlib import Path

from pydantic import AliasChoices, Field

from rwasync.platform.settings import CommonSettings, settings_config


class DemoSettings(CommonSettings):
    """Read from `DEMO_*`; the service ports follow the services' own settings."""

    model_config = settings_config("DEMO_")

    feed_port: int = 8090
    ingest_port: int = Field(8080, validation_alias=AliasChoices("RWASYNC_INGEST_PORT"))
    pricing_port: int = Field(8082, validation_alias=AliasChoices("RWASYNC_PRICING_PORT"))
    # Credentials, feed id and catalogue, kept across restarts (gitignored, owner-only).
    state_path: Path = Path(".run/demo.json")
    tick_seconds: float = 5.0
    ready_timeout: float = 120.0

    @property
    def feed_url(self) -> str:
        return f"http://127.0.0.1:{self.feed_port}/feed.json"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    @property
    def pricing_url(self) -> str:
        return f"http://127.0.0.1:{self.pricing_port}"

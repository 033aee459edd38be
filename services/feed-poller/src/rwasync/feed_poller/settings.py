"""Feed poller settings (environment prefix RWASYNC_FEED_POLLER_).

Shared with the CLI and the provider API: the allow-list of private networks feeds may reach
(`RWASYNC_FEED_ALLOWED_NETWORKS`) and the keys that seal feed credentials
(`RWASYNC_FEED_SECRETS_KEY`), both in `CommonSettings`. Shared with ingest-api: the largest item,
its limit on one asset's body (`RWASYNC_INGEST_MAX_BODY_BYTES`).
"""

import os
from collections.abc import Iterator

from pydantic import Field, field_validator

from rwasync.platform.settings import Conflict, Port, ServiceSettings, settings_config
from rwasync.schema.errors import MAX_ITEM_BYTES, MAX_ITEM_SETTING

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class FeedPollerSettings(ServiceSettings):
    model_config = settings_config("RWASYNC_FEED_POLLER_")

    port: Port = 8081
    # Seconds between looks at the run queue and the schedule; a NOTIFY wakes the loop sooner.
    poll_interval: float = Field(1.0, gt=0)
    # Fetching (docs/api.md, "Feeds"): each try has a connect timeout, fails when fewer than
    # `min_rate_bytes` arrive in `min_rate_seconds`, and has a total timeout covering redirects.
    connect_timeout: float = Field(10.0, gt=0)
    min_rate_bytes: int = Field(10 * KIB, ge=0)
    min_rate_seconds: float = Field(30.0, gt=0)
    total_timeout: float = Field(600.0, gt=0)
    fetch_tries: int = Field(3, ge=1)
    retry_delay: float = Field(30.0, ge=0)
    max_redirects: int = Field(5, ge=0)
    # Caps per feed: the body as received, the body decoded (gzip), and the items.
    max_body_bytes: int = Field(512 * MIB, gt=0)
    max_decoded_bytes: int = Field(2 * GIB, gt=0)
    max_items: int = Field(2_000_000, gt=0)
    # The largest item, in bytes: ingest-api's limit on one asset's body, from the same variable
    # (bounds and default as ingest-api reads it), so that a feed brings in no asset a push would
    # have refused. A larger item is invalid, listed in the run's errors; the others go on.
    max_item_bytes: int = Field(MAX_ITEM_BYTES, ge=1024, validation_alias=MAX_ITEM_SETTING)
    # Processes validating new and changed items (pure CPU); 0: a thread of the poller itself.
    validation_workers: int = Field(2, ge=0, le=64)
    # Where bodies are spooled while a run reads them; empty: the system's temporary directory.
    spool_dir: str = ""
    # Events packed into one broker message (bulk paths batch; see docs/architecture.md).
    events_per_message: int = Field(500, ge=1, le=5000)
    # Messages a run keeps unconfirmed at once: publishing waits for confirms beyond that.
    publish_window: int = Field(16, ge=1)
    # The broker counts as unavailable once no confirm came for this long while messages wait.
    confirm_stall_seconds: float = Field(60.0, gt=0)
    # A claimed run belongs to this replica for this long, renewed while it works (every third
    # of it); a replica that dies lets its runs go back to the queue when the lease runs out. It
    # was 900 s: a poller killed mid-run blocked its feed, and held one of its provider's run
    # slots, for 15 minutes.
    run_lease_seconds: float = Field(60.0, ge=10)
    # Runs executed at once by one replica.
    max_concurrent_runs: int = Field(4, ge=1)
    # Runs of one provider in progress at once, across replicas (the claim counts them in the
    # database): a provider whose feeds hang or wait out retries holds at most this many slots,
    # and the others' runs take the rest.
    max_runs_per_provider: int = Field(2, ge=1)
    # Seconds a run waits, before comparing, for the provider's pushes accepted until then to be
    # applied (so it compares with them); past it, it compares anyway, still never deleting
    # what such a push changed. 0: no wait.
    push_settle_timeout: float = Field(10.0, ge=0, le=600)
    # A run stores at most this many item errors; its counts stay exact.
    max_stored_errors: int = Field(1000, ge=0)
    # Name this replica writes into `feed_runs.claimed_by`; empty: host name, pid and a random tag.
    replica_id: str = ""

    @field_validator("spool_dir")
    @classmethod
    def _writable_directory(cls, value: str) -> str:
        # A directory that is not there failed every run's first write, not the start.
        if value and not os.path.isdir(value):
            raise ValueError("is not a directory")
        if value and not os.access(value, os.W_OK | os.X_OK):
            raise ValueError("is a directory this process cannot write in")
        return value

    @field_validator("replica_id")
    @classmethod
    def _shown_name(cls, value: str) -> str:
        # It is shown in run listings and logs, one line each.
        if len(value) > 200 or not value.isprintable():
            raise ValueError("must be at most 200 printable characters")
        return value

    def conflicts(self) -> Iterator[Conflict]:
        yield from super().conflicts()
        # Leases are renewed on the loop's ticks, every third of a lease at most: a tick less
        # often than that would let a working replica's runs lapse and be run twice.
        if self.poll_interval > self.run_lease_seconds / 3:
            yield Conflict(
                f"must be at most a third of {self.variable('run_lease_seconds')} "
                f"({self.run_lease_seconds})",
                "poll_interval",
                "run_lease_seconds",
            )

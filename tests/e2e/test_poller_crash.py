"""A feed-poller killed mid-run (kill -9, an OOM kill, a node lost) left its run `running` for
the run lease, then 900 s, although the replica that claimed it was gone: the restarted poller
did not take it over, a new `feed trigger` queued behind it (and `feed trigger --wait` waited),
and the stuck run held one of the provider's run slots (operator trial). With the default lease
(60 s, renewed every 20 s while a replica works) the feed runs again within about a minute of
the poller coming back, and the body the killed poller was spooling is removed when the new one
starts (review: it stayed in a /tmp that outlives a container restart). In the fault suite: it
waits out a real lease."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import own_system
from tests.support.infra import Infra
from tests.support.system import System

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEED = json.dumps(
    {
        "timestamp": "2026-11-23T12:00:00Z",
        "total_assets": 3,
        "assets": [
            {
                "id": f"c-{i}",
                "updated_at": "2026-11-23T10:00:00Z",
                "status": "active",
                "name": f"{i} St",
            }
            for i in range(3)
        ],
    }
).encode()


def slow_first_feed() -> tuple[ThreadingHTTPServer, int]:
    served = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served["n"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            if served["n"] == 1:  # the first fetch trickles: the run is mid-way when killed
                for b in FEED[:20]:
                    try:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the poller was killed
                    time.sleep(1)
                    if served["n"] > 1:
                        break
                return
            self.wfile.write(FEED)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    return directory


@pytest.fixture
def poller_only(
    test_infra: Infra, template_database: str, tmp_path: Path, spool: Path
) -> Iterator[System]:
    with own_system(
        test_infra,
        template_database,
        tmp_path,
        extra_env={"RWASYNC_FEED_POLLER_SPOOL_DIR": str(spool)},
        services=("feed-poller",),
    ) as s:
        yield s


def test_a_feed_runs_again_soon_after_its_poller_was_killed_mid_run(
    poller_only: System, spool: Path
) -> None:
    server, port = slow_first_feed()
    try:
        _, provider = poller_only.cli("provider", "create", "Crash Estates", "--json")
        _, feed = poller_only.cli(
            "feed", "add", provider["provider_id"], f"http://127.0.0.1:{port}/feed.json", "--json"
        )
        poller_only.cli("feed", "trigger", feed["feed_id"], "--json")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, runs = poller_only.cli("feed", "runs", feed["feed_id"], "--json")
            if runs["items"][0]["status"] == "running":
                break
            time.sleep(0.5)
        assert runs["items"][0]["status"] == "running"
        poller_only.services["feed-poller"].stop(signal.SIGKILL)
        # The body it was spooling stays behind; the restarted poller removes it at once.
        left = list(spool.iterdir())
        assert len(left) == 1, left
        poller_only.start("feed-poller")
        poller_only.cli("feed", "trigger", feed["feed_id"], "--json")
        deadline = time.monotonic() + 120
        statuses: list[str] = []
        while time.monotonic() < deadline:
            _, runs = poller_only.cli("feed", "runs", feed["feed_id"], "--json")
            statuses = [r["status"] for r in runs["items"]]
            if "ok" in statuses and "running" not in statuses:
                break
            time.sleep(2)
        assert "ok" in statuses and "running" not in statuses, (
            f"120 s after the poller came back the feed's runs are {statuses}"
        )
        assert not left[0].exists()
        assert list(spool.iterdir()) == []
    finally:
        server.shutdown()

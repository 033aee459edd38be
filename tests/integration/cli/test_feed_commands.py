"""`rwasync feed add` with credentials, schedules and formats: the same rules as a provider's
`PUT /v1/feeds`, secrets never on the command line, never printed, never stored in clear; a
feed's next run as `feed list`, `disable`, `enable` and `trigger` leave and show it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from rwasync.feeds.auth import FeedSecrets, parse_auth
from rwasync.schema.timestamps import utc_now
from tests.integration.feed_poller.harness import (
    FeedServer,
    asset,
    body,
    feed_body,
    poller_settings,
    running_poller,
)

pytestmark = pytest.mark.integration


def rwasync(database_url: str, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    env |= {"RWASYNC_DATABASE_URL": database_url, "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8"}
    env["RWASYNC_ENV_FILE"] = os.devnull  # never the developer's .env (make run's)
    env |= env_extra
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def new_provider(database_url: str) -> dict[str, str]:
    created = await asyncio.to_thread(rwasync, database_url, "provider", "create", "A", "--json")
    provider: dict[str, str] = json.loads(created.stdout)
    return provider


async def feed_add(
    database_url: str, provider_id: str, url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`rwasync feed add PROVIDER URL ARGS... --json`."""
    return await asyncio.to_thread(
        rwasync, database_url, "feed", "add", provider_id, url, *args, "--json", **env
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The `error: …` lines a command printed on stderr, one a problem."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


async def listed_feeds(database_url: str) -> list[dict[str, Any]]:
    """Every feed, as `rwasync feed list --json` lists them."""
    listed = await asyncio.to_thread(rwasync, database_url, "feed", "list", "--json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


async def test_feed_add_seals_credentials_and_checks_every_option(database_url: str) -> None:
    run = asyncio.to_thread
    provider = await new_provider(database_url)
    url = "http://127.0.0.1:9/catalogue.csv.gz"
    csv = (provider["provider_id"], url, "--format", "csv")
    bearer = ("--auth", "bearer", "--auth-secret-env", "FEED_TOKEN")

    refused = await feed_add(database_url, *csv, *bearer, FEED_TOKEN="tok-789")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "/auth: feed credentials cannot be stored: RWASYNC_FEED_SECRETS_KEY" in refused.stderr

    key = FeedSecrets.new_key()
    added = await feed_add(
        database_url,
        *csv,
        *bearer,
        "--cron",
        "30 4 * * 1",
        FEED_TOKEN="tok-789",
        RWASYNC_FEED_SECRETS_KEY=key,
    )
    assert added.returncode == 0, added.stderr
    feed = json.loads(added.stdout)
    assert feed["format"] == "csv" and feed["schedule"] == "30 4 * * 1"
    assert feed["auth"] == {"type": "bearer"} and "tok-789" not in added.stdout + added.stderr
    listed = await run(rwasync, database_url, "feed", "list", "--json")
    assert "tok-789" not in listed.stdout and json.loads(listed.stdout)["next_cursor"] is None
    conn = await asyncpg.connect(database_url)
    try:
        sealed = await conn.fetchval("SELECT auth_secret FROM feed_sources")
    finally:
        await conn.close()
    assert b"tok-789" not in sealed and FeedSecrets(key).open(sealed) == "tok-789"

    for args, fragment in [
        (("--every", "1h", "--cron", "0 3 * * *"), "/schedule"),
        (("--cron", "0 3 * *"), "/schedule"),
        (("--every", ""), "/schedule"),  # blank: it made the feed manual (hybrid trial)
        (("--cron", " "), "/schedule"),
        (("--format", "xml"), "/format"),
        (
            ("--auth", "header", "--auth-header", "Host", "--auth-secret-env", "FEED_TOKEN"),
            "/auth/name",
        ),
        (("--auth", "basic", "--auth-username", "u"), "/auth/password"),
        (("--auth", "bearer"), "(--auth-secret-env or --auth-secret-file)"),
    ]:
        result = await feed_add(
            database_url,
            provider["provider_id"],
            url,
            *args,
            FEED_TOKEN="x",
            RWASYNC_FEED_SECRETS_KEY=key,
        )
        assert result.returncode == 1 and result.stdout == "", args
        assert fragment in result.stderr, (args, result.stderr)

    made = json.loads((await run(rwasync, database_url, "feed", "secrets-key", "--json")).stdout)
    assert FeedSecrets(made["key"]).seal(parse_auth({"type": "bearer", "token": "t"}))


async def test_feed_add_reports_every_bad_setting_at_once(database_url: str) -> None:
    """As the provider's PUT lists every problem, `feed add` prints one `error:` line per bad
    setting (not only the first one found) and registers nothing."""
    provider = await new_provider(database_url)
    result = await feed_add(
        database_url,
        provider["provider_id"],
        "ftp://127.0.0.1/feed.xml",
        "--format",
        "xml",
        "--every",
        "often",
        "--deletion-threshold-percent",
        "120",
    )
    assert result.returncode == 1 and result.stdout == ""
    assert error_lines(result) == [
        "error: /url: must be an absolute http or https URL (the URL argument)",
        "error: /format: must be one of json, jsonl, csv (--format)",
        "error: /schedule: invalid interval 'often': use e.g. 90s, 15m, 24h, 1d"
        " (--every or --cron)",
        "error: /deletion_threshold/percent: must be a number 0-100 (--deletion-threshold-percent)",
    ], result.stderr
    assert await listed_feeds(database_url) == []

    # The options' own problems (two schedules, a secret that cannot be read) come with the rest.
    result = await feed_add(
        database_url,
        provider["provider_id"],
        "http://10.0.0.1/c.csv",
        *("--format", "xml", "--every", "15m", "--cron", "0 3 * * *"),
        *("--auth", "basic", "--auth-secret-env", "RWASYNC_TEST_NOT_SET"),
    )
    assert result.returncode == 1 and result.stdout == ""
    errors = error_lines(result)
    assert errors[:4] == [
        "error: /schedule: give --every or --cron, not both",
        "error: /auth: the environment variable RWASYNC_TEST_NOT_SET is not set",
        "error: /url: address 10.0.0.1 is not a public address and not allow-listed"
        " (the URL argument)",
        "error: /format: must be one of json, jsonl, csv (--format)",
    ], result.stderr
    # the rest of the credentials is still checked: basic needs --auth-username
    assert len(errors) == 5 and errors[4].startswith("error: /auth/username: "), errors

    # A threshold that is no number is one more problem among the others (it was a usage
    # error, exit 2, that hid them), and so are credential options the --auth does not take
    # or two sources of one secret (they were dropped without a word).
    result = await feed_add(
        database_url,
        provider["provider_id"],
        "http://127.0.0.1:9/c.json",
        *("--format", "xml", "--deletion-threshold-percent", "abc"),
        *("--deletion-threshold-min", "some", "--auth-username", "bob"),
        *("--auth-secret-env", "FEED_TOKEN", "--auth-secret-file", "/dev/null"),
        FEED_TOKEN="x",
    )
    assert result.returncode == 1 and result.stdout == ""
    assert error_lines(result) == [
        "error: /auth: --auth-username is only for --auth basic",
        "error: /auth: --auth-secret-env is only for --auth basic, bearer or header",
        "error: /auth: give --auth-secret-env or --auth-secret-file, not both",
        "error: /format: must be one of json, jsonl, csv (--format)",
        "error: /deletion_threshold/percent: must be a number 0-100 (--deletion-threshold-percent)",
        "error: /deletion_threshold/min_count: must be an integer from 0 to 2147483647"
        " (--deletion-threshold-min)",
    ], result.stderr
    assert await listed_feeds(database_url) == []
    # numbers given as the options' text are taken as the settings' numbers
    result = await feed_add(
        database_url,
        provider["provider_id"],
        "http://127.0.0.1:9/c.json",
        *("--deletion-threshold-percent", "12.5", "--deletion-threshold-min", "7"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deletion_threshold"] == {"percent": 12.5, "min_count": 7}


async def test_feed_add_refuses_a_private_literal_written_in_unicode_digits(
    database_url: str,
) -> None:
    # The HTTP client connects `１０.０.０.１` (full-width digits) to 10.0.0.1: refused as that is.
    provider = await new_provider(database_url)
    for host in ("１０.０.０.１", "①⓪.⓪.⓪.①"):
        result = await feed_add(database_url, provider["provider_id"], f"http://{host}/c.json")
        assert result.returncode == 1 and result.stdout == "", (host, result)
        assert (
            "error: /url: address 10.0.0.1 is not a public address and not allow-listed"
            " (the URL argument)"
        ) in result.stderr.splitlines(), result.stderr
    listed = await asyncio.to_thread(rwasync, database_url, "feed", "list", "--json")
    assert json.loads(listed.stdout)["items"] == []


async def test_feed_list_refuses_an_unknown_provider(database_url: str) -> None:
    # A typo in --provider must not read as "this provider has no feed".
    provider = await new_provider(database_url)
    added = await feed_add(database_url, provider["provider_id"], "http://127.0.0.1:9/f.json")
    assert added.returncode == 0, added.stderr
    unknown = await asyncio.to_thread(
        rwasync, database_url, "feed", "list", "--provider", "prv_nobody", "--json"
    )
    assert unknown.returncode == 1 and unknown.stdout == "", unknown.stdout
    assert unknown.stderr == "error: provider_id 'prv_nobody': unknown provider\n"
    listed = await asyncio.to_thread(
        rwasync, database_url, "feed", "list", "--provider", provider["provider_id"], "--json"
    )
    assert [f["feed_id"] for f in json.loads(listed.stdout)["items"]] == [
        json.loads(added.stdout)["feed_id"]
    ]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def listed_feed(database_url: str, feed_id: str) -> dict[str, object]:
    listed = await asyncio.to_thread(rwasync, database_url, "feed", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [feed] = [f for f in json.loads(listed.stdout)["items"] if f["feed_id"] == feed_id]
    return dict(feed)


async def table_row(database_url: str, feed_id: str) -> str:
    """The line of `feed list`'s table (in a pipe: 80 columns) that names the feed."""
    table = await asyncio.to_thread(rwasync, database_url, "feed", "list")
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    assert "next_run_at" in table.stdout, table.stdout
    [line] = [line for line in table.stdout.splitlines() if feed_id in line]
    return line


async def test_a_disabled_feed_has_no_next_run_and_enabled_again_runs_once_soon(
    database_url: str,
) -> None:
    """`feed disable` left the time the feed would have run at, which `feed list` showed and
    `feed enable` resumed from (at once when long past, else not before then: up to a day for a
    daily feed). A disabled feed has no next run ("-" in the table), and enabled again it runs
    once within the jitter."""
    run = asyncio.to_thread
    provider = await new_provider(database_url)
    added = await feed_add(
        database_url, provider["provider_id"], "http://127.0.0.1:9/d.json", "--every", "24h"
    )
    assert added.returncode == 0, added.stderr
    feed = json.loads(added.stdout)
    feed_id = feed["feed_id"]
    assert moment(feed["next_run_at"]) > utc_now() + timedelta(hours=23)
    assert feed["next_run_at"][:19].replace("T", " ") in await table_row(database_url, feed_id)

    off = await run(rwasync, database_url, "feed", "disable", feed_id, "--json")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["enabled"] is False
    assert json.loads(off.stdout)["next_run_at"] is None
    assert (await listed_feed(database_url, feed_id))["next_run_at"] is None
    row = await table_row(database_url, feed_id)
    assert row.split("│")[-2].strip() == "-", row  # the last column: next_run_at
    assert "False" in row, row

    before = utc_now()
    on = await run(rwasync, database_url, "feed", "enable", feed_id, "--json")
    assert on.returncode == 0, on.stderr
    enabled = json.loads(on.stdout)
    # Soon: within the jitter (10 % of the interval, at most 5 minutes), not a day away.
    assert before <= moment(enabled["next_run_at"]) <= utc_now() + timedelta(minutes=5), enabled
    assert await listed_feed(database_url, feed_id) == enabled
    # Enabling a feed that is enabled changes nothing of its schedule.
    again = await run(rwasync, database_url, "feed", "enable", feed_id, "--json")
    assert json.loads(again.stdout)["next_run_at"] == enabled["next_run_at"]

    # Registered disabled: no next run either.
    added = await feed_add(
        database_url,
        provider["provider_id"],
        "http://127.0.0.1:9/e.json",
        *("--cron", "0 3 * * *", "--disabled"),
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["next_run_at"] is None
    # A feed that an earlier release disabled keeps its old time in the row: never shown.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE feed_sources SET enabled = false, next_run_at = now() - interval '1 day'"
            " WHERE feed_id = $1",
            feed_id,
        )
    finally:
        await conn.close()
    assert (await listed_feed(database_url, feed_id))["next_run_at"] is None
    row = await table_row(database_url, feed_id)
    assert row.split("│")[-2].strip() == "-", row


async def test_a_disabled_feed_triggered_runs_once_and_stays_disabled(
    database_url: str, vhost_amqp_url: str
) -> None:
    """docs/api.md: `feed disable` takes a feed off its schedule, and a trigger still runs it:
    `feed trigger --wait` runs it once (exit 0, the finished run), and it stays disabled."""
    server = FeedServer()
    await server.start()
    try:
        snapshot = utc_now().replace(microsecond=0) - timedelta(minutes=1)
        url = server.serve("/off.json", body(feed_body([asset("off-1")], timestamp=snapshot)))
        provider = await new_provider(database_url)
        added = await feed_add(database_url, provider["provider_id"], url, "--every", "1h")
        feed_id = json.loads(added.stdout)["feed_id"]
        off = await asyncio.to_thread(rwasync, database_url, "feed", "disable", feed_id, "--json")
        assert off.returncode == 0, off.stderr
        async with running_poller(poller_settings(database_url, vhost_amqp_url)):
            triggered = await asyncio.to_thread(
                rwasync, database_url, "feed", "trigger", feed_id, "--wait", "--timeout", "30",
                "--json",
            )  # fmt: skip
        assert triggered.returncode == 0, triggered.stderr
        run = json.loads(triggered.stdout)
        assert (run["status"], run["trigger"]) == ("ok", "manual"), run
        assert run["counts"]["created"] == 1 and server.hits["/off.json"] == 1
        feed = await listed_feed(database_url, feed_id)
        assert feed["enabled"] is False and feed["next_run_at"] is None, feed
    finally:
        await server.close()

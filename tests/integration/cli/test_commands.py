"""The operator CLI against a real database: one JSON document on stdout, exit codes, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import pytest

from rwasync.store.tenants import digest

pytestmark = pytest.mark.integration


def rwasync(database_url: str, *args: str, allowed: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    env |= {"RWASYNC_DATABASE_URL": database_url, "RWASYNC_FEED_ALLOWED_NETWORKS": allowed}
    env["RWASYNC_ENV_FILE"] = os.devnull  # never the developer's .env (make run's)
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Where no database answers: a usage error must be refused before any is opened (it would end
# `error: database error: …`, exit 1, instead).
NO_DATABASE = "postgresql://postgres@127.0.0.1:1/none"


def usage_error(done: subprocess.CompletedProcess[str]) -> str:
    """The message of a usage error (exit 2, nothing on stdout) in one line: typer draws it in a
    box, wrapped at the 80 columns of a pipe."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    return " ".join(re.sub(r"[╭╮╰╯─│]", " ", done.stderr).split())


async def cli_json(database_url: str, *args: str) -> dict:  # type: ignore[type-arg]
    done = await asyncio.to_thread(rwasync, database_url, *args, "--json")
    assert done.returncode == 0, done.stderr
    document: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return document


async def test_provider_and_reader_create_print_one_json_document(database_url: str) -> None:
    result = await asyncio.to_thread(rwasync, database_url, "provider", "create", "Acme", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)  # exactly one document, nothing else
    assert set(created) == {"provider_id", "key_id", "secret", "token"}
    assert len(created["secret"]) >= 43 and created["token"].startswith("rwp_")

    reader = json.loads(
        (
            await asyncio.to_thread(rwasync, database_url, "reader", "create", "Portal", "--json")
        ).stdout
    )
    assert set(reader) == {"reader_id", "token"}

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT secret_digest, token_digest FROM provider_credentials WHERE key_id = $1",
            created["key_id"],
        )
        stored_reader = await conn.fetchval("SELECT token_digest FROM readers")
    finally:
        await conn.close()
    # Only digests are stored, never the secrets themselves.
    assert row is not None
    assert row["secret_digest"] == digest(created["secret"])
    assert row["token_digest"] == digest(created["token"])
    assert stored_reader == digest(reader["token"])


async def test_a_disabled_provider_can_be_enabled_again(database_url: str) -> None:
    created = json.loads(
        (
            await asyncio.to_thread(rwasync, database_url, "provider", "create", "Acme", "--json")
        ).stdout
    )
    provider_id = created["provider_id"]

    async def listed() -> bool:
        done = await asyncio.to_thread(rwasync, database_url, "provider", "list", "--json")
        (item,) = [i for i in json.loads(done.stdout)["items"] if i["provider_id"] == provider_id]
        return bool(item["disabled"])

    for command, disabled in (("disable", True), ("enable", False)):
        done = await asyncio.to_thread(
            rwasync, database_url, "provider", command, provider_id, "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"provider_id": provider_id, "disabled": disabled}
        assert await listed() is disabled
    unknown = await asyncio.to_thread(rwasync, database_url, "provider", "enable", "prv_nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: provider_id 'prv_nope': unknown provider\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # A vanishing rate made every call of the provider a 500 (an infinite Retry-After).
        (
            ("provider", "rate", "prv_x", "--per-second", "5e-324"),
            "Invalid value for '--per-second': must be a number from 0.001 to 1e+09",
        ),
        (("provider", "rate", "prv_x", "--per-second", "nan"), "'--per-second'"),
        (("provider", "rate", "prv_x", "--per-second", "1e308"), "'--per-second'"),
        (
            ("provider", "rate", "prv_x", "--burst", "99999999999"),
            "Invalid value for '--burst': must be an integer from 1 to 2147483647",
        ),
        (("provider", "rate", "prv_x", "--burst", "0"), "'--burst'"),
        (("provider", "rate", "prv_x", "--burst", "1.5"), "'--burst'"),
        # A page of nothing, or of more than the store serves, is no page.
        (
            ("feed", "list", "--limit", "0"),
            "Invalid value for '--limit': must be an integer from 1 to 500 (got 0)",
        ),
        (("feed", "list", "--limit", "-5"), "'--limit'"),
        (("feed", "runs", "feed_x", "--limit", "501"), "'--limit'"),
        (("feed", "runs", "feed_x", "--limit", "ten"), "'--limit'"),
        (("price", "held", "list", "--limit", "0"), "'--limit'"),
        (("price", "held", "list", "--limit", "10001"), "'--limit'"),
        # NaN passed every bound and waited for ever; 0 or less never waited at all.
        (
            ("feed", "trigger", "feed_x", "--wait", "--timeout", "nan"),
            "Invalid value for '--timeout': must be a number from 1 to 604800 seconds",
        ),
        (("feed", "trigger", "feed_x", "--wait", "--timeout", "0"), "'--timeout'"),
        (("feed", "trigger", "feed_x", "--wait", "--timeout", "inf"), "'--timeout'"),
        # a --timeout without --wait waited for nothing, unsaid
        (
            ("feed", "trigger", "feed_x", "--timeout", "30"),
            "Invalid value for '--timeout': is how long --wait waits: give --wait too",
        ),
        (("feed", "approve", "run_x", "--timeout", "-1"), "'--timeout'"),
        (("feed", "approve", "run_x", "--timeout", "soon"), "'--timeout'"),
        (
            ("credential", "rotate", "key_x", "--overlap", "soon"),
            "Invalid value for '--overlap': invalid interval 'soon'",
        ),
        (("credential", "rotate", "key_x", "--overlap", "0s"), "'--overlap'"),
        (("credential", "rotate", "key_x", "--overlap", "367d"), "'--overlap'"),
        (
            ("price", "policy", "set", "prv_x", "--max-jump", "abc"),
            "Invalid value for '--max-jump': 'abc' is not a number from 0.0001 to 1000",
        ),
        (("price", "policy", "set", "prv_x", "--max-jump", "NaN"), "'--max-jump'"),
        (("price", "policy", "set", "prv_x", "--max-jump", "1e-400"), "'--max-jump'"),
        (("price", "policy", "set", "prv_x", "--max-jump", "1001"), "'--max-jump'"),
        (("price", "held", "release", "not-a-uuid"), "'not-a-uuid' is not an event id"),
        # A mistyped queue listed nothing, which read as "no dead letters".
        (
            ("dlq", "list", "--queue", "rwasync.reconciler"),
            "Invalid value for '--queue': 'rwasync.reconciler' is not a work queue",
        ),
        (("dlq", "replay"), "give either one dead letter's MESSAGE_ID or --all"),
        (("dlq", "purge", "dl-1", "--all"), "give either one dead letter's MESSAGE_ID or --all"),
    ],
)
async def test_a_bad_option_value_is_a_usage_error_before_the_database(
    args: tuple[str, ...], message: str
) -> None:
    """Every numeric option, `--overlap`, `--queue` and the dead-letter choice: exit 2 naming
    the option, and no database opened (none answers here)."""
    done = await asyncio.to_thread(rwasync, NO_DATABASE, *args, "--json")
    assert message in usage_error(done), done.stderr


async def test_an_error_is_one_line_whatever_the_width() -> None:
    # stderr is a pipe here, so the console is 80 columns wide; the message is longer. (Checked
    # before the database is opened.)
    done = await asyncio.to_thread(
        rwasync, NO_DATABASE, "feed", "add", "prv_x", "https://feeds.example.com/a.json",
        "--every", "often",
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: /schedule: invalid interval 'often'")
    assert len(line) > 80


async def test_a_reader_token_can_be_revoked(database_url: str) -> None:
    reader = json.loads(
        (
            await asyncio.to_thread(rwasync, database_url, "reader", "create", "Portal", "--json")
        ).stdout
    )
    revoked = []
    for _ in range(2):  # a second revocation keeps the first instant, and says it was one
        done = await asyncio.to_thread(
            rwasync, database_url, "reader", "revoke", reader["reader_id"], "--json"
        )
        assert done.returncode == 0, done.stderr
        revoked.append(json.loads(done.stdout))
    assert [r.pop("already_revoked") for r in revoked] == [False, True]
    assert revoked[0] == revoked[1]
    assert revoked[0]["reader_id"] == reader["reader_id"] and revoked[0]["revoked_at"]
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM readers WHERE token_digest = $1",
            digest(reader["token"]),
        )
    finally:
        await conn.close()
    assert stored is True  # what the APIs' reader check refuses (401)
    unknown = await asyncio.to_thread(rwasync, database_url, "reader", "revoke", "rdr_nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: reader_id 'rdr_nope': unknown reader\n"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/feed.json",
        "http://2130706433/feed.json",
        "http://0x7f.1/feed.json",
        "http://[::ffff:10.0.0.1]/feed.json",
        "http://169.254.169.254/latest",
        "http://0.0.0.0/feed.json",
        "ftp://example.com/feed.json",
    ],
)
async def test_feed_add_refuses_internal_addresses(database_url: str, url: str) -> None:
    created = json.loads(
        (await asyncio.to_thread(rwasync, database_url, "provider", "create", "A", "--json")).stdout
    )
    result = await asyncio.to_thread(
        rwasync, database_url, "feed", "add", created["provider_id"], url, "--json"
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "/url" in result.stderr


async def test_feed_add_allows_loopback_when_allow_listed_and_reject_decides_once(
    database_url: str,
) -> None:
    created = json.loads(
        (await asyncio.to_thread(rwasync, database_url, "provider", "create", "A", "--json")).stdout
    )
    result = await asyncio.to_thread(
        rwasync,
        database_url,
        "feed",
        "add",
        created["provider_id"],
        "http://127.0.0.1:9/feed.json",
        "--every",
        "24h",
        "--json",
        allowed="127.0.0.0/8,::1",
    )
    assert result.returncode == 0, result.stderr
    feed = json.loads(result.stdout)
    assert feed["interval_seconds"] == 86400 and feed["next_run_at"] is not None

    conn = await asyncpg.connect(database_url)
    try:
        # held runs as the poller leaves them: compared (a held run's snapshot was compared)
        for run_id, status in (("run_old", "held"), ("run_new", "held")):
            await conn.execute(
                """INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger,
                                          requested_at, compared_at, reason, reason_code, counts)
                   VALUES ($1, $2, $3, $4, 'manual', now(), now(), 'empty', 'empty_feed',
                           '{"seen": 345, "unchanged": 245, "held_deletions": 100}')""",
                run_id,
                feed["feed_id"],
                created["provider_id"],
                status,
            )
            await asyncio.sleep(0.01)
    finally:
        await conn.close()

    rejected = await asyncio.to_thread(rwasync, database_url, "feed", "reject", "run_new", "--json")
    assert rejected.returncode == 0, rejected.stderr
    run = json.loads(rejected.stdout)
    assert run["status"] == "rejected" and run["reason_code"] == "rejected_by_operator"
    assert run["reason"] == "rejected by an operator"

    again = await asyncio.to_thread(rwasync, database_url, "feed", "reject", "run_new", "--json")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == "error: run run_new is rejected: only a held run can be decided\n"

    runs = json.loads(
        (
            await asyncio.to_thread(
                rwasync, database_url, "feed", "runs", feed["feed_id"], "--json"
            )
        ).stdout
    )
    assert [r["run_id"] for r in runs["items"]] == ["run_new", "run_old"]
    # In a pipe (80 columns) the table keeps each status, reason code and count whole (a held
    # run's counts were cut to `held_de…`), and the reasons follow it.
    table = await asyncio.to_thread(rwasync, database_url, "feed", "runs", feed["feed_id"])
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    words = ("rejected", "rejected_by_operator", "held", "empty_feed", "run_new", "run_old")
    for word in (*words, "held_deletions=100", "unchanged=245"):
        assert word in table.stdout.split(), (word, table.stdout)
    lines = [line.strip() for line in table.stdout.splitlines()]
    assert lines[-2:] == ["run_new: rejected by an operator", "run_old: empty"], table.stdout


async def test_feed_disable_and_enable_take_a_feed_off_its_schedule_and_back(
    database_url: str,
) -> None:
    created = json.loads(
        (
            await asyncio.to_thread(rwasync, database_url, "provider", "create", "Acme", "--json")
        ).stdout
    )
    added = await asyncio.to_thread(
        rwasync, database_url, "feed", "add", created["provider_id"],
        "https://feeds.example.com/a.json", "--every", "1h", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    feed_id = json.loads(added.stdout)["feed_id"]
    off = await asyncio.to_thread(rwasync, database_url, "feed", "disable", feed_id, "--json")
    assert off.returncode == 0 and json.loads(off.stdout)["enabled"] is False, off.stderr
    listed = await asyncio.to_thread(rwasync, database_url, "feed", "list", "--json")
    assert [f["enabled"] for f in json.loads(listed.stdout)["items"]] == [False]
    on = await asyncio.to_thread(rwasync, database_url, "feed", "enable", feed_id, "--json")
    assert on.returncode == 0 and json.loads(on.stdout)["enabled"] is True, on.stderr
    unknown = await asyncio.to_thread(rwasync, database_url, "feed", "disable", "feed_nope")
    assert unknown.returncode == 1 and "unknown feed" in unknown.stderr


async def test_feed_trigger_of_unknown_feed_fails_cleanly(database_url: str) -> None:
    result = await asyncio.to_thread(
        rwasync, database_url, "feed", "trigger", "feed_nope", "--json"
    )
    assert result.returncode == 1
    assert result.stdout == "" and "unknown feed" in result.stderr


async def test_credential_rotate_takes_overlaps_from_one_second(database_url: str) -> None:
    """`--overlap` is a duration, not a feed schedule: no 60 s floor (a provider switching at
    once wants the old key gone in seconds), 366 days at most."""
    created = json.loads(
        (
            await asyncio.to_thread(rwasync, database_url, "provider", "create", "Acme", "--json")
        ).stdout
    )
    key_id = created["key_id"]
    done = await asyncio.to_thread(
        rwasync, database_url, "credential", "rotate", key_id, "--overlap", "10s", "--json"
    )
    assert done.returncode == 0, done.stderr
    rotated = json.loads(done.stdout)
    conn = await asyncpg.connect(database_url)
    try:
        left = await conn.fetchval(
            "SELECT extract(epoch FROM $1::timestamptz - now())",
            datetime.fromisoformat(rotated["old_revoked_at"]),
        )
    finally:
        await conn.close()
    assert 0 < left <= 10
    # rotated again, the old key's scheduled end stands and is said: a longer overlap or none
    # does not put it off (nor report it as null), a shorter one brings it forward
    for again, ends in (
        (("--overlap", "2h"), "same"),
        ((), "same"),
        (("--overlap", "1s"), "sooner"),
    ):
        answer = await asyncio.to_thread(
            rwasync, database_url, "credential", "rotate", key_id, *again, "--json"
        )
        assert answer.returncode == 0, answer.stderr
        said = json.loads(answer.stdout)["old_revoked_at"]
        assert said is not None, again
        if ends == "same":
            assert said == rotated["old_revoked_at"], again
        else:
            assert said < rotated["old_revoked_at"], again
    # the list tells a scheduled end (still live) from one that has come
    listed = await asyncio.to_thread(
        rwasync, database_url, "credential", "list", created["provider_id"], "--json"
    )
    live = {item["key_id"]: item["live"] for item in json.loads(listed.stdout)["items"]}
    assert live[rotated["key_id"]] is True and len(live) == 5, live
    await asyncio.sleep(1.2)  # past the last rotation's 1 s overlap
    listed = await asyncio.to_thread(
        rwasync, database_url, "credential", "list", created["provider_id"], "--json"
    )
    assert {item["key_id"]: item["live"] for item in json.loads(listed.stdout)["items"]}[
        key_id
    ] is False
    for overlap in ("0s", "367d", "soon"):
        refused = await asyncio.to_thread(
            rwasync, database_url, "credential", "rotate", rotated["key_id"], "--overlap", overlap
        )
        assert "Invalid value for '--overlap'" in usage_error(refused), refused.stderr


async def insert_runs(database_url: str, feed: dict[str, str], *runs: tuple[str, str]) -> None:
    """Runs of `feed` as the poller leaves them, each requested a second after the one before:
    (run_id, status); a held run was compared, a not_modified one was not."""
    start = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        for n, (run_id, status) in enumerate(runs):
            held = status == "held"
            await conn.execute(
                """INSERT INTO feed_runs (run_id, feed_id, provider_id, status, trigger,
                                          requested_at, compared_at, reason, reason_code)
                   VALUES ($1, $2, $3, $4, 'manual', $5, $6, $7, $8)""",
                run_id,
                feed["feed_id"],
                feed["provider_id"],
                status,
                start + timedelta(seconds=n),
                start + timedelta(seconds=n) if held else None,
                "empty" if held else None,
                "empty_feed" if held else None,
            )
    finally:
        await conn.close()


async def test_a_superseded_held_run_is_refused_naming_the_later_run(
    database_url: str,
) -> None:
    """Approving a held run a later one superseded would undo the newer snapshot: the refusal
    names that run and what to do (the feed API's 409 says the same, test_feed_api.py); only
    the latest held run may be rejected; an approved run waits for the poller."""
    provider = await cli_json(database_url, "provider", "create", "Acme")
    feed = await cli_json(
        database_url, "feed", "add", provider["provider_id"], "https://feeds.example.com/a.json"
    )
    await insert_runs(database_url, feed, ("run_a", "held"), ("run_b", "held"))

    async def decide(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(rwasync, database_url, "feed", *args, "--json")

    refused = await decide("approve", "run_a")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "error: run run_a was superseded by run run_b, which read the feed again; "
        "approve that one or trigger a new run\n"
    )
    # Only the feed's latest held run may be decided, as the contract says (newcomer trial).
    not_latest = await decide("reject", "run_a")
    assert (not_latest.returncode, not_latest.stdout) == (1, "")
    assert not_latest.stderr == (
        "error: run run_a is not the feed's latest held run: run run_b is; decide that one first\n"
    )

    # No poller here: approved, run_b stays held until the wait ends (exit 4), which prints the
    # run as it stands all the same (the CLI always prints the run: newcomer trial).
    waited = await decide("approve", "run_b", "--timeout", "1")
    assert waited.returncode == 4 and "run_b still held after 1 s" in waited.stderr
    assert json.loads(waited.stdout)["status"] == "held"
    for decision in ("approve", "reject"):
        again = await decide(decision, "run_b")
        assert (again.returncode, again.stdout) == (1, "")
        assert again.stderr == (
            "error: run run_b is already approved; the poller applies it shortly\n"
        ), decision

    # A later run that found the feed unchanged supersedes too: nothing left to approve instead.
    await insert_runs(database_url, feed, ("run_c", "held"), ("run_d", "not_modified"))
    unchanged = await decide("approve", "run_c")
    assert unchanged.stderr == (
        "error: run run_c was superseded by run run_d, which found the feed unchanged; "
        "trigger a new run\n"
    )
    approved_then_superseded = await decide("approve", "run_b")
    assert approved_then_superseded.stderr == (
        "error: run run_b is already approved, but run run_d superseded it: the poller ends it "
        "failed (superseded) without applying it\n"
    )


async def test_every_unknown_id_is_refused_in_one_format(database_url: str) -> None:
    """`error: FIELD 'VALUE': unknown THING`, exit 1, nothing on stdout, whichever command."""
    provider = await cli_json(database_url, "provider", "create", "Acme")
    known = provider["provider_id"]
    url = "https://feeds.example.com/a.json"
    no_provider = "provider_id 'prv_x': unknown provider"
    cases = [
        (("provider", "disable", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("provider", "enable", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("provider", "rate", "prv_x", "--burst", "5"), "provider_id 'prv_x': unknown provider"),
        (("feed", "add", "prv_x", url), "provider_id 'prv_x': unknown provider"),
        (("feed", "list", "--provider", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("feed", "runs", "feed_x"), "feed_id 'feed_x': unknown feed"),
        (("feed", "trigger", "feed_x"), "feed_id 'feed_x': unknown feed"),
        (("feed", "disable", "feed_x"), "feed_id 'feed_x': unknown feed"),
        (("feed", "enable", "feed_x"), "feed_id 'feed_x': unknown feed"),
        (("feed", "approve", "run_x"), "run_id 'run_x': unknown run"),
        (("feed", "reject", "run_x"), "run_id 'run_x': unknown run"),
        (("reader", "revoke", "rdr_x"), "reader_id 'rdr_x': unknown reader"),
        (("credential", "issue", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("credential", "issue", "ptn_x"), "partner_id 'ptn_x': unknown partner"),
        (("credential", "list", "ptn_x"), "partner_id 'ptn_x': unknown partner"),
        (("credential", "rotate", "key_x"), "key_id 'key_x': unknown credential"),
        (("credential", "revoke", "key_x"), "key_id 'key_x': unknown credential"),
        (("partner", "create", "Reach", "--provider", "prv_x"), no_provider),
        (("partner", "grant", "ptn_x", known), "partner_id 'ptn_x': unknown partner"),
        (("partner", "revoke", "ptn_x", known), "partner_id 'ptn_x': unknown partner"),
        (("price", "policy", "set", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("price", "policy", "show", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("price", "held", "list", "--provider", "prv_x"), "provider_id 'prv_x': unknown provider"),
        (("dlq", "show", "dl_x"), "message_id 'dl_x': unknown dead letter"),
        (("dlq", "purge", "dl_x"), "message_id 'dl_x': unknown dead letter"),
    ]  # fmt: skip
    for args, message in cases:
        done = await asyncio.to_thread(rwasync, database_url, *args, "--json")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"error: {message}\n"), args
    # A partner refused for an unknown provider was not created.
    assert (await cli_json(database_url, "partner", "list"))["items"] == []


async def test_revoking_a_revoked_credential_again_says_so_and_succeeds(database_url: str) -> None:
    """A script repeating a revocation must not fail on the second run; the first instant
    stands."""
    provider = await cli_json(database_url, "provider", "create", "Acme")
    key_id = provider["key_id"]
    first = await cli_json(database_url, "credential", "revoke", key_id)
    assert first["already_revoked"] is False and first["revoked_at"]
    again = await cli_json(database_url, "credential", "revoke", key_id)
    assert again == first | {"already_revoked": True}
    people = await asyncio.to_thread(rwasync, database_url, "credential", "revoke", key_id)
    assert people.returncode == 0 and '"already_revoked": true' in people.stdout, people.stdout
    # A revoked credential has nothing to rotate: it says so, and what to do instead.
    rotated = await asyncio.to_thread(
        rwasync, database_url, "credential", "rotate", key_id, "--json"
    )
    assert (rotated.returncode, rotated.stdout) == (1, "")
    assert rotated.stderr == (
        f"error: key_id '{key_id}': the credential is revoked; issue a new one with "
        "`rwasync credential issue OWNER_ID`\n"
    )
    # A revocation only scheduled (a rotation's overlap) is brought forward: a revocation now.
    issued = await cli_json(database_url, "credential", "issue", provider["provider_id"])
    await cli_json(database_url, "credential", "rotate", issued["key_id"], "--overlap", "1h")
    now = await cli_json(database_url, "credential", "revoke", issued["key_id"])
    assert now["already_revoked"] is False
    assert datetime.fromisoformat(now["revoked_at"]) <= datetime.now(UTC)


async def test_a_partner_is_disabled_and_enabled_like_a_provider(database_url: str) -> None:
    """`partner list` showed a `disabled` column no command could set (a partner's trial), and a
    provider named twice at `partner create` was printed twice though granted once."""
    acme = await cli_json(database_url, "provider", "create", "Acme")
    reach = await cli_json(
        database_url, "partner", "create", "Reach",
        "--provider", acme["provider_id"], "--provider", acme["provider_id"],
    )  # fmt: skip
    assert reach["providers"] == [acme["provider_id"]]

    async def disabled() -> bool:
        [partner] = (await cli_json(database_url, "partner", "list"))["items"]
        return bool(partner["disabled"])

    off = await cli_json(database_url, "partner", "disable", reach["partner_id"])
    assert off == {"partner_id": reach["partner_id"], "disabled": True} and await disabled()
    on = await cli_json(database_url, "partner", "enable", reach["partner_id"])
    assert on == {"partner_id": reach["partner_id"], "disabled": False} and not await disabled()
    unknown = await asyncio.to_thread(rwasync, database_url, "partner", "disable", "ptn_nope")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "error: partner_id 'ptn_nope': unknown partner\n",
    )


async def test_readers_and_partners_are_listed_like_providers(database_url: str) -> None:
    acme = await cli_json(database_url, "provider", "create", "Acme")
    other = await cli_json(database_url, "provider", "create", "Other")
    portal = await cli_json(database_url, "reader", "create", "Portal")
    kiosk = await cli_json(database_url, "reader", "create", "Kiosk")
    await cli_json(database_url, "reader", "revoke", kiosk["reader_id"])
    reach = await cli_json(
        database_url, "partner", "create", "Reach Partners Incorporated of Greater Nowhere",
        "--provider", acme["provider_id"],
    )  # fmt: skip
    await cli_json(database_url, "partner", "grant", reach["partner_id"], other["provider_id"])
    lone = await cli_json(database_url, "partner", "create", "Lone")

    readers = (await cli_json(database_url, "reader", "list"))["items"]
    assert [(r["reader_id"], r["name"], r["revoked_at"] is None) for r in readers] == [
        (portal["reader_id"], "Portal", True),
        (kiosk["reader_id"], "Kiosk", False),
    ]
    assert set(readers[0]) == {"reader_id", "name", "created_at", "revoked_at"}  # no token
    partners = (await cli_json(database_url, "partner", "list"))["items"]
    assert [(p["partner_id"], p["providers"], p["disabled"]) for p in partners] == [
        (reach["partner_id"], [acme["provider_id"], other["provider_id"]], False),
        (lone["partner_id"], [], False),
    ]
    assert set(partners[0]) == {"partner_id", "name", "disabled", "created_at", "providers"}

    # In a pipe (80 columns): every id whole, one a word.
    for kind, ids in (
        ("reader", [portal["reader_id"], kiosk["reader_id"]]),
        ("partner", [reach["partner_id"], lone["partner_id"], acme["provider_id"]]),
    ):
        table = await asyncio.to_thread(rwasync, database_url, kind, "list")
        assert table.returncode == 0, table.stderr
        assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
        assert set(ids) <= set(table.stdout.split()), table.stdout

    # A grant, like a credential, may be revoked twice: the second says it was not there.
    ungrant = ("partner", "revoke", reach["partner_id"], other["provider_id"])
    first, again = [await cli_json(database_url, *ungrant) for _ in range(2)]
    assert (first["granted"], first["already_revoked"]) == (False, False)
    assert (again["granted"], again["already_revoked"]) == (False, True)
    partners = (await cli_json(database_url, "partner", "list"))["items"]
    assert partners[0]["providers"] == [acme["provider_id"]]


NAME_REFUSALS: Final = [
    ("", "must not be empty or blank"),
    ("   ", "must not be empty or blank"),
    ("x" * 301, "must be at most 300 characters (got 301)"),
    ("Acme\tEstates", "must not hold a control character or line break ('\\t')"),
    ("Acme\nEstates", "must not hold a control character or line break ('\\n')"),
    ("\x1b[2JAcme", "must not hold a control character or line break ('\\x1b')"),
    ("Acme\u2028Estates", "must not hold a control character or line break ('\\u2028')"),
    # a direction override reordered the rest of its table row; a zero-width space hid in it
    (
        "bad\u202ename",
        "must not hold an invisible formatting character such as a direction mark ('\\u202e')",
    ),
    (
        "Zero\u200bWidth",
        "must not hold an invisible formatting character such as a direction mark ('\\u200b')",
    ),
]


async def test_names_are_checked_alike_before_anything_is_created(database_url: str) -> None:
    """One rule for the names of providers, readers and partners: a blank one, one too long to
    show, or one with a control character (a terminal escape, a line break in a table or a log
    line) is a usage error naming NAME."""
    for kind in ("provider", "reader", "partner"):
        for name, message in NAME_REFUSALS:
            done = await asyncio.to_thread(rwasync, database_url, kind, "create", name, "--json")
            assert f"Invalid value for 'NAME': {message}" in usage_error(done), (kind, name)
    for kind in ("provider", "reader", "partner"):
        assert (await cli_json(database_url, kind, "list"))["items"] == [], kind


async def test_a_name_is_stored_without_the_blanks_around_it(database_url: str) -> None:
    await cli_json(database_url, "provider", "create", "  Acme Estates ")
    await cli_json(database_url, "reader", "create", "Portal\u00a0")
    await cli_json(database_url, "partner", "create", " Reach")
    names = [
        [item["name"] for item in (await cli_json(database_url, kind, "list"))["items"]]
        for kind in ("provider", "reader", "partner")
    ]
    assert names == [["Acme Estates"], ["Portal"], ["Reach"]]

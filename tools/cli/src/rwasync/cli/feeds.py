"""Feed sources and their runs: add, list, trigger (and wait), runs, approve and reject."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Final

import asyncpg
import typer
from rich.table import Table

from rwasync.cli.common import (
    DEFAULT_WAIT,
    EXIT_FAILED,
    EXIT_HELD,
    TimeoutOption,
    emit,
    fail,
    fail_invalid,
    integer_from,
    require_provider,
    run_db,
    settings,
    stderr,
    table_time,
)
from rwasync.cli.flags import JsonFlag
from rwasync.feeds.auth import FeedSecrets
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.errors import FieldError
from rwasync.schema.feeds import (
    DEFAULT_DELETION_THRESHOLD,
    FINISHED_STATUSES,
    FeedSettingInvalid,
    RunStatus,
)
from rwasync.store import feed_settings, feeds

feed_app = typer.Typer(
    help="Feed sources and their runs.", no_args_is_help=True, rich_markup_mode="markdown"
)


# --- feed add: its options made into the registration document the settings' rules check ---


def _secret(env: str | None, path: str | None) -> str | None:
    """The feed secret, from an environment variable or a file (`-`: standard input), never
    from the command line, where other users of the host could read it."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise FeedSettingInvalid("/auth", f"the environment variable {env} is not set")
        return value
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = f"cannot read the secret from {path}: {exc}"
            raise FeedSettingInvalid("/auth", why) from None
        return text.strip()
    return None


def _auth_document(
    kind: str, username: str | None, header: str | None, secret: str | None
) -> dict[str, Any]:
    match kind:
        case "basic":
            return {"type": kind, "username": username, "password": secret}
        case "bearer":
            return {"type": kind, "token": secret}
        case "header":
            return {"type": kind, "name": header, "value": secret}
        case _:
            return {"type": kind}


_WITH_SECRETS: Final = frozenset({"basic", "bearer", "header"})


def _unused_auth_options(
    kind: str,
    username: str | None,
    header: str | None,
    secret_env: str | None,
    secret_file: str | None,
) -> list[FieldError]:
    """A credential option the chosen `--auth` does not take, or two sources of its secret: said,
    never silently dropped (the feed would be stored without the credentials meant for it)."""
    found = []
    if username is not None and kind != "basic":
        found.append(FieldError("/auth", "--auth-username is only for --auth basic"))
    if header is not None and kind != "header":
        found.append(FieldError("/auth", "--auth-header is only for --auth header"))
    secret_option = "--auth-secret-env" if secret_env is not None else "--auth-secret-file"
    if (secret_env is not None or secret_file is not None) and kind not in _WITH_SECRETS:
        found.append(
            FieldError("/auth", f"{secret_option} is only for --auth basic, bearer or header")
        )
    if secret_env is not None and secret_file is not None:
        found.append(FieldError("/auth", "give --auth-secret-env or --auth-secret-file, not both"))
    return found


def _threshold_document(percent: str | None, min_count: str | None) -> dict[str, Any]:
    """`deletion_threshold` from the options' text, as the settings' rules take it: the share as
    text (read exactly, a decimal), the count as an integer when it is one; what is not is
    left as sent, for the rules to name."""
    document: dict[str, Any] = {}
    if percent is not None:
        document["percent"] = percent
    if min_count is not None:
        try:
            document["min_count"] = int(min_count)
        except ValueError:
            document["min_count"] = min_count
    return document


@feed_app.command("add")
def feed_add(
    provider_id: str,
    url: str,
    fmt: Annotated[
        str, typer.Option("--format", help="Feed format: json (envelope or array), jsonl, csv.")
    ] = "json",
    every: Annotated[
        str | None,
        typer.Option("--every", help="Schedule interval, e.g. 15m, 24h (default: manual only)."),
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="Schedule as a cron expression in UTC, e.g. '0 3 * * *'."),
    ] = None,
    auth: Annotated[
        str, typer.Option("--auth", help="Feed credentials: none, basic, bearer or header.")
    ] = "none",
    auth_username: Annotated[
        str | None, typer.Option("--auth-username", help="User name for --auth basic.")
    ] = None,
    auth_header: Annotated[
        str | None, typer.Option("--auth-header", help="Header name for --auth header.")
    ] = None,
    auth_secret_env: Annotated[
        str | None,
        typer.Option(
            "--auth-secret-env", help="Read the password, token or header value from this variable."
        ),
    ] = None,
    auth_secret_file: Annotated[
        str | None,
        typer.Option("--auth-secret-file", help="Read the secret from this file ('-': stdin)."),
    ] = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Register without running it on its schedule.")
    ] = False,
    # Read as text, so that a value that is no number is reported with every other problem
    # (exit 1), as the settings' rules say it, rather than alone as a usage error.
    threshold_percent: Annotated[
        str | None,
        typer.Option(
            "--deletion-threshold-percent",
            help="Hold runs deleting more than this share "
            f"(default {DEFAULT_DELETION_THRESHOLD.percent}).",
        ),
    ] = None,
    threshold_min: Annotated[
        str | None,
        typer.Option(
            "--deletion-threshold-min",
            help="...and more than this many assets "
            f"(default {DEFAULT_DELETION_THRESHOLD.min_count}).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a feed source for a provider (the same rules as the provider's PUT /v1/feeds)."""
    found = settings()
    policy = AddressPolicy.from_setting(found.feed_allowed_networks)
    # Every problem at once, as the provider's PUT lists them: the options' own first.
    errors: list[FieldError] = []
    schedule = cron if cron is not None else every
    if every is not None and cron is not None:
        errors.append(FieldError("/schedule", "give --every or --cron, not both"))
        schedule = None  # said: the settings' rules need not say more of it
    errors.extend(
        _unused_auth_options(auth, auth_username, auth_header, auth_secret_env, auth_secret_file)
    )
    try:
        auth_document = _auth_document(
            auth, auth_username, auth_header, _secret(auth_secret_env, auth_secret_file)
        )
    except FeedSettingInvalid as exc:
        errors.extend(exc.errors)
        # said already: a stand-in secret, so that the rest of the credentials is still checked
        auth_document = _auth_document(auth, auth_username, auth_header, "unread")
    document = {
        "url": url,
        "format": fmt,
        "schedule": schedule,
        "auth": auth_document,
        "deletion_threshold": _threshold_document(threshold_percent, threshold_min),
        "enabled": not disabled,
    }
    try:
        secrets = FeedSecrets(found.feed_secrets_key.get_secret_value())
    except ValueError as exc:
        fail(str(exc))
    try:
        registration = feed_settings.parse_feed_settings(document, policy, secrets=secrets)
    except FeedSettingInvalid as exc:
        errors.extend(exc.errors)
    if errors:
        fail_invalid(FeedSettingInvalid.of(errors), ADD_OPTIONS)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        await require_provider(conn, provider_id)
        return await feeds.add_feed(
            conn, provider_id=provider_id, settings=registration, secrets=secrets
        )

    emit(run_db(work), as_json)


# The `feed add` option behind each settings pointer its errors name.
_SECRET = "--auth-secret-env or --auth-secret-file"
ADD_OPTIONS: Final = {
    "/url": "the URL argument",
    "/format": "--format",
    "/schedule": "--every or --cron",
    "/auth/type": "--auth",
    "/auth/username": "--auth-username",
    "/auth/password": _SECRET,
    "/auth/token": _SECRET,
    "/auth/value": _SECRET,
    "/auth/name": "--auth-header",
    "/deletion_threshold/percent": "--deletion-threshold-percent",
    "/deletion_threshold/min_count": "--deletion-threshold-min",
}


# --- the feeds themselves: a key for their secrets, the list ---


@feed_app.command("secrets-key")
def feed_secrets_key(as_json: JsonFlag = False) -> None:
    """Print a new key for RWASYNC_FEED_SECRETS_KEY (first in the list to rotate; old keys open)."""
    emit({"key": FeedSecrets.new_key()}, as_json)


# Items a page (`--limit`): the feed API's bounds, which the store enforces.
PageSize = Annotated[
    int,
    typer.Option(
        "--limit",
        parser=integer_from(1, feeds.MAX_PAGE),
        help=f"Items a page (1-{feeds.MAX_PAGE}).",
    ),
]


@feed_app.command("list")
def feed_list(
    provider_id: Annotated[str | None, typer.Option("--provider")] = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of a page.")] = None,
    limit: PageSize = 100,
    as_json: JsonFlag = False,
) -> None:
    """List feed sources, oldest first: each with its schedule and when it next runs."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        await require_provider(conn, provider_id)
        return await feeds.list_feeds(conn, provider_id, cursor=cursor, limit=limit)

    page = run_db(work)

    def table() -> Table:
        # Narrow enough for 80 columns: the feed id above its provider (unless --provider named
        # it), the schedule, whether it is on it and when it next runs; `--json` has every field.
        t = Table("feed_id", "schedule", "enabled", "next_run_at")
        for f in page["items"]:
            ids = f["feed_id"] + ("" if provider_id is not None else f"\n{f['provider_id']}")
            t.add_row(
                ids,
                f["schedule"] or "manual",
                str(f["enabled"]),
                # none while disabled or manual only: nothing will run it but a trigger
                table_time(f["next_run_at"]) or NO_NEXT_RUN,
            )
        return t

    emit(page, as_json, table)


# What a table shows for a feed that its schedule will not run (disabled, or manual only).
NO_NEXT_RUN: Final = "-"


# --- runs: triggering one, waiting for it, listing and deciding them ---


def _wait_then_print(run_id: str, timeout: float, as_json: bool) -> None:
    """Wait for the run, print it and exit by its outcome. Still unfinished at `timeout`, the run
    as it stands is printed all the same (the CLI always prints the run: a script reads its
    status), then an error line, exit 4."""
    run, finished = _wait_for_run(run_id, timeout)
    emit(run, as_json)
    if not finished:
        fail(f"run {run_id} still {run['status']} after {timeout:.0f} s", EXIT_FAILED)
    _exit_for(run)


def _wait_for_run(run_id: str, timeout: float) -> tuple[dict[str, Any], bool]:
    """Poll the run until it ends or `timeout` passes (the run, and whether it ended); on a
    terminal, a spinner on stderr says how it is going."""

    async def work(conn: asyncpg.Connection) -> tuple[dict[str, Any], bool]:
        began = time.monotonic()
        deadline = began + timeout
        with _RunProgress(run_id) as progress:
            while True:
                # The approval first, then the run: the poller ends an approved run and clears
                # its decision in one statement, so a run read after "not pending" that is still
                # held is truly held (read the other way round, a run read as held just before
                # the poller ended it looked held and no longer pending).
                pending = await feeds.approval_pending(conn, run_id)
                run = await feeds.get_run(conn, run_id)
                assert run is not None
                if run["status"] in FINISHED_STATUSES and not (
                    run["status"] == RunStatus.HELD and pending
                ):
                    return run, True
                if time.monotonic() > deadline:
                    # (said once the spinner is gone, or it would wipe the message)
                    return run, False
                progress.update(run, time.monotonic() - began)
                await asyncio.sleep(0.25)

    return run_db(work)


class _RunProgress:
    """`run_… running, 1,234 items read, 12 s` on stderr while waiting, when it is a terminal
    (never in a pipe or a log, and never on stdout, which `--json` keeps for its document)."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._status = stderr.status(f"{run_id} queued") if stderr.is_terminal else None

    def __enter__(self) -> _RunProgress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, run: dict[str, Any], elapsed: float) -> None:
        if self._status is not None:
            seen = (run.get("counts") or {}).get("seen", 0)
            self._status.update(
                f"{self._run_id} {run['status']}, {seen:,} items read, {elapsed:.0f} s"
            )


def _exit_for(run: dict[str, Any]) -> None:
    if run["status"] == RunStatus.HELD:
        raise typer.Exit(EXIT_HELD)
    if run["status"] in (RunStatus.FAILED, RunStatus.REJECTED):
        raise typer.Exit(EXIT_FAILED)


@feed_app.command("trigger")
def feed_trigger(
    feed_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print it.")] = False,
    timeout: TimeoutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a feed now (it starts within seconds, once fewer of its provider's runs are in
    progress than the limit); a disabled feed runs once and stays disabled. Exit 0
    ok/not_modified, 3 held, 4 failed/rejected."""
    if timeout is not None and not wait:
        # said, not ignored: the caller meant to wait and would read the run id as the run
        raise typer.BadParameter(
            "is how long --wait waits: give --wait too", param_hint="'--timeout'"
        )
    run_id = run_db(lambda conn: feeds.request_run(conn, feed_id))
    if not wait:
        emit({"run_id": run_id}, as_json)
        return
    _wait_then_print(run_id, timeout or DEFAULT_WAIT, as_json)


@feed_app.command("disable")
def feed_disable(feed_id: str, as_json: JsonFlag = False) -> None:
    """Take a feed off its schedule: no next run (a trigger still runs it once); its snapshot
    then no longer keeps the provider's other feeds from deleting what it lists."""
    emit(run_db(lambda conn: feeds.set_feed_enabled(conn, feed_id, False)), as_json)


@feed_app.command("enable")
def feed_enable(feed_id: str, as_json: JsonFlag = False) -> None:
    """Put a feed back on its schedule: it runs once soon, then on its schedule."""
    emit(run_db(lambda conn: feeds.set_feed_enabled(conn, feed_id, True)), as_json)


@feed_app.command("runs")
def feed_runs(
    feed_id: str,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of a page.")] = None,
    limit: PageSize = 50,
    as_json: JsonFlag = False,
) -> None:
    """A feed's runs, newest first."""
    page = run_db(lambda conn: feeds.list_runs(conn, feed_id, cursor=cursor, limit=limit))
    items = page["items"]

    def table() -> Table:
        # 79 columns wide, every cell whole: the status over its reason code, the start's date
        # over its time, a count that is not 0 a line, and the reasons below the table, where
        # they have the width (as a column of their own they left the counts a few letters a
        # line: `held_de…`). `--json` has every field.
        reasons = [f"{r['run_id']}: {r['reason']}" for r in items if r.get("reason")]
        t = Table(
            "run_id", "status", "started_at", "counts",
            caption="\n".join(reasons) or None, caption_justify="left",
        )  # fmt: skip
        for column in t.columns:
            column.no_wrap = True
        for r in items:
            code = r.get("reason_code")
            t.add_row(
                r["run_id"],
                r["status"] + (f"\n{code}" if code else ""),
                table_time(r["started_at"]).replace(" ", "\n"),
                "\n".join(f"{k}={v}" for k, v in r["counts"].items() if v),
            )
        return t

    emit(page, as_json, table)


@feed_app.command("approve")
def feed_approve(
    run_id: str,
    timeout: TimeoutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Apply a held run now, under the version guards; prints the finished run. Refused (exit 1)
    once a later run superseded it (the message names that run) or when approved already."""
    run_db(lambda conn: feeds.decide_run(conn, run_id, "approve"))
    _wait_then_print(run_id, timeout or DEFAULT_WAIT, as_json)


@feed_app.command("reject")
def feed_reject(run_id: str, as_json: JsonFlag = False) -> None:
    """Reject a held run, the feed's latest held run (one a later run superseded too): nothing of
    it is applied. Refused (exit 1) while a later run of the feed is held."""
    run_db(lambda conn: feeds.decide_run(conn, run_id, "reject"))
    run = run_db(lambda conn: feeds.get_run(conn, run_id))
    emit(run, as_json)

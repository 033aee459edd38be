"""Every `rwasync` command offers `--json` (stdout then holds one JSON document), so a script
never has to scrape a table; a command added without it fails here."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import typer
import typer.main
from rich.console import Console
from rich.table import Table

from rwasync.cli.app import app
from rwasync.cli.common import checked_name, ids_whole, json_text, table_time

pytestmark = pytest.mark.unit


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if not isinstance(group, typer.core.TyperGroup):
        yield " ".join(path), group
        return
    # As click finds them (the command groups are imported only when asked for).
    context = typer.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        yield from commands(command, (*path, name))


ALL = dict(commands(typer.main.get_command(app)))


def test_the_documented_commands_exist() -> None:
    for name in ("migrate", "status", "feed trigger", "feed approve", "dlq replay", "dlq purge"):
        assert name in ALL, name
    assert len(ALL) >= 29


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_command_has_json(name: str) -> None:
    options = {option for param in ALL[name].params for option in getattr(param, "opts", [])}
    assert "--json" in options, f"rwasync {name} has no --json"


def test_json_output_renders_timestamps_like_the_apis() -> None:
    # `provider list`, `credential list` and `status` print database rows' datetimes; they read
    # like every other timestamp rwasync prints (UTC, microseconds, `Z`), not `+00:00`.
    moment = datetime(2026, 11, 29, 20, 53, 17, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=2)))
    assert json_text({"at": moment, "also": [elsewhere], "none": None}) == (
        '{"at":"2026-11-29T20:53:17.000000Z","also":["2026-11-29T20:53:17.000000Z"],"none":null}'
    )


def test_a_name_is_checked_by_one_function() -> None:
    # The commands that take a NAME share one rule (tests/integration/cli: through each).
    # A command added with a NAME of its own fails here: give it `NameArgument`.
    named = [name for name, command in ALL.items() if any(p.name == "name" for p in command.params)]
    assert named == ["provider create", "reader create", "partner create"]
    assert checked_name("  Acme Estates ") == "Acme Estates"
    for bad in ("", " \t ", "x" * 301, "a\x00b", "a\rb", "a\x85b", "a\u2029b"):
        with pytest.raises(typer.BadParameter):
            checked_name(bad)


def test_a_table_keeps_its_ids_whole_on_a_narrow_screen() -> None:
    run_id = "run_9572f5c0a1b2c3d4e5f60718293a4b5c"
    table = Table("run_id", "status", "counts", "reason")
    table.add_row(run_id, "ok", '{"seen": 348, "created": 348, "updated": 0}', "a reason " * 8)
    out = io.StringIO()
    Console(file=out, width=60).print(ids_whole(table))
    assert run_id in out.getvalue()


def test_a_table_shows_a_timestamp_to_the_second() -> None:
    assert table_time("2026-11-30T17:00:01.123456Z") == "2026-11-30 17:00:01"
    assert table_time(None) == ""


def test_an_unknown_id_is_echoed_at_most_200_characters() -> None:
    """A 100,000-character id made a 100,040-byte error line (security trial)."""
    from rwasync.cli.common import unknown

    refused = str(unknown("provider_id", "p" * 100_000, "provider"))
    assert refused == f"provider_id {'p' * 200 + '…'!r}: unknown provider"
    assert str(unknown("provider_id", "prv_x", "provider")) == (
        "provider_id 'prv_x': unknown provider"
    )

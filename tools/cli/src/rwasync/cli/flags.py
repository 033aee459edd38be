"""Options every command shares, in a module light enough for the CLI's entry point."""

from typing import Annotated

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

"""The Typer application, its entry points, and the one place where expected failures become red messages."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import typer
from rich.markup import escape

from db.cli.common import EXPECTED_FAILURES, describe_failure, error_console

app = typer.Typer(
    name="db",
    help="Create, fill, migrate, back up, restore, clean and check the database, verify its audit chain, and read "
    "its reports.\n\n"
    "The database is --url, else DATABASE_URL, else the SQLite file db/data/app.db.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module registers its commands on ``app`` when imported.
COMMAND_MODULES = (
    "setup", "create", "fill", "generate", "migrate", "backup", "restore", "cleanup", "check", "storage", "audit",
    "report", "admin",
)


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"db.cli.{name}")


def main(argv: Sequence[str] | None = None, *, prog_name: str = "python -m db") -> int:
    """Run the command line; return the exit code (0 success, 1 an expected failure, 2 a usage error).

    Expected failures (a bad URL, an unreachable server, a wrong revision, a failed verification) print one red
    line and no traceback; ``DBLAYER_DEBUG=1`` shows the traceback too.
    """
    _register()
    try:
        app(args=list(argv) if argv is not None else None, prog_name=prog_name)
    except SystemExit as stop:  # Typer's normal way out, with the exit code
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except EXPECTED_FAILURES as failure:
        if os.environ.get("DBLAYER_DEBUG"):
            raise
        message = escape(describe_failure(failure))
        error_console().print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
        return 1
    return 0


def run_script(command: str) -> NoReturn:
    """``python -m db.scripts.<name> ARGS``: the same as ``python -m db <command> ARGS``."""
    sys.exit(main([command, *sys.argv[1:]]))

"""The Typer application, its entry points, and the one place where failures become one red line.

Exit codes: 0 success; 1 an expected failure (a bad URL, an unreachable server, a refused value, a failed check);
2 a usage error (an unknown option, a value outside an option's range, an argument that is not UTF-8); 130 an
interrupt (Ctrl-C), with one line saying what had been committed and what was rolled back (or, for a restore, which
data the target holds). A failure is one line on
stderr, never a traceback (``DBLAYER_DEBUG=1`` shows it).

Settings come, first to last: an option after the command (``status --url X``), the same option before it
(``--url X status``), the environment, a ``.env`` file in the working directory, the default. The options before
the command and the ``.env`` file act through the environment variables, for the run only: ``main`` puts the
environment back as it was.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from db.cli.common import STORAGE_ENV, URL_ENV, describe_failure, error_console, expected_failures
from db.cli.ledger import Interrupted, Ledger

app = typer.Typer(
    name="db",
    help="Create, fill, migrate, back up, restore, clean and check the database, verify its audit chain, and read "
    "its reports.\n\n"
    "The database is --url (before or after the command), else DATABASE_URL, else the SQLite file db/data/app.db. "
    "A .env file in the working directory sets environment variables that are not set already.",
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
# Environment variables the commands read as text: checked like the arguments (the password is never shown).
TEXT_ENVIRONMENT = ("DATABASE_URL", "DBLAYER_STORAGE_ROOT", "DBLAYER_ADMIN_EMAIL", "DBLAYER_ADMIN_PASSWORD")
INTERRUPTED = 130
DISTRIBUTION = "db-layer"
DOTENV = ".env"


def _show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"{DISTRIBUTION} {version(DISTRIBUTION)}")
        raise typer.Exit()


@app.callback()
def options_before_the_command(
    url: Annotated[str | None, typer.Option(
        "--url", metavar="URL", help=f"The database for the command, as its own --url (which wins) or {URL_ENV}.",
    )] = None,
    storage: Annotated[Path | None, typer.Option(
        "--storage", file_okay=False, help=f"Directory of the file blobs, as the command's --storage or {STORAGE_ENV}.",
    )] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version, help="Print the version and exit.",
    )] = False,
) -> None:
    """The connection options also go before the command: python -m db --url URL status."""
    if url is not None:
        os.environ[URL_ENV] = url
    if storage is not None:
        os.environ[STORAGE_ENV] = str(storage)


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"db.cli.{name}")


def main(argv: Sequence[str] | None = None, *, prog_name: str = "python -m db") -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    _register()
    args = list(argv) if argv is not None else sys.argv[1:]
    with environment_restored():
        load_dotenv()
        return _main(args, prog_name)


def _main(args: list[str], prog_name: str) -> int:
    refused = not_utf8(args)
    if refused:
        say(refused)
        return 2
    ledger = Ledger()
    with ledger.watching():
        try:
            code = _run(args, prog_name, ledger)
        except KeyboardInterrupt:
            code = INTERRUPTED
    if code == INTERRUPTED or ledger.at_interrupt is not None:
        say(ledger.interrupt_line(), label="interrupted")
        return INTERRUPTED
    return code


def _run(args: list[str], prog_name: str, ledger: Ledger) -> int:
    try:
        result = app(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        if ledger.at_interrupt is not None:  # Ctrl-C at a prompt
            return INTERRUPTED
        say("Aborted: nothing was changed")
        return 1
    except typer.TyperException as usage:  # Click's usage errors: an unknown option, a bad option value
        return _usage(usage)
    except Interrupted as stop:  # Ctrl-C, and the command said what it left
        ledger.explained = str(stop)
        return INTERRUPTED
    except Exception as failure:
        if ledger.at_interrupt is not None:  # a failure while unwinding from Ctrl-C (a connection cut mid-statement)
            return INTERRUPTED
        if os.environ.get("DBLAYER_DEBUG"):
            raise
        say(_failure_line(failure))
        return 1
    return result if isinstance(result, int) else 0


def _failure_line(failure: Exception) -> str:
    if isinstance(failure, expected_failures()):
        return describe_failure(failure)
    return (f"internal error ({type(failure).__name__}: {failure}); this is a bug, not your input: "
            "DBLAYER_DEBUG=1 shows the traceback")


def _usage(usage: typer.TyperException) -> int:
    if type(usage).__name__ == "NoArgsIsHelpError":  # a group called without a command: its help, as Click does
        error_console().print(usage.format_message(), markup=False, highlight=False)
        return 2
    context = getattr(usage, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    say(f"{usage.format_message()}{hint}")
    return usage.exit_code


def load_dotenv(path: Path | None = None) -> None:
    """Set the variables of ``.env`` in the working directory (or ``path``) that the environment does not have."""
    path = path or Path.cwd() / DOTENV
    if path.is_file():
        import dotenv

        dotenv.load_dotenv(path, override=False)


@contextmanager
def environment_restored() -> Iterator[None]:
    """Put ``os.environ`` back as it was when the block ends (a caller of ``main`` keeps its environment)."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def say(message: str, *, label: str = "error") -> None:
    """One red line on stderr; characters the terminal cannot show (a lone surrogate) are escaped."""
    from rich.markup import escape

    shown = message.encode("utf-8", "backslashreplace").decode("utf-8")
    error_console().print(f"[bold red]{label}:[/bold red] {escape(shown)}", soft_wrap=True)


def not_utf8(args: Sequence[str]) -> str | None:
    """Why an argument or a text environment variable is refused (bytes that are not UTF-8), or None.

    Python hands such bytes over as lone surrogates; a path or URL made of them would create a file no other tool
    names the same way, and could not be printed. The value itself is not shown: it may be a URL with a password.
    """
    for position, arg in enumerate(args):
        if not _is_text(arg):
            after = f" (the value of {args[position - 1]})" if position and args[position - 1].startswith("-") else ""
            return f"argument {position + 1}{after} is not valid UTF-8: paths and URLs must be UTF-8 text"
    for name in TEXT_ENVIRONMENT:
        if not _is_text(os.environ.get(name, "")):
            return f"the environment variable {name} is not valid UTF-8"
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def run_library(module: str) -> NoReturn:
    """``python -m`` of a module that is a library, not a command: say so and list the commands (exit 2)."""
    say(f"{module} is a library the commands use, not a command; the commands are:", label="usage")
    main(["--help"])
    sys.exit(2)


def run_script(command: str, *fixed: str) -> NoReturn:
    """``python -m db.scripts.<name> ARGS``: the same as ``python -m db <command> [fixed] ARGS``."""
    sys.exit(main([command, *fixed, *sys.argv[1:]]))

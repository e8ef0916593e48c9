"""What every command shares: the ``--url`` option, opening the database, progress bars, tables, failures.

Importing it is cheap (Typer and the standard library): ``python -m db --help`` imports every command module, so
SQLAlchemy, Alembic, the layer and Rich's tables and progress bars are imported by the functions that use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from db.settings import STORAGE_ROOT_ENV

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from db.layer import Database
    from db.progress import Advance

STORAGE_ENV = STORAGE_ROOT_ENV
URL_ENV = "DATABASE_URL"

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar=URL_ENV, show_envvar=True,
        help="Database URL, e.g. postgresql://user@host/name or mariadb://root@host/name "
        "(default: the SQLite file db/data/app.db).",
    ),
]
StorageOption = Annotated[
    Path | None,
    typer.Option(
        "--storage", envvar=STORAGE_ENV, show_envvar=True, file_okay=False,
        help="Directory of the file blobs (default: db/data/files).",
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def expected_failures() -> tuple[type[BaseException], ...]:
    """Failures a user can cause and fix: shown as one red line, exit code 1, no traceback."""
    from alembic.util.exc import CommandError
    from sqlalchemy import exc

    from db.errors import DatabaseError

    return (DatabaseError, exc.DBAPIError, exc.ArgumentError, exc.NoSuchModuleError, CommandError,
            ModuleNotFoundError, OSError)


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def error_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def open_database(url: str | None, storage: Path | None = None) -> Database:
    """The Database at ``url`` (None: DATABASE_URL, else db/data/app.db), its blobs under ``storage`` (None: as
    ``Database()`` has it, from ``Settings.from_env``: DBLAYER_STORAGE_ROOT, else db/data/files)."""
    from db.cli.ledger import follow_engines
    from db.layer import Database
    from db.settings import Settings

    follow_engines()
    settings = Settings.from_env() if storage is None else Settings.from_env(storage_root=storage)
    return Database(url, settings=settings)


@contextmanager
def opened(url: str | None, storage: Path | None = None) -> Iterator[Database]:
    """``open_database``, disposed of when the block ends."""
    database = open_database(url, storage)
    try:
        yield database
    finally:
        database.dispose()


def describe_failure(failure: BaseException) -> str:
    """One line that says what went wrong, without a traceback, a driver's noise or a password."""
    from sqlalchemy import exc

    if isinstance(failure, exc.DBAPIError):
        return f"the database refused or could not be reached: {_first_line(failure.orig or failure)}"
    if isinstance(failure, exc.NoSuchModuleError | exc.ArgumentError):
        return f"bad database URL: {_first_line(failure)}"
    if isinstance(failure, ModuleNotFoundError):
        return f"the database driver is not installed ({failure.name}): pip install 'db-layer[postgresql,mariadb]'"
    if isinstance(failure, OSError) and failure.filename:
        return f"{failure.strerror or type(failure).__name__}: {failure.filename}"
    return _first_line(failure)


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) if str(error).strip() else type(error).__name__
    return text


class RichProgress:
    """``db.progress.Progress`` as Rich progress bars on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    @contextmanager
    def track(self, description: str, total: int | None = None) -> Iterator[Advance]:
        task = self._progress.add_task(description, total=total)

        def advance(amount: int) -> None:
            self._progress.advance(task, amount)

        try:
            yield advance
        finally:
            if total is None:
                self._progress.update(task, total=self._progress.tasks[task].completed)


def progress_bars() -> AbstractContextManager[RichProgress]:
    """Progress bars for a long command: ``with progress_bars() as progress: script(..., progress=progress)``."""

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    @contextmanager
    def bars() -> Iterator[RichProgress]:
        columns = (
            SpinnerColumn(), TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        with Progress(*columns, console=error_console(), transient=False) as progress:
            yield RichProgress(progress)

    return bars()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Sequence[str] = ()) -> Table:
    """A Rich table; columns named in ``numeric`` are right-aligned and numbers get thousands separators.

    Cells are plain text (a file name such as ``[bold].txt`` is shown as it is), unless given as ``rich.text.Text``;
    long values wrap rather than being cut, so ids and keys stay whole."""
    from rich.table import Table

    result = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        result.add_column(name, justify="right" if name in numeric else "left", overflow="fold")
    for row in rows:
        result.add_row(*(_cell(value) for value in row))
    return result


def _cell(value: Any) -> Text:
    from rich.text import Text

    if isinstance(value, Text):
        return value
    if isinstance(value, bool) or value is None:
        return Text("" if value is None else ("yes" if value else "no"))
    if isinstance(value, int):
        return Text(f"{value:,}")
    if isinstance(value, float):
        return Text(f"{value:,.2f}")
    return Text(str(value))


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def confirm_or_abort(message: str, yes: bool) -> None:
    """Ask ``message`` (default no) unless ``yes``; raise ``typer.Abort`` on a no."""
    if not yes and not typer.confirm(message, default=False):
        raise typer.Abort()

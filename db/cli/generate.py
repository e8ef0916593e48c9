"""`python -m db generate`: realistic, reproducible sample data (``db.scripts.sample_generator``)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, opened, progress_bars, table
from db.errors import ValidationError
from db.scripts.sample_options import GeneratorOptions

if TYPE_CHECKING:
    from db.scripts.sample_generator import GenerationResult

DEFAULTS = GeneratorOptions()


@app.command("generate")
def generate_command(
    url: UrlOption = None,
    storage: StorageOption = None,
    rows: Annotated[int | None, typer.Option(help="Rows in total, exactly (the activity log takes the rest).")] = None,
    seed: Annotated[int, typer.Option(help="The same seed gives the same data, ids included.")] = DEFAULTS.seed,
    users: Annotated[int | None, typer.Option(help="Users (default: from --rows, else 1,000).")] = None,
    accounts: Annotated[int | None, typer.Option(help="Accounts (default: users / --users-per-account).")] = None,
    users_per_account: Annotated[int, typer.Option()] = DEFAULTS.users_per_account,
    members_per_account: Annotated[float, typer.Option(help="Average, owner included.")] = (
        DEFAULTS.members_per_account),
    files_per_account: Annotated[float, typer.Option()] = DEFAULTS.files_per_account,
    events_per_user: Annotated[float, typer.Option(help="Activity events (ignored with --rows).")] = (
        DEFAULTS.events_per_user),
    blobs: Annotated[int | None, typer.Option(help="Distinct file contents (default: files / 10, <= 1,000).")] = None,
    no_blobs: Annotated[bool, typer.Option("--no-blobs", help="No files and no blobs.")] = False,
    batch_size: Annotated[int, typer.Option(help="Rows per transaction.")] = DEFAULTS.batch_size,
    start: Annotated[str | None, typer.Option(help="First day of the period, YYYY-MM-DD (UTC).")] = None,
    days: Annotated[int, typer.Option(help="Length of the period in days.")] = DEFAULTS.days,
) -> None:
    """Generate sample users, accounts, memberships, files and activity, reproducibly from --seed.

    Every generated user's password is db.scripts.sample_generator.SAMPLE_PASSWORD: sample data only.
    """
    from db.scripts.sample_generator import generate

    options = GeneratorOptions(
        rows=rows, users=users, accounts=accounts, users_per_account=users_per_account,
        members_per_account=members_per_account, files_per_account=files_per_account,
        events_per_user=events_per_user, blobs=blobs, seed=seed, batch_size=batch_size, write_blobs=not no_blobs,
        start=_day(start) if start else DEFAULTS.start, days=days,
    )
    with opened(url, storage) as database, progress_bars() as progress:
        result = generate(database, options, progress=progress)
    _show(result)


def _day(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError("--start must be a date such as 2024-01-01", field="start", rule="format") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _show(result: GenerationResult) -> None:
    lines = [
        (name, count, seconds, count / seconds if seconds > 0 else 0.0)
        for name, count in result.rows.items()
        if (seconds := result.seconds_per_table.get(name, 0.0)) or count
    ]
    lines.append(("total", result.total_rows, result.seconds, result.rows_per_second))
    numeric = ("rows", "seconds", "rows/s")
    console().print(table(f"Sample data, seed {result.seed}", ("table", *numeric), lines, numeric=numeric))

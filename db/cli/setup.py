"""``python -m db setup`` and ``python -m db status``."""

from __future__ import annotations

from typing import Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, opened, progress_bars
from db.cli.create import describe_creation
from db.cli.fill import show_reference, show_sample
from db.cli.render import show_overview


@app.command("setup")
def setup(
    url: UrlOption = None,
    storage: StorageOption = None,
    sample: Annotated[bool, typer.Option("--sample", help="Also fill the demo data set.")] = False,
    history: Annotated[int, typer.Option(
        "--history", min=0, help="With --sample: rows of generated activity over the past year (0: none).",
    )] = 20_000,
) -> None:
    """Everything a new database needs, then its overview: create and migrate, reference data, an administrator
    from DBLAYER_ADMIN_EMAIL / DBLAYER_ADMIN_PASSWORD if set, and with --sample the demo data. Never asks
    anything: safe in scripts and CI. Running it again changes nothing."""
    from db.scripts.create_db import create_database
    from db.scripts.fill_reference import AdminCredentials, administrators, fill_reference
    from db.scripts.fill_sample import fill_history, fill_sample
    from db.scripts.status_db import overview

    out = console()
    with opened(url, storage) as database:
        out.print(describe_creation(create_database(database)))
        show_reference(fill_reference(database, AdminCredentials.from_environment()), administrators(database))
        if sample:
            show_sample(fill_sample(database))
            with progress_bars() as progress:
                generated = fill_history(database, history, progress=progress)
            if generated is not None:
                out.print(f"[green]✓[/green] {generated.total_rows:,} rows of history generated "
                          f"({generated.rows_per_second:,.0f} rows/s)")
        show_overview(out, overview(database))


@app.command("status")
def status(url: UrlOption = None) -> None:
    """The database at a glance: revision, row counts, sign-ups, storage per account, audit chain."""
    from db.scripts.status_db import overview

    with opened(url) as database:
        show_overview(console(), overview(database))

"""``python -m db setup`` and ``python -m db status``."""

from __future__ import annotations

from typing import Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, opened
from db.cli.create import describe_creation
from db.cli.fill import show_reference, show_sample
from db.cli.render import show_overview
from db.scripts.create_db import create_database
from db.scripts.fill_reference import AdminCredentials, fill_reference
from db.scripts.fill_sample import fill_sample
from db.scripts.status_db import overview


@app.command("setup")
def setup(
    url: UrlOption = None,
    storage: StorageOption = None,
    sample: Annotated[bool, typer.Option("--sample", help="Also fill the demo data set.")] = False,
) -> None:
    """Everything a new database needs, then its overview: create and migrate, reference data, an administrator
    from DBLAYER_ADMIN_EMAIL / DBLAYER_ADMIN_PASSWORD if set, and with --sample the demo data. Never asks
    anything: safe in scripts and CI. Running it again changes nothing."""
    out = console()
    with opened(url, storage) as database:
        out.print(describe_creation(create_database(database)))
        show_reference(fill_reference(database, AdminCredentials.from_environment()))
        if sample:
            show_sample(fill_sample(database))
        show_overview(out, overview(database))


@app.command("status")
def status(url: UrlOption = None) -> None:
    """The database at a glance: revision, row counts, sign-ups, storage per account, audit chain."""
    with opened(url) as database:
        show_overview(console(), overview(database))

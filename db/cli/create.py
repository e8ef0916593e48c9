"""``python -m db create``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from db.cli.app import app
from db.cli.common import UrlOption, console, opened

if TYPE_CHECKING:
    from db.scripts.create_db import CreateResult


@app.command("create")
def create(url: UrlOption = None) -> None:
    """Create the database (on a server: the database itself too) and migrate it to the newest revision."""
    from db.scripts.create_db import create_database

    with opened(url) as database:
        result = create_database(database)
    console().print(describe_creation(result))


def describe_creation(result: CreateResult) -> str:
    made = f"{escape(result.url)} {'created' if result.created else 'exists'}"
    if not result.upgraded:
        return f"[green]✓[/green] {made}, schema at {result.after} (nothing to migrate)"
    return f"[green]✓[/green] {made}, schema migrated from {result.before or 'empty'} to {result.after}"

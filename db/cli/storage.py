"""``python -m db storage``: which database the file storage root serves; ``--bind`` binds it to this one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, YesOption, console, opened, table

if TYPE_CHECKING:
    from rich.table import Table

    from db.storage_binding import StorageBinding


@app.command("storage")
def storage_command(
    url: UrlOption = None,
    storage: StorageOption = None,
    bind_it: Annotated[bool, typer.Option(
        "--bind", help="Bind the root to this database. A root of another database, or one holding blobs this "
        "database does not name, is taken over only after a confirmation (or --yes).")] = False,
    yes: YesOption = False,
) -> None:
    """Show which database the file storage root serves: each root serves one database, named by its identity."""
    from db.scripts.bind_storage import bind, describe

    out = console()
    with opened(url, storage) as database:
        if not bind_it:
            out.print(_overview(describe(database)))
            return
        result = bind(database, yes=yes, confirm=None if yes else _ask)
    if result.new_identity:
        out.print(f"the database had no identity: it is now {result.owner.database_id}")
    if result.changed:
        out.print(f"[green]✓[/green] {result.before.location} is bound to {result.owner}")
    else:
        out.print(f"{result.before.location} was already bound to this database ({result.owner.database_id})")


def _ask(question: str) -> bool:
    return typer.confirm(question, default=False)


def _overview(binding: StorageBinding) -> Table:
    rows = [
        ("storage root", binding.location),
        ("this database", f"{binding.database_id or 'no identity'} ({binding.database})"),
        ("the root", binding.describe()),
        ("its marker names", str(binding.owner) if binding.owner else "no database"),
    ]
    return table(None, ["", ""], rows)


__all__ = ["storage_command"]

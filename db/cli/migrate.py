"""``python -m db migrate ...``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from db.cli.app import app
from db.cli.common import UrlOption, YesOption, confirm_or_abort, console, opened, table

if TYPE_CHECKING:
    from db.scripts.migrate_db import MigrateResult

migrate = typer.Typer(help="Schema migrations (Alembic): upgrade, downgrade, current, history, check, revision.",
                      no_args_is_help=True)
app.add_typer(migrate, name="migrate")


@migrate.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision id, a step such as +1, or 'head'.")] = "head",
    url: UrlOption = None,
) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    from db.scripts import migrate_db

    migrate_db.check_revision(revision)
    with opened(url) as database:
        _show(migrate_db.upgrade(database, revision), "upgraded")


# "-1" looks like an option to the parser: unknown options are left to the command, which takes a relative step
# as the revision and refuses anything else that starts with "-" as the unknown option it is.
@migrate.command("downgrade", context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[str, typer.Argument(
        help="Target revision id, a step back such as -1, 'head-1', or 'base' (drops every table).")],
    url: UrlOption = None,
    yes: YesOption = False,
) -> None:
    """Migrate the schema down to REVISION. The tables a downgrade drops lose their rows: it asks first."""
    if revision.startswith("-") and not re.fullmatch(r"-\d+", revision):
        raise typer.BadParameter(f"no such option: {revision}")
    from db.scripts import migrate_db

    migrate_db.check_revision(revision)
    with opened(url) as database:
        target = database.url.render_as_string(hide_password=True)
        confirm_or_abort(f"Downgrade {target} to {revision}? Tables it drops lose their rows.", yes)
        _show(migrate_db.downgrade(database, revision), "downgraded")


@migrate.command("current")
def current(url: UrlOption = None) -> None:
    """Show the revision the database is at, and the newest one."""
    from db.scripts import migrate_db

    with opened(url) as database:
        state = migrate_db.status(database)
    mark = "[green](head)[/green]" if state.at_head else f"[yellow](the head is {state.head})[/yellow]"
    console().print(f"{state.current or 'none: no schema yet'} {mark}")


@migrate.command("history")
def history(url: UrlOption = None) -> None:
    """List the revisions, newest first, marking the database's."""
    from db.scripts import migrate_db

    with opened(url) as database:
        revisions = migrate_db.history(database)
    rows = [(("→ " if r.is_current else "  ") + r.revision, r.down_revision or "", r.message.splitlines()[0])
            for r in revisions]
    console().print(table("Revisions (newest first; → the database's)", ["revision", "after", "description"], rows))


@migrate.command("check")
def check(url: UrlOption = None) -> None:
    """Fail unless the database is at head and its schema matches the models (no drift)."""
    from db.scripts import migrate_db

    with opened(url) as database:
        migrate_db.check(database)
    console().print("[green]✓[/green] at head, and the schema matches the models")


@migrate.command("revision")
def revision(
    message: Annotated[str, typer.Argument(help="What the revision does, e.g. 'add invoices'.")],
    url: UrlOption = None,
    empty: Annotated[bool, typer.Option("--empty", help="Write an empty revision (no autogenerate).")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to write it (a version location).")] = None,
) -> None:
    """Write a new revision file: the operations that bring the database (at head) to the models."""
    from db.scripts import migrate_db

    with opened(url) as database:
        path = migrate_db.new_revision(database, message, autogenerate=not empty, directory=directory)
    if path is None:
        console().print("[green]✓[/green] no changes: the database already matches the models; nothing written")
    else:
        console().print(f"[green]✓[/green] wrote {path}: review it before you commit it")


def _show(result: MigrateResult, verb: str) -> None:
    if result.changed:
        console().print(f"[green]✓[/green] {verb} from {result.before or 'empty'} to {result.after or 'base'}")
    else:
        console().print(f"[green]✓[/green] already at {result.after or 'base'}: nothing to do")

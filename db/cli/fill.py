"""``python -m db fill``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, opened, table
from db.errors import ValidationError
from db.settings import ADMIN_EMAIL_ENV, ADMIN_PASSWORD_ENV

if TYPE_CHECKING:
    from db.layer import Database
    from db.scripts.fill_reference import AdminCredentials, ReferenceResult
    from db.scripts.fill_sample import SampleResult

AdminEmailOption = Annotated[
    str | None,
    typer.Option("--admin-email", envvar=ADMIN_EMAIL_ENV, show_envvar=True,
                 help=f"Make this user a superadmin (created if missing; the password comes from {ADMIN_PASSWORD_ENV} "
                 "or a prompt, never from the command line)."),
]


@app.command("fill")
def fill(
    url: UrlOption = None,
    storage: StorageOption = None,
    sample: Annotated[bool, typer.Option("--sample", help="Also write the small demo data set.")] = False,
    admin_email: AdminEmailOption = None,
) -> None:
    """Fill the reference data (built-in roles and permissions) and a first administrator; idempotent.

    Without --admin-email, a terminal is asked for one when the database has no superadmin yet.
    """
    from db.scripts.fill_reference import administrators, fill_reference
    from db.scripts.fill_sample import fill_sample

    with opened(url, storage) as database:
        credentials = admin_credentials(database, admin_email)
        show_reference(fill_reference(database, credentials), administrators(database))
        if sample:
            show_sample(fill_sample(database))


def admin_credentials(database: Database, email: str | None) -> AdminCredentials | None:
    """The administrator to create: ``email`` (password from the environment or a prompt), else one asked for."""
    from db.scripts.fill_reference import AdminCredentials, administrators

    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    interactive = sys.stdin.isatty()
    if email:
        if not password and not interactive:
            raise ValidationError(f"no password for {email}: set {ADMIN_PASSWORD_ENV} or run on a terminal",
                                  field="password")
        return AdminCredentials(email.strip(), password or _ask_password(email))
    if not interactive or administrators(database):
        return None
    console().print("The database has no administrator yet. Create one (leave the email empty to skip).")
    asked = typer.prompt("Administrator email", default="", show_default=False).strip()
    return AdminCredentials(asked, _ask_password(asked)) if asked else None


def _ask_password(email: str) -> str:
    return str(typer.prompt(f"Password for {email}", hide_input=True, confirmation_prompt=True))


def show_reference(result: ReferenceResult, superadmins: list[str]) -> None:
    """What the reference fill did, and the truth about administrators: ``superadmins`` are the database's now."""
    out = console()
    changes = result.reference_changes
    if any(changes.values()):
        out.print(table("Reference data changed", ["kind", "rows"], changes.items(), numeric=["rows"]))
    else:
        out.print("[green]✓[/green] reference data (roles and permissions) up to date")
    if result.admin_email is None and superadmins:
        out.print(f"[green]✓[/green] superadmin already present: {escape(', '.join(superadmins))}")
    elif result.admin_email is None:
        out.print(f"[yellow]no administrator yet[/yellow]: set {ADMIN_EMAIL_ENV} and {ADMIN_PASSWORD_ENV}, "
                  "or run `python -m db admin create EMAIL --role superadmin --reason ...`")
    elif result.admin_created or result.admin_granted:
        what = "created and made superadmin" if result.admin_created else "made superadmin"
        out.print(f"[green]✓[/green] administrator {escape(result.admin_email)} {what}")
    else:
        email = escape(result.admin_email)
        out.print(f"[green]✓[/green] administrator {email} already a superadmin (password unchanged)")


def show_sample(result: SampleResult) -> None:
    from db.scripts.fill_sample import SAMPLE_PASSWORD

    out = console()
    if not result.created:
        out.print("[green]✓[/green] sample data already present (nothing written)")
        return
    rows = [("accounts", result.accounts), ("users", result.users), ("memberships", result.memberships),
            ("files", result.files), ("logins", result.logins), ("failed logins", result.failed_logins)]
    out.print(table("Sample data written", ["what", "count"], rows, numeric=["count"]))
    out.print(f"sample users sign in with the password [bold]{SAMPLE_PASSWORD}[/bold] (demo data only)")

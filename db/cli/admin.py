"""``python -m db admin ...``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from db.cli.app import app
from db.cli.common import UrlOption, console, opened
from db.errors import ValidationError
from db.settings import ADMIN_PASSWORD_ENV

if TYPE_CHECKING:
    from db.scripts.admin_db import AdminResult

admin = typer.Typer(help="Administrators: create one, grant or revoke a role, unlock a user. Every change is audited.",
                    no_args_is_help=True)
app.add_typer(admin, name="admin")

Email = Annotated[str, typer.Argument(help="The user's email.")]
Role = Annotated[str, typer.Argument(help="A role: superadmin, admin, support, auditor, or a custom one.")]
Reason = Annotated[str, typer.Option("--reason", help="Why: recorded in the audit log.")]


@admin.command("create")
def create(
    email: Email,
    role: Annotated[str, typer.Option(help="The role to grant (no default: say superadmin if you mean it).")],
    reason: Reason,
    url: UrlOption = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create an administrator (or give an existing user the role). The password is asked for, read from stdin
    with --password-stdin, or taken from DBLAYER_ADMIN_PASSWORD; never from the command line."""
    password = _password(email, password_stdin)
    from db.scripts import admin_db

    with opened(url) as database:
        result = admin_db.create_admin(database, email, password, role=role, reason=reason)
    _show(result, f"created, {role}" if result.created else (f"now {role}" if result.changed else f"already {role}"))


@admin.command("grant")
def grant(email: Email, role: Role, reason: Reason, url: UrlOption = None) -> None:
    """Grant ROLE to the user."""
    from db.scripts import admin_db

    with opened(url) as database:
        result = admin_db.grant_role(database, email, role, reason=reason)
    _show(result, f"granted {role}" if result.changed else f"already held {role}")


@admin.command("revoke")
def revoke(email: Email, role: Role, reason: Reason, url: UrlOption = None) -> None:
    """Take ROLE from the user."""
    from db.scripts import admin_db

    with opened(url) as database:
        _show(admin_db.revoke_role(database, email, role, reason=reason), f"revoked {role}")


@admin.command("unlock")
def unlock(email: Email, reason: Reason, url: UrlOption = None) -> None:
    """Lift the user's login lockout and forget their failed attempts."""
    from db.scripts import admin_db

    with opened(url) as database:
        _show(admin_db.unlock_user(database, email, reason=reason), "unlocked")


def _password(email: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(ADMIN_PASSWORD_ENV):
        return os.environ[ADMIN_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise ValidationError(f"no password for {email}: use --password-stdin, set {ADMIN_PASSWORD_ENV}, "
                              "or run on a terminal", field="password")
    return str(typer.prompt(f"Password for {email}", hide_input=True, confirmation_prompt=True))


def _show(result: AdminResult, what: str) -> None:
    roles = ", ".join(result.roles) or "none"
    console().print(f"[green]✓[/green] {escape(result.email)}: {escape(what)} (roles: {escape(roles)})")

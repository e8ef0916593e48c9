"""``python -m db cleanup``: list (by default) or remove what retention says may go."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, YesOption, confirm_or_abort, console, opened, progress_bars, table
from db.errors import ValidationError
from db.scripts.retention import RetentionPolicy, describe_age, parse_age

if TYPE_CHECKING:
    from db.scripts.cleanup_db import CleanupPlan, CleanupResult

_DEFAULTS = RetentionPolicy()


def _age(text: str | None, default: dt.timedelta | None, flag: str) -> dt.timedelta | None:
    if text is None:
        return default
    try:
        return parse_age(text)
    except ValidationError as error:
        raise typer.BadParameter(str(error), param_hint=flag) from None


def _age_option(flag: str, what: str, default: dt.timedelta | None) -> Any:
    return typer.Option(flag, help=f"Remove {what} older than this: 7d, 12h, 30m, 2w, 0 or never "
                                   f"(default {describe_age(default)}).")


TokensAfter = Annotated[
    str | None, _age_option("--tokens-after", "expired, used or revoked tokens", _DEFAULTS.tokens_after)
]
DeletedAfter = Annotated[
    str | None, _age_option("--deleted-after", "soft-deleted files, accounts and users", _DEFAULTS.deleted_after)
]
AuditAfter = Annotated[
    str | None, _age_option("--audit-after", "audit entries (archived first)", _DEFAULTS.audit_after)
]


@app.command("cleanup")
def cleanup(
    url: UrlOption = None,
    storage: StorageOption = None,
    apply: Annotated[bool, typer.Option("--apply/--dry-run", help="Remove the items (default: only list them).")]
    = False,
    yes: YesOption = False,
    tokens_after: TokensAfter = None,
    deleted_after: DeletedAfter = None,
    audit_after: AuditAfter = None,
    no_blobs: Annotated[bool, typer.Option("--keep-orphan-blobs", help="Leave orphaned blobs alone.")] = False,
    archive_dir: Annotated[Path | None, typer.Option(
        "--archive-dir", file_okay=False, help="Where removed audit entries are archived (default: "
        "db/data/audit_archive).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every item, not only the counts.")] = False,
    backup_dir: Annotated[Path | None, typer.Option(
        "--backup-dir", file_okay=False, help="Where backups are written, for the leftovers of killed backups "
        "(default: db/data/backups).")] = None,
) -> None:
    """Finished tokens, old soft-deleted rows, old audit entries (archived first), orphaned blobs, and what killed
    backups and restores left behind (never what a running one uses).

    Without --apply, lists what would go and changes nothing. With --apply, asks, removes exactly the listed items,
    then gives the space back (VACUUM / ANALYZE / OPTIMIZE TABLE).
    """
    from db.scripts import cleanup_db

    policy = RetentionPolicy(
        tokens_after=_age(tokens_after, _DEFAULTS.tokens_after, "--tokens-after"),
        deleted_after=_age(deleted_after, _DEFAULTS.deleted_after, "--deleted-after"),
        audit_after=_age(audit_after, _DEFAULTS.audit_after, "--audit-after"),
        blobs=not no_blobs,
    )
    out = console()
    with opened(url, storage) as database:
        target = database.url.render_as_string(hide_password=True)
        with progress_bars() as progress:
            listed = cleanup_db.plan(database, policy=policy, progress=progress, backup_dir=backup_dir)
        _show_plan(listed, target, verbose=verbose, dry_run=not apply)
        if not apply or not listed:
            return
        removable = sum(leftover.removable for leftover in listed.leftovers)
        confirm_or_abort(f"Remove these {sum(rows for *_, rows in listed.groups()):,} rows and blobs from {target}"
                         + (f" and {removable} leftover(s) of killed backups and restores?" if removable else "?"),
                         yes)
        with progress_bars() as progress:
            result = cleanup_db.apply(database, listed, archive_dir=archive_dir, progress=progress)
    _show_result(result)
    out.print(f"[green]✓[/green] removed {result.total:,} rows and blobs in {result.seconds:.2f} s")


def _show_plan(listed: CleanupPlan, target: str, *, verbose: bool, dry_run: bool) -> None:
    out = console()
    for note in listed.kept:
        out.print(f"[yellow]kept:[/yellow] {escape(note)}")
    for leftover in listed.leftovers:
        label = "leftover" if leftover.removable else "in use"
        out.print(f"[yellow]{label}:[/yellow] {escape(leftover.describe())}", soft_wrap=True)
    if not listed:
        out.print(f"[green]✓[/green] nothing to clean up in {target}")
        return
    out.print(f"Database: {target}")
    if listed.items:
        out.print(table("Would remove" if dry_run else "To remove", ["kind", "table", "rows"], listed.groups(),
                        numeric=["rows"]))
    if verbose:
        rows = [(item.kind, item.table, item.key, item.description) for item in listed.items]
        out.print(table("Items", ["kind", "table", "id / key", "what"], rows))
    if dry_run:
        out.print("dry run: nothing was changed; run again with --apply to remove them")


def _show_result(result: CleanupResult) -> None:
    out = console()
    for leftover in result.leftovers:
        out.print(f"removed leftover {escape(leftover.name)} (of a {leftover.kind})", soft_wrap=True)
    if result.removed:
        out.print(table("Removed", ["kind", "table", "rows"], result.removed, numeric=["rows"]))
    if result.archive:
        out.print(f"audit entries archived to {result.archive}")
    if result.compacted:
        out.print(f"space given back: {', '.join(result.compacted)}")

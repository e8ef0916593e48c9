"""``python -m db check``: integrity, schema, audit chain and blobs; exit code 1 if any check fails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

from db.cli.app import app
from db.cli.audit import ArchiveDirOption
from db.cli.common import StorageOption, UrlOption, console, error_console, opened, progress_bars, table
from db.settings import DEFAULT_AUDIT_ARCHIVE_DIR

if TYPE_CHECKING:
    from db.scripts.check_db import CheckResult

SHOWN_FINDINGS = 10  # per check; the summary counts them all
_STATUS = {True: Text("ok", style="green"), False: Text("FAILED", style="red"), None: Text("skipped", style="yellow")}


@app.command("check")
def check_command(
    url: UrlOption = None,
    storage: StorageOption = None,
    no_blobs: Annotated[bool, typer.Option("--no-blobs", help="Do not re-hash the stored blobs.")] = False,
    audit_head: Annotated[str | None, typer.Option(
        "--audit-head", metavar="EXPORTED",
        help="A head exported by 'audit head' (SEQ:HASH, its JSON, or a file): the audit chain must hold it unchanged.",
    )] = None,
    archive_dir: ArchiveDirOption = None,
) -> None:
    """Check the database: SQLite integrity and foreign keys, revision at head, no schema drift, the audit chain
    (and its purge archives, and an exported head), and every blob's SHA-256. Exits with 1 if any check fails."""
    from db.scripts.audit_db import exported_head
    from db.scripts.check_db import check

    expected = exported_head(audit_head) if audit_head is not None else None
    with opened(url, storage) as database:
        target = database.url.render_as_string(hide_password=True)
        with progress_bars() as progress:
            report = check(database, blobs=not no_blobs, progress=progress, audit_head=expected,
                           archive_dir=archive_dir or DEFAULT_AUDIT_ARCHIVE_DIR)
    out = console()
    out.print(table(f"Checks of {target}", ["check", "status", "details"], map(_row, report.results)))
    for result in report.results:
        _findings(result)
    if not report.ok:
        names = ", ".join(result.name for result in report.failed)
        error_console().print(f"[bold red]check failed:[/bold red] {names}")
        raise typer.Exit(1)
    out.print(f"[green]✓[/green] all checks passed in {report.seconds:.2f} s")


def _row(result: CheckResult) -> tuple[str, Text, str]:
    details = result.summary + (f" ({len(result.warnings):,} warnings)" if result.warnings else "")
    return result.name, _STATUS[result.ok], details


def _findings(result: CheckResult) -> None:
    """Each problem and warning on a line of its own, below the table (keys and ids stay whole for copying)."""
    out = console()
    lines = [*(f"[red]{result.name}:[/red] {escape(text)}" for text in result.problems if text != result.summary),
             *(f"[yellow]{result.name} (warning):[/yellow] {escape(text)}" for text in result.warnings)]
    for line in lines[:SHOWN_FINDINGS]:
        out.print(line, soft_wrap=True)
    if len(lines) > SHOWN_FINDINGS:
        out.print(f"{result.name}: ... and {len(lines) - SHOWN_FINDINGS:,} more")


__all__ = ["check_command"]

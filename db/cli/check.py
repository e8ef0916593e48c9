"""``python -m db check``: integrity, schema, audit chain and blobs; exit code 1 if any check fails."""

from __future__ import annotations

from typing import Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, error_console, opened, progress_bars, table
from db.scripts.check_db import CheckReport, CheckResult, check

SHOWN_PROBLEMS = 10  # per check; the summary counts them all
_STATUS = {True: "[green]ok[/green]", False: "[red]FAILED[/red]", None: "[yellow]skipped[/yellow]"}


@app.command("check")
def check_command(
    url: UrlOption = None,
    storage: StorageOption = None,
    no_blobs: Annotated[bool, typer.Option("--no-blobs", help="Do not re-hash the stored blobs.")] = False,
) -> None:
    """Check the database: SQLite integrity and foreign keys, revision at head, no schema drift, the audit chain,
    and every blob's SHA-256. Exits with 1 if any check fails."""
    with opened(url, storage) as database:
        target = database.url.render_as_string(hide_password=True)
        with progress_bars() as progress:
            report = check(database, blobs=not no_blobs, progress=progress)
    console().print(table(f"Checks of {target}", ["check", "status", "details"], map(_row, report.results)))
    if not report.ok:
        names = ", ".join(result.name for result in report.failed)
        error_console().print(f"[bold red]check failed:[/bold red] {names}")
        raise typer.Exit(1)
    console().print(f"[green]✓[/green] all checks passed in {report.seconds:.2f} s")


def _row(result: CheckResult) -> tuple[str, str, str]:
    return result.name, _STATUS[result.ok], _details(result)


def _details(result: CheckResult) -> str:
    lines = [result.summary]
    findings = [*result.problems, *(f"warning: {text}" for text in result.warnings)]
    lines.extend(f"- {text}" for text in findings[:SHOWN_PROBLEMS] if text != result.summary)
    if len(findings) > SHOWN_PROBLEMS:
        lines.append(f"... and {len(findings) - SHOWN_PROBLEMS:,} more")
    return "\n".join(lines)


__all__ = ["CheckReport", "check_command"]

"""``python -m db audit head|verify|seal``: export the audit chain's head, verify the chain against it, seal it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from db.cli.app import app
from db.cli.common import UrlOption, console, error_console, opened
from db.settings import DEFAULT_AUDIT_ARCHIVE_DIR

if TYPE_CHECKING:
    from db.audit import ChainReport, ExportedHead

audit = typer.Typer(help="The audit chain: print its head to export, verify it (against an exported head), seal it.",
                    no_args_is_help=True)
app.add_typer(audit, name="audit")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
HeadOption = Annotated[str | None, typer.Option(
    "--head", metavar="EXPORTED",
    help="A head exported earlier by 'audit head': SEQ:HASH, its --json output, or a file holding either. The chain "
         "must still hold it unchanged.",
)]
ArchiveDirOption = Annotated[Path | None, typer.Option(
    "--archive-dir", file_okay=False,
    help=f"Where the purge archives are (default: {DEFAULT_AUDIT_ARCHIVE_DIR}); an archive found there is checked.",
)]


@audit.command("head")
def head_command(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Print the chain head (seq, hash, time, key id) to copy somewhere the database's users cannot write."""
    from db.scripts import audit_db

    with opened(url) as database:
        exported = audit_db.head(database)
    if as_json:
        typer.echo(json.dumps(exported.as_json()))
        return
    show_head(exported)


def show_head(exported: ExportedHead) -> None:
    out = console()
    keyed = f"yes (key id {exported.key_id})" if exported.key_id else "no"
    out.print(f"audit chain head: seq {exported.seq:,}  time {exported.created_at or '-'}  keyed {keyed}",
              soft_wrap=True)
    out.print(f"  hash {exported.hash}", soft_wrap=True)
    out.print("export (for audit verify --head / check --audit-head):")
    out.print(exported.token, soft_wrap=True)


@audit.command("verify")
def verify_command(
    url: UrlOption = None,
    head: HeadOption = None,
    archive_dir: ArchiveDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the whole audit log: every row accounted for, every hash (HMAC with DBLAYER_AUDIT_KEY), the purge
    archives found, and the exported head. Exits with 1 on the first problem, which it names."""
    from db.scripts import audit_db

    expected = audit_db.exported_head(head) if head is not None else None
    with opened(url) as database:
        report = audit_db.verify(database, expected_head=expected,
                                 archive_dir=archive_dir or DEFAULT_AUDIT_ARCHIVE_DIR)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
    else:
        show_report(report, expected)
    if not report.ok:
        raise typer.Exit(1)


def show_report(report: ChainReport, expected: ExportedHead | None) -> None:
    out = console()
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if not report.ok:
        error_console().print(f"[bold red]audit chain broken:[/bold red] {escape(report.problem or '')}",
                              soft_wrap=True)
        return
    keyed = f", keyed (key id {report.key_id})" if report.key_id else ", not keyed"
    archives = f", {report.archives_checked:,} archive(s) checked" if report.archives_checked else ""
    out.print(f"[green]✓[/green] audit chain verified: {report.checked:,} entries up to the head at seq "
              f"{report.head_seq:,}{keyed}{archives}")
    if expected is not None:
        out.print(f"[green]✓[/green] the exported head (seq {expected.seq:,}) is in the chain unchanged")


@audit.command("seal")
def seal_command(url: UrlOption = None) -> None:
    """Append an audit.sealed event now: after an audit key is set, this makes the chain keyed at once. Prints the
    new head."""
    from db.scripts import audit_db

    with opened(url) as database:
        exported = audit_db.seal(database)
    show_head(exported)

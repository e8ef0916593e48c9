"""``python -m db restore``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from db.backup.sizes import MAX_EXPANSION_RATIO
from db.cli.app import app
from db.cli.common import (
    StorageOption,
    UrlOption,
    YesOption,
    console,
    human_bytes,
    opened,
    progress_bars,
    table,
)
from db.cli.ledger import Interrupted

if TYPE_CHECKING:
    from db.backup.manifest import Manifest
    from db.scripts.restore_db import RestoreResult


def _ask(question: str) -> bool:
    return bool(typer.confirm(question, default=False))


@app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(help="The backup archive (.tar) made by `python -m db backup`.")],
    url: UrlOption = None,
    storage: StorageOption = None,
    yes: YesOption = False,
    verify_only: Annotated[
        bool,
        typer.Option("--verify-only", help="Only check the archive (checksums, completeness, decompression); "
                     "change nothing."),
    ] = False,
    max_expansion_ratio: Annotated[
        float,
        typer.Option("--max-expansion-ratio", min=1, help="Refuse a compressed part that would decompress to "
                     "more than this many times its stored size (a decompression bomb)."),
    ] = MAX_EXPANSION_RATIO,
) -> None:
    """Restore a backup into the database (any engine) and its blobs; asks before replacing existing data.

    The old data stays until the new data is complete and verified, then it is replaced in one step: an
    interrupted restore leaves the old data or the new, never a mix, and says which."""
    from db.backup.reader import Limits
    from db.backup.restore import RestoreStatus
    from db.scripts.restore_db import restore, verify_backup

    limits = Limits(max_ratio=max_expansion_ratio)
    if verify_only:
        with progress_bars() as progress:
            manifest = verify_backup(archive, progress=progress, limits=limits)
        show_manifest(archive, manifest)
        return
    confirm = _ask if sys.stdin.isatty() else None  # non-interactive: only --yes replaces existing data
    status = RestoreStatus()
    try:
        with opened(url, storage) as database, progress_bars() as progress:
            result = restore(database, archive, yes=yes, confirm=confirm, progress=progress, limits=limits,
                             status=status)
        show_restore(result)
    except KeyboardInterrupt:  # one line: which data the target holds (the ledger's counts would not say)
        raise Interrupted(status.interruption()) from None


def show_manifest(path: Path, manifest: Manifest) -> None:
    out = console()
    out.print(f"[green]✓[/green] {path} is intact: every part present, matching its SHA-256 "
              "and decompressing to its recorded size")
    out.print(f"  {manifest.engine} database {manifest.database}, schema revision {manifest.revision}, "
              f"taken {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC")
    rows = [(dump.name, dump.rows) for dump in manifest.tables]
    out.print(table("contents", ("table", "rows"), rows, numeric=("rows",)))
    out.print(f"  blobs: {manifest.blob_count:,} ({human_bytes(manifest.blob_bytes)})")


def show_restore(result: RestoreResult) -> None:
    out = console()
    manifest = result.manifest
    verb = "replaced the contents of" if result.replaced else "restored into"
    out.print(f"[green]✓[/green] {verb} {result.target} from {result.archive.name} ({result.seconds:.1f} s)")
    out.print(f"  backup of {manifest.engine} database {manifest.database}, taken "
              f"{manifest.created_at:%Y-%m-%d %H:%M:%S} UTC at revision {manifest.revision}; "
              f"schema now at {result.revision}")
    out.print(table("restored", ("table", "rows"), sorted(result.rows.items()), numeric=("rows",)))
    out.print(f"  blobs: {result.blobs:,} ({human_bytes(manifest.blob_bytes)})")

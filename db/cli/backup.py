"""``python -m db backup``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from db.cli.app import app
from db.cli.common import StorageOption, UrlOption, console, human_bytes, opened, progress_bars, table
from db.settings import DEFAULT_BACKUP_DIR

if TYPE_CHECKING:
    from db.scripts.backup_db import BackupResult


@app.command("backup")
def backup_command(
    url: UrlOption = None,
    storage: StorageOption = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", file_okay=False, help=f"Where to write the archive (default: {DEFAULT_BACKUP_DIR})."),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=1, help="Afterwards, delete all but the newest N backups of this database."),
    ] = None,
) -> None:
    """Back up the database and its file blobs online (the application may keep writing) into one archive."""
    from db.scripts.backup_db import backup

    with opened(url, storage) as database, progress_bars() as progress:
        result = backup(database, directory=directory, keep=keep, progress=progress)
    show_backup(result)


def show_backup(result: BackupResult) -> None:
    out = console()
    manifest = result.manifest
    out.print(f"[green]✓[/green] backup written: {result.path} ({human_bytes(result.size)}, "
              f"{result.seconds:.1f} s)")
    out.print(f"  {manifest.engine} database {manifest.database}, schema revision {manifest.revision}")
    rows = [(dump.name, dump.rows) for dump in manifest.tables]
    out.print(table("contents", ("table", "rows"), rows, numeric=("rows",)))
    out.print(f"  blobs: {manifest.blob_count:,} ({human_bytes(manifest.blob_bytes)})")
    for path in result.removed:
        out.print(f"  removed old backup {path.name}")

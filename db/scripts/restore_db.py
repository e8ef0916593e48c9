"""Restore a backup archive (``db.scripts.backup_db``) into a database on any engine, with its file blobs.

    python -m db.scripts.restore_db ARCHIVE [--url URL] [--storage DIR] [--yes] [--verify-only]
                                            [--max-expansion-ratio N]             # = python -m db restore ...

``restore(database, archive, yes=..., confirm=..., progress=..., limits=...)`` is
``db.backup.restore.restore_backup`` and ``verify_backup`` (``--verify-only``) is ``db.backup.restore.verify_backup``:
the work, and the decisions behind it, are in the library ``db.backup``; this module is the command's name for them
and its ``python -m`` entry point.
"""

from __future__ import annotations

from db.backup.reader import Limits, verify_archive
from db.backup.restore import RestoreResult, verify_backup
from db.backup.restore import restore_backup as restore

__all__ = ["Limits", "RestoreResult", "restore", "verify_archive", "verify_backup"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("restore")

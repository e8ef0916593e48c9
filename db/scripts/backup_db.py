"""An online, consistent backup of the database and its file blobs into one archive of compressed parts.

    python -m db.scripts.backup_db [--url URL] [--storage DIR] [--dir PATH] [--keep N]   # = python -m db backup

``backup(database, directory=..., keep=..., progress=...)`` is ``db.backup.create.create_backup``: the work is in
the library ``db.backup`` (the archive's format in ``db.backup.manifest``); this module is the command's name for
it and its ``python -m`` entry point.
"""

from __future__ import annotations

from db.backup.create import DEFAULT_DIRECTORY, BackupResult, apply_retention, database_label
from db.backup.create import create_backup as backup

__all__ = ["DEFAULT_DIRECTORY", "BackupResult", "apply_retention", "backup", "database_label"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("backup")

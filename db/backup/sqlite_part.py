"""The SQLite snapshot part of an archive, read back by a restore: found, extracted to the temporary directory,
and checked against the manifest before anything is written."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, inspect, select, text

import db.models  # noqa: F401 - registers every model on Base.metadata
from db.backup.codec import snapshot_engine
from db.backup.manifest import SQLITE_FILE, SQLITE_PART, Manifest, Part
from db.backup.reader import VerifiedArchive
from db.base import Base
from db.errors import BackupError


def snapshot_part(manifest: Manifest) -> Part | None:
    return next((part for part in manifest.parts if part.name == SQLITE_PART), None)


@contextlib.contextmanager
def extracted(verified: VerifiedArchive, part: Part) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dblayer-restore-") as scratch:
        path = Path(scratch) / SQLITE_FILE
        verified.extract(part, path)
        yield path


def check_snapshot(path: Path, manifest: Manifest) -> None:
    """A SQLite snapshot from an archive is sound, holds exactly the manifest's tables of this application, and each
    with the manifest's row count (a manifest that lies about them is refused before anything is written)."""
    engine = snapshot_engine(path)
    try:
        with engine.connect() as connection:
            problems = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise BackupError(f"the SQLite snapshot in the archive is damaged: {'; '.join(problems[:3])}")
            present = set(inspect(connection).get_table_names()) & set(Base.metadata.tables)
            if present != set(manifest.row_counts):
                raise BackupError("the archive's manifest does not list the tables its SQLite snapshot holds")
            for dump in manifest.tables:
                found = connection.execute(select(func.count()).select_from(text(_quoted(dump.name)))).scalar()
                if found != dump.rows:
                    raise BackupError(f"the SQLite snapshot's table {dump.name} holds {found:,} rows, "
                                      f"the manifest says {dump.rows:,}")
    except sqlite3.DatabaseError:
        raise BackupError("the SQLite snapshot in the archive is damaged or not a SQLite database") from None
    finally:
        engine.dispose()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


__all__ = ["check_snapshot", "extracted", "snapshot_part"]

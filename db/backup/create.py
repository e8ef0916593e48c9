"""A new backup archive of a database and its file blobs: where it goes, what it is called, which old ones go.

- Where: ``db/data/backups/`` by default, as ``<database label>-<UTC timestamp>.tar``; written under a
  temporary name (``.<name>.partial``) and renamed when complete. That file, and the scratch folder ``.backup-*``
  of a SQLite snapshot, are locked while the backup runs (``leftovers``): a killed backup's are removed by
  ``cleanup``, a running one's never.
- What is in it: a consistent snapshot of the database (``snapshot``), then each blob it names (``blobs``); a
  storage root bound to another database is refused (``StorageMismatch``) before anything is written.
- ``keep=N`` then deletes all but the newest N archives of the same database label in that directory (only files
  whose names match that pattern are ever deleted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from db import settings, storage_binding
from db.backup import leftovers
from db.backup.blobs import archive_blobs
from db.backup.manifest import SUFFIX, Manifest, Part, TableDump
from db.backup.snapshot import archive_server, archive_sqlite
from db.backup.writer import ArchiveWriter
from db.errors import BackupError, ValidationError
from db.layer import Database
from db.migrations import runner
from db.progress import SILENT, Progress
from db.session import require_existing
from db.storage import LocalStorage

DEFAULT_DIRECTORY = settings.DEFAULT_BACKUP_DIR
_TIMESTAMP = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path  # the archive
    size: int  # its size in bytes
    manifest: Manifest
    removed: tuple[Path, ...]  # older archives deleted by ``keep``
    seconds: float


def create_backup(
    database: Database,
    *,
    directory: str | os.PathLike[str] | None = None,
    keep: int | None = None,
    progress: Progress = SILENT,
) -> BackupResult:
    """Back up ``database`` and its blobs into a new archive in ``directory``; see the module docstring."""
    started = time.perf_counter()
    engine, revision = _source(database, keep)
    storage = storage_binding.readable_storage(database)  # refused if bound to another database
    folder = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    label = database_label(database)
    final = folder / f"{label}-{dt.datetime.now(dt.UTC).strftime(_TIMESTAMP)}{SUFFIX}"
    manifest_base = Manifest(engine=engine, revision=revision, created_at=dt.datetime.now(dt.UTC),
                             database=database.url.render_as_string(hide_password=True), tables=())
    manifest = _write_archive(database, storage, final, manifest_base, progress)
    removed = apply_retention(folder, label, keep) if keep is not None else ()
    return BackupResult(path=final, size=final.stat().st_size, manifest=manifest, removed=removed,
                        seconds=time.perf_counter() - started)


def _source(database: Database, keep: int | None) -> tuple[str, str]:
    """The engine and schema revision of a database that can be backed up (``keep`` checked first)."""
    if keep is not None and (isinstance(keep, bool) or keep < 1):
        raise ValidationError("keep must be at least 1", field="keep", rule="min")
    engine = database.dialect.location_name
    require_existing(database)  # connecting would create an empty SQLite file
    revision = runner.current_revision(database)
    if revision is None:
        raise BackupError("the database has no schema (never migrated): nothing to back up")
    return engine, revision


def _write_archive(database: Database, storage: LocalStorage, final: Path, manifest_base: Manifest,
                   progress: Progress) -> Manifest:
    """Write the archive under its ``.partial`` name, fsync it and rename it to ``final``; return its manifest."""
    folder = final.parent
    partial = folder / f".{final.name}.partial"
    try:
        with _locked_partial(partial) as out:
            writer = ArchiveWriter(out)
            if database.dialect.embedded:
                tables, blobs = archive_sqlite(database, folder, writer, progress)
            else:
                tables, blobs = archive_server(database, writer, progress)
            archive_blobs(storage, blobs, writer, progress)
            manifest = _with(manifest_base, tables, writer.parts)
            writer.close(manifest)
            out.flush()
            os.fsync(out.fileno())
            os.replace(partial, final)  # still locked: cleanup never sees the partial name unlocked
        _fsync_directory(folder)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def database_label(database: Database) -> str:
    """The name part shared by every backup of this database, e.g. ``sqlite-app-1a2b3c4d`` or
    ``postgresql-db.example.com-5432-app-5e6f7a8b``. The last part is a hash of the database's identity (the
    SQLite file's absolute path; the server, port and name), so that two databases whose readable parts agree
    (``/srv/prod/app.db`` and ``/srv/staging/app.db``) never share a label, and ``--keep`` on one never deletes
    the other's backups."""
    url, engine = database.url, database.dialect.location_name
    if database.dialect.embedded:
        path = Path(url.database or "memory").expanduser()
        parts = [engine, path.stem]
        identity = str(path.resolve())
    else:
        parts = [engine, url.host or "local", str(url.port or ""), url.database or ""]
        identity = "\0".join(parts)
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(part for part in parts if part)).strip("._-") or "database"
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def apply_retention(directory: Path, label: str, keep: int) -> tuple[Path, ...]:
    """Delete all but the newest ``keep`` archives of ``label`` in ``directory``; return the deleted paths."""
    pattern = re.compile(rf"{re.escape(label)}-\d{{8}}T\d{{12}}Z{re.escape(SUFFIX)}")
    ours = sorted((entry for entry in directory.iterdir() if pattern.fullmatch(entry.name) and entry.is_file()),
                  key=lambda entry: entry.name, reverse=True)
    doomed = tuple(ours[keep:])
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def private_file(path: Path) -> BinaryIO:
    """A new file only its owner may read: a backup holds password hashes and token digests."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


@contextlib.contextmanager
def _locked_partial(partial: Path) -> Iterator[BinaryIO]:
    """The archive being written, locked as in use (``leftovers``) until the block ends: a killed
    backup's ``.partial`` is removed by ``cleanup``, a running one's never."""
    with leftovers.creating_in(partial.parent):
        out = private_file(partial)
        lock = leftovers.hold(partial)
    try:
        with out:
            yield out
    finally:
        leftovers.release(lock)

def _with(base: Manifest, tables: Sequence[TableDump], parts: Sequence[Part]) -> Manifest:
    return Manifest(engine=base.engine, revision=base.revision, created_at=base.created_at, database=base.database,
                    tables=tuple(tables), parts=tuple(parts))

def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)



__all__ = ["DEFAULT_DIRECTORY", "BackupResult", "apply_retention", "create_backup", "database_label"]

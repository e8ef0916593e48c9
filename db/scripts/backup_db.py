"""An online, consistent backup of the database and its file blobs into one archive of compressed parts.

    python -m db.scripts.backup_db [--url URL] [--storage DIR] [--dir PATH] [--keep N]   # = python -m db backup

Decisions:

- Consistency while the application keeps writing. SQLite: the backup API in a single step, which copies the
  database inside one read transaction; in WAL mode writers are not blocked and the copy is the state at its
  start. PostgreSQL: one ``REPEATABLE READ READ ONLY`` transaction for every table. MariaDB: ``START TRANSACTION
  WITH CONSISTENT SNAPSHOT`` (InnoDB). These three are the only engine-specific lines (``_sqlite_snapshot`` and
  ``_server_snapshot``).
- What is in it (layout in ``db.backup.manifest``): the SQLite snapshot file (fast, and readable by the restore
  on any engine), or, on a server, every table as typed JSON lines streamed in batches straight into the archive
  (memory stays flat); both zstd-compressed in 16 MiB frames on every core. The tables are those of the
  application's models (``Base.metadata``) present in the database, with the columns the database has (so an
  older schema revision is dumped as it is). Then each blob, stored as it is, named by the
  snapshot's ``file_blob`` rows, read from ``database.settings.storage_root`` and checked against its hash: a
  missing or damaged blob fails the backup (``BackupError`` naming the blob) rather than producing an incomplete
  backup; a storage root bound to another database is refused (``StorageMismatch``) before anything is written.
  Blobs are immutable, so reading them after the snapshot is consistent; only a concurrent purge of a blob that
  the snapshot still names can fail a backup, and running it again succeeds.
- Where: ``db/data/backups/`` by default, as ``<database label>-<UTC timestamp>.tar``; written under a
  temporary name (``.<name>.partial``) and renamed when complete. That file, and the scratch folder ``.backup-*``
  of a SQLite snapshot, are locked while the backup runs (``db.backup.leftovers``): a killed backup's are
  removed by ``cleanup``, a running one's never. A row longer than ``sizes.MAX_ROW_BYTES`` fails the backup:
  a restore would refuse it. ``keep=N`` then deletes all but the newest N archives of the same
  database label in that directory (only files whose names match that pattern are ever deleted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Table, func, inspect, select

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import storage_binding
from db.backup import leftovers, sizes
from db.backup.codec import row_encoder, snapshot_engine, type_tag, typed_table
from db.backup.manifest import SQLITE_FILE, SQLITE_PART, SUFFIX, Manifest, Part, TableDump
from db.backup.writer import ArchiveWriter
from db.base import Base
from db.errors import BackupError, ValidationError
from db.migrations import runner
from db.models.file_blob import FileBlob
from db.scripts.check_db import require_existing
from db.scripts.progress import SILENT, Advance, Progress
from db.session import Database
from db.storage import KEY_PATTERN, LocalStorage

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[1] / "data" / "backups"
BATCH_ROWS = 5_000
_TIMESTAMP = "%Y%m%dT%H%M%S%fZ"
_SOURCE_MMAP_BYTES = 1 << 40
_ENGINES = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path  # the archive
    size: int  # its size in bytes
    manifest: Manifest
    removed: tuple[Path, ...]  # older archives deleted by ``keep``
    seconds: float


def backup(
    database: Database,
    *,
    directory: str | os.PathLike[str] | None = None,
    keep: int | None = None,
    progress: Progress = SILENT,
) -> BackupResult:
    """Back up ``database`` and its blobs into a new archive in ``directory``; see the module docstring."""
    if keep is not None and (isinstance(keep, bool) or keep < 1):
        raise ValidationError("keep must be at least 1", field="keep", rule="min")
    started = time.perf_counter()
    engine = _ENGINES.get(database.backend)
    if engine is None:
        raise BackupError(f"cannot back up a {database.backend} database")
    require_existing(database)  # connecting would create an empty SQLite file
    revision = runner.current_revision(database)
    if revision is None:
        raise BackupError("the database has no schema (never migrated): nothing to back up")
    storage = storage_binding.readable_storage(database)  # refused if bound to another database
    folder = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    label = database_label(database)
    final = folder / f"{label}-{dt.datetime.now(dt.UTC).strftime(_TIMESTAMP)}{SUFFIX}"
    partial = folder / f".{final.name}.partial"
    manifest_base = Manifest(engine=engine, revision=revision, created_at=dt.datetime.now(dt.UTC),
                             database=database.url.render_as_string(hide_password=True), tables=())
    try:
        with _locked_partial(partial) as out:
            writer = ArchiveWriter(out)
            if engine == "sqlite":
                tables, blobs = _archive_sqlite(database, folder, writer, progress)
            else:
                tables, blobs = _archive_server(database, writer, progress)
            _archive_blobs(storage, blobs, writer, progress)
            manifest = _with(manifest_base, tables, writer.parts)
            writer.close(manifest)
            out.flush()
            os.fsync(out.fileno())
            os.replace(partial, final)  # still locked: cleanup never sees the partial name unlocked
        _fsync_directory(folder)
    finally:
        partial.unlink(missing_ok=True)
    removed = apply_retention(folder, label, keep) if keep is not None else ()
    return BackupResult(path=final, size=final.stat().st_size, manifest=manifest, removed=removed,
                        seconds=time.perf_counter() - started)


def database_label(database: Database) -> str:
    """The name part shared by every backup of this database, e.g. ``sqlite-app-1a2b3c4d`` or
    ``postgresql-db.example.com-5432-app-5e6f7a8b``. The last part is a hash of the database's identity (the
    SQLite file's absolute path; the server, port and name), so that two databases whose readable parts agree
    (``/srv/prod/app.db`` and ``/srv/staging/app.db``) never share a label, and ``--keep`` on one never deletes
    the other's backups."""
    url = database.url
    if database.backend == "sqlite":
        path = Path(url.database or "memory").expanduser()
        parts = ["sqlite", path.stem]
        identity = str(path.resolve())
    else:
        parts = [_ENGINES.get(database.backend, database.backend), url.host or "local", str(url.port or ""),
                 url.database or ""]
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
    """The archive being written, locked as in use (``db.backup.leftovers``) until the block ends: a killed
    backup's ``.partial`` is removed by ``cleanup``, a running one's never."""
    with leftovers.creating_in(partial.parent):
        out = private_file(partial)
        lock = leftovers.hold(partial)
    try:
        with out:
            yield out
    finally:
        leftovers.release(lock)


@contextlib.contextmanager
def _locked_scratch(folder: Path) -> Iterator[Path]:
    """A scratch folder ``.backup-*`` in ``folder``, locked as in use and removed when the block ends."""
    with leftovers.creating_in(folder):
        scratch = Path(tempfile.mkdtemp(dir=folder, prefix=leftovers.BACKUP_SCRATCH_PREFIX))
        lock = leftovers.hold(scratch)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        leftovers.release(lock)


def _with(base: Manifest, tables: Sequence[TableDump], parts: Sequence[Part]) -> Manifest:
    return Manifest(engine=base.engine, revision=base.revision, created_at=base.created_at, database=base.database,
                    tables=tuple(tables), parts=tuple(parts))


# --- SQLite: the backup API ---------------------------------------------------------------------------------------


def _archive_sqlite(
    database: Database, folder: Path, writer: ArchiveWriter, progress: Progress
) -> tuple[list[TableDump], list[str]]:
    with _locked_scratch(folder) as scratch:
        snapshot = scratch / SQLITE_FILE
        with progress.track("snapshot", total=1) as advance:
            _sqlite_snapshot(database, snapshot)
            advance(1)
        # The snapshot's row counts and blob keys are read while it is compressed (SQLite releases the GIL).
        with ThreadPoolExecutor(1, thread_name_prefix="snapshot-contents") as pool:
            contents = pool.submit(_snapshot_contents, snapshot)
            with progress.track("database", total=snapshot.stat().st_size) as advance:
                writer.add_file(SQLITE_PART, snapshot, advance)
            return contents.result()


def _snapshot_contents(snapshot: Path) -> tuple[list[TableDump], list[str]]:
    engine = snapshot_engine(snapshot)
    try:
        with engine.connect() as connection:
            tables = [TableDump(table.name, _count(connection, table), columns)
                      for table, columns in _app_tables(connection)]
            return tables, _blob_keys(connection)
    finally:
        engine.dispose()


def _sqlite_snapshot(database: Database, target: Path) -> None:
    """Copy the live SQLite file with the backup API, in one step (one read transaction: a consistent copy)."""
    name = database.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError("only a SQLite database file can be backed up")
    source_path = Path(name).expanduser()
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path}")
    source = sqlite3.connect(source_path, timeout=30)
    try:
        # The source's pages read through a memory map rather than copied by read(): ~15 % off the copy. SQLite
        # caps the size at its compile-time maximum (2 GiB here); pages beyond it are read as usual.
        source.execute(f"PRAGMA mmap_size={_SOURCE_MMAP_BYTES}").fetchall()
        destination = sqlite3.connect(target)
        try:
            # A scratch copy needs no durability of its own (the archive made from it is fsynced): without a
            # journal and fsyncs the copy costs about half of a plain backup to a file.
            destination.execute("PRAGMA journal_mode=OFF")
            destination.execute("PRAGMA synchronous=OFF")
            source.backup(destination)
            destination.execute("PRAGMA journal_mode=DELETE")  # a self-contained file: no -wal beside it
        finally:
            destination.close()
    except sqlite3.Error as error:
        raise BackupError(f"SQLite could not copy the database ({type(error).__name__})") from None
    finally:
        source.close()


# --- PostgreSQL and MariaDB: a logical dump in one snapshot -------------------------------------------------------


def _archive_server(
    database: Database, writer: ArchiveWriter, progress: Progress
) -> tuple[list[TableDump], list[str]]:
    tables: list[TableDump] = []
    with _server_snapshot(database) as connection, progress.track("rows") as advance:
        for table, columns in _app_tables(connection):
            lines = _JsonLines(connection, typed_table(table.name, columns), advance)
            writer.add(f"tables/{table.name}.jsonl.zst", lines)
            tables.append(TableDump(table.name, lines.rows, columns))
        blobs = _blob_keys(connection)
    return tables, blobs


@contextlib.contextmanager
def _server_snapshot(database: Database) -> Iterator[Connection]:
    """A connection whose reads all see one consistent state of the database, for as long as the block runs."""
    with database.engine.connect() as plain:
        if database.backend == "postgresql":
            connection = plain.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():
                yield connection
            return
        connection = plain.execution_options(isolation_level="REPEATABLE READ")
        connection.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            yield connection
        finally:
            connection.rollback()


class _JsonLines:
    """A table's rows as typed JSON lines, fetched in batches and given in chunks of about ``sizes.CHUNK``
    bytes (each becomes one zstd frame); ``rows`` counts the rows given so far."""

    def __init__(self, connection: Connection, table: Table, advance: Advance) -> None:
        self._connection, self._table, self._advance = connection, table, advance
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        encode = row_encoder([type_tag(column.type) for column in self._table.columns])
        result = self._connection.execution_options(yield_per=BATCH_ROWS).execute(select(self._table))
        pending: list[bytes] = []
        pending_bytes = 0
        for batch in result.partitions():
            data = "".join(self._line(encode(row)) for row in batch).encode()
            pending.append(data)
            pending_bytes += len(data)
            self.rows += len(batch)
            self._advance(len(batch))
            if pending_bytes >= sizes.CHUNK:
                yield b"".join(pending)
                pending, pending_bytes = [], 0
        if pending:
            yield b"".join(pending)

    def _line(self, encoded: str) -> str:
        """One row's line; a row a restore would refuse (``sizes.MAX_ROW_BYTES``) fails the backup instead."""
        if len(encoded) > sizes.MAX_ROW_BYTES // 4 and len(encoded.encode()) > sizes.MAX_ROW_BYTES:
            raise BackupError(f"a row of table {self._table.name} is longer than {sizes.MAX_ROW_BYTES:,} bytes, "
                              "the most a restore accepts")
        return encoded + "\n"


# --- shared ----------------------------------------------------------------------------------------------------


def _app_tables(connection: Connection) -> list[tuple[Table, tuple[tuple[str, str], ...]]]:
    """The models' tables present in the database, in foreign-key order, each with its columns as they are."""
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        columns = tuple(
            (str(column["name"]), _tag(table, str(column["name"]), column["type"]))
            for column in inspector.get_columns(table.name)
        )
        found.append((table, columns))
    return found


def _tag(table: Table, column: str, reflected: object) -> str:
    """A column's tag from the model (exact), else from the type the database reports (an older schema's column)."""
    if column in table.columns:
        return type_tag(table.columns[column].type)
    return type_tag(reflected)  # type: ignore[arg-type]


def _count(connection: Connection, table: Table) -> int:
    return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def _blob_keys(connection: Connection) -> list[str]:
    """The blobs the snapshot names (``file_blob``), each once."""
    if not inspect(connection).has_table(FileBlob.__tablename__):
        return []
    keys = list(connection.scalars(select(FileBlob.sha256).order_by(FileBlob.sha256)))
    for key in keys:
        if not KEY_PATTERN.fullmatch(key):
            raise BackupError("a file_blob row has a key that is not a SHA-256 digest: run python -m db check")
    return keys


def _archive_blobs(storage: LocalStorage, keys: Sequence[str], writer: ArchiveWriter, progress: Progress) -> None:
    with progress.track("blobs", total=len(keys)) as advance:
        for key in keys:
            try:
                part = writer.add_file(f"blobs/{key}", storage.path_of(key))
            except FileNotFoundError:
                raise BackupError(f"blob {key} is named by the database but missing from {storage.root} "
                                  "(run python -m db check; a concurrent purge? then back up again)") from None
            if part.sha256 != key:
                raise BackupError(f"blob {key} in {storage.root} is damaged: its bytes no longer match its hash")
            advance(1)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


__all__ = ["DEFAULT_DIRECTORY", "BackupResult", "apply_retention", "backup", "database_label"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("backup")

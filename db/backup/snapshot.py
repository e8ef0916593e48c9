"""A consistent snapshot of the database, written into an archive while the application keeps writing.

- SQLite: the backup API in a single step, which copies the database inside one read transaction; in WAL mode
  writers are not blocked and the copy is the state at its start. PostgreSQL: one ``REPEATABLE READ READ ONLY``
  transaction for every table. MariaDB: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (InnoDB). These three are
  the only engine-specific lines (``_sqlite_snapshot`` and ``_server_snapshot``).
- What goes in: the SQLite snapshot file (fast, and readable by the restore on any engine), or, on a server,
  every table as typed JSON lines streamed in batches straight into the archive (memory stays flat); both
  zstd-compressed in 16 MiB frames on every core. The tables are those of the application's models
  (``Base.metadata``) present in the database, with the columns the database has (so an older schema revision is
  dumped as it is). A row longer than ``sizes.MAX_ROW_BYTES`` fails the backup: a restore would refuse it.
- Each returns the tables written and the blob keys the snapshot names (``blobs`` stores them afterwards: blobs
  are immutable, so reading them after the snapshot is consistent).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Connection, Table, func, inspect, select

import db.models  # noqa: F401 - registers every model on Base.metadata
from db.backup import leftovers, sizes
from db.backup.blobs import blob_keys
from db.backup.codec import row_encoder, snapshot_engine, type_tag, typed_table
from db.backup.manifest import SQLITE_FILE, SQLITE_PART, TableDump
from db.backup.writer import ArchiveWriter
from db.base import Base
from db.errors import BackupError
from db.layer import Database
from db.progress import Advance, Progress
from db.repositories import bulk

BATCH_ROWS = bulk.BATCH_ROWS
_SOURCE_MMAP_BYTES = 1 << 40


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


# --- SQLite: the backup API ---------------------------------------------------------------------------------------


def archive_sqlite(
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
            return tables, blob_keys(connection)
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


def archive_server(
    database: Database, writer: ArchiveWriter, progress: Progress
) -> tuple[list[TableDump], list[str]]:
    tables: list[TableDump] = []
    with _server_snapshot(database) as connection, progress.track("rows") as advance:
        for table, columns in _app_tables(connection):
            lines = _JsonLines(connection, typed_table(table.name, columns), advance)
            writer.add(f"tables/{table.name}.jsonl.zst", lines)
            tables.append(TableDump(table.name, lines.rows, columns))
        blobs = blob_keys(connection)
    return tables, blobs


@contextlib.contextmanager
def _server_snapshot(database: Database) -> Iterator[Connection]:
    """A connection whose reads all see one consistent state of the database, for as long as the block runs."""
    with database.engine.connect() as plain, database.dialect.consistent_snapshot(plain) as connection:
        yield connection


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


__all__ = ["BATCH_ROWS", "archive_server", "archive_sqlite"]

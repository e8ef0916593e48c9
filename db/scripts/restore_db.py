"""Restore a backup archive (``db.scripts.backup_db``) into a database on any engine, with its file blobs.

    python -m db.scripts.restore_db ARCHIVE [--url URL] [--storage DIR] [--yes] [--verify-only]
                                            [--max-expansion-ratio N]             # = python -m db restore ...

Decisions:

- Verify first, touch later (``reader.open_archive``): member names on a whitelist so nothing can escape, the
  manifest, every part's stored size and SHA-256, all before anything is decompressed; then the expansion limit
  on the manifest's sizes (a decompression bomb is refused before it expands, ``reader.Limits``); then every
  part decompressed once and thrown away (frame checksums, raw sizes, each table's row count, no row longer than
  ``sizes.MAX_ROW_BYTES``). The schema revision must be one this code knows. Only then is the target looked at.
  Parts are streamed from the archive, never extracted to a temporary directory, except a SQLite snapshot being
  restored into a server (its rows are read from it there).
- Room first: what the restore will write on local disks (the new SQLite file beside the target, a snapshot in
  the temporary directory, the blobs the storage root lacks) is checked against each file system's free space
  before anything is written (``DiskFull``). A disk that fills up all the same gives ``DiskFull`` too, and the
  target keeps its old data.
- The old data stays until the new data is complete and verified; then one swap (``db.dialects``, "restore"):
  SQLite builds a new file beside the target and copies its tables into the target in one transaction (no
  rename: connections that have the file open go on working and see the new data); PostgreSQL builds the new
  tables in a staging schema inside one transaction and moves them into place at its end; MariaDB builds them in
  a staging database and swaps them in with one ``RENAME TABLE``. Verified: every table holds the manifest's row
  count, the schema is at the head revision (an older backup is upgraded in the staging area), a SQLite file
  passes ``quick_check`` and ``foreign_key_check``, and every blob a restored row names is in the storage root.
  Interrupted or killed anywhere, the target holds the old data or the new, never a mix; what an interruption
  leaves (a staging file or database) is listed by ``check`` and removed by the next restore or by ``cleanup
  --apply`` (``db.backup.leftovers``).
- A target that already has any of the application's tables (or an Alembic version table) is replaced only with
  ``yes=True`` or after ``confirm(message)`` returns True; the message names the target with its password hidden.
  Without either, ``ConfirmationRequired``. Tables that are not the application's are left alone; one that has a
  foreign key to an application table makes the restore refuse before anything is written (replacing the table
  would leave its rows dangling).
- Blobs are copied into the target's storage root straight from the archive (each checked against its hash;
  those already there are kept) after the rows are loaded and before the swap, so that no restored row ever
  names a missing blob. A restore that fails after that leaves them as blobs no row names, which harm nothing
  (``check`` warns; ``cleanup`` removes them). A root bound to another database, or holding blobs that neither
  the backup nor the target names, is refused before anything is touched (``db.storage_binding.prepare_restore``).
- The restored database keeps the target's identity (``database_identity``), or gets a new one if the target had
  none; never the backup's: a copy must not pass for the original, whose storage root it could then clean. The
  identity is written into the staging area before the swap, and the root is bound to it after.
- Rows: the staging schema is built by the migrations at the backup's revision, the rows the migrations seed
  (built-in roles, the audit chain's genesis head) are cleared, and the backup's rows are inserted with Core in
  foreign-key order, in batches of at most ``BATCH_ROWS`` rows and ``BATCH_BYTES`` bytes; then the staging
  schema is upgraded to the head. The audit log's rows, chain head and checkpoints are copied as they are, so
  ``verify_chain()`` holds afterwards.
- A SQLite snapshot restored into SQLite becomes the staging file itself (no rows are decoded); only the
  application's tables (and Alembic's) are taken from it, as from any backup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, RootTransaction, delete, func, insert, inspect, select, text
from sqlalchemy.engine import URL

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import dialects, storage_binding
from db.backup import leftovers
from db.backup.codec import row_decoder, snapshot_engine, typed_table
from db.backup.disk import check_free_space, disk_full_as_error
from db.backup.manifest import SQLITE_FILE, SQLITE_PART, Manifest, Part, TableDump
from db.backup.reader import DEFAULT_LIMITS, Limits, VerifiedArchive, open_archive, verify_archive
from db.backup.sizes import COPY_CHUNK, MAX_ROW_BYTES
from db.base import Base
from db.errors import BackupError, ConfirmationRequired, DatabaseError, DiskFull
from db.migrations import runner
from db.models.file_blob import FileBlob
from db.scripts.progress import SILENT, Advance, Progress
from db.session import Database
from db.storage import LocalStorage

BATCH_ROWS = 5_000
BATCH_BYTES = 16 << 20
VERSION_TABLE = "alembic_version"
SWAP_TIMEOUT = 30.0  # seconds a SQLite swap waits for another writer to finish

Confirm = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    target: str  # the target's URL without its password
    archive: Path
    manifest: Manifest
    rows: dict[str, int]  # rows restored per table
    blobs: int  # blobs the archive holds, all present in the target's storage afterwards
    replaced: bool  # the target held the application's tables before
    revision: str | None  # the target's schema revision afterwards (head)
    seconds: float


def restore(
    database: Database,
    archive_path: str | os.PathLike[str],
    *,
    yes: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = SILENT,
    limits: Limits = DEFAULT_LIMITS,
) -> RestoreResult:
    """Restore the backup at ``archive_path`` into ``database`` and its storage root; see the module docstring."""
    started = time.perf_counter()
    path = Path(archive_path)
    target = database.url.render_as_string(hide_password=True)
    destination = _destination_for(database)
    try:
        manifest, rows, replaced = _restore_verified(database, destination, path, yes=yes, confirm=confirm,
                                                     progress=progress, limits=limits)
    except KeyboardInterrupt as stop:
        stop.add_note(f"restore interrupted: {target} {_state(destination)}")
        raise
    return RestoreResult(
        target=target, archive=path, manifest=manifest, rows=rows, blobs=manifest.blob_count,
        replaced=replaced, revision=runner.current_revision(database), seconds=time.perf_counter() - started,
    )


def _restore_verified(database: Database, destination: _Destination, path: Path, *, yes: bool,
                      confirm: Confirm | None, progress: Progress, limits: Limits
                      ) -> tuple[Manifest, dict[str, int], bool]:
    target = database.url.render_as_string(hide_password=True)
    existing = destination.app_tables()
    if path.is_file() and existing and not yes and confirm is None:  # say so before reading the archive
        raise ConfirmationRequired(f"{target} already holds data: restoring would replace it; confirm with --yes")
    with open_archive(path, progress=progress, limits=limits) as verified:
        manifest = verified.manifest
        _check_revision(manifest.revision)
        if existing:
            _confirm(target, manifest, len(existing), yes=yes, confirm=confirm)
            _refuse_foreign_references(database)
        storage = storage_binding.local_storage(database)
        identity = storage_binding.prepare_restore(database, storage, {part.sha256 for part in manifest.blob_parts},
                                                   exists=bool(existing) or destination.exists())
        leftovers.remove(database, leftovers.restore_leftovers(database))
        check_free_space(_space_needed(destination, verified, storage))
        try:
            rows = _restore(destination, verified, storage, identity, progress)
        except (ConfirmationRequired, DiskFull) as failure:
            raise type(failure)(f"{failure} ({target} {_state(destination)})") from None
        except Exception as failure:
            raise _failed(target, destination, failure) from None
    return manifest, rows, bool(existing)


def verify_backup(archive_path: str | os.PathLike[str], *, progress: Progress = SILENT,
                  limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """``reader.verify_archive``, and for a SQLite snapshot also what a restore checks before writing anything:
    the snapshot is sound and holds the manifest's tables with the manifest's row counts (it is extracted to the
    temporary directory for that). Returns the manifest; ``BackupError`` otherwise."""
    with open_archive(archive_path, progress=progress, limits=limits) as verified:
        snapshot = _snapshot_part(verified.manifest)
        if snapshot is not None:
            check_free_space({Path(tempfile.gettempdir()): snapshot.raw_size})
            with _extracted(verified, snapshot) as path:
                _check_snapshot(path, verified.manifest)
        return verified.manifest


def _state(destination: _Destination) -> str:
    if destination.swapped:
        return "holds the restored data"
    return "still holds its previous data"


def _failed(target: str, destination: _Destination, failure: Exception) -> DatabaseError:
    if dialects.is_disk_full(failure):
        return DiskFull(f"the disk filled up during the restore into {target}: free some space and try again "
                        f"({target} {_state(destination)})")
    reason = failure if isinstance(failure, BackupError) else _describe(failure)
    return BackupError(f"restore into {target} failed ({reason}); {target} {_state(destination)}")


def _describe(failure: BaseException) -> str:
    translated = dialects.domain_error(failure, entity="restore")
    return str(translated or f"{type(failure).__name__}: {failure}")


def _check_revision(revision: str) -> None:
    scripts = ScriptDirectory.from_config(runner.alembic_config())
    try:
        known = scripts.get_revision(revision) is not None
    except (ResolutionError, CommandError):
        known = False
    if not known:
        raise BackupError(f"the backup is at schema revision {revision!r}, which this code does not know (the newest "
                          f"it knows is {scripts.get_current_head()}): restore it with the code that made it")


def _confirm(target: str, manifest: Manifest, tables: int, *, yes: bool, confirm: Confirm | None) -> None:
    if yes:
        return
    question = (f"{target} already holds data ({tables} tables of this application): replace it with the backup of "
                f"{manifest.database} taken {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC?")
    if confirm is None:
        raise ConfirmationRequired(f"{target} already holds data ({tables} tables): restoring would replace it; "
                                   "confirm with --yes")
    if not confirm(question):
        raise ConfirmationRequired(f"restore into {target} not confirmed: nothing was changed")


def _wanted_tables() -> list[str]:
    """The tables a restore replaces: the application's and Alembic's."""
    return sorted({*Base.metadata.tables, VERSION_TABLE})


def _app_tables_present(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return sorted(set(inspect(connection).get_table_names()) & set(_wanted_tables()))


def _refuse_foreign_references(database: Database) -> None:
    """Refuse a target where a table that is not the application's has a foreign key to one of its tables."""
    wanted = set(_wanted_tables())
    with database.engine.connect() as connection:
        inspector = inspect(connection)
        for table in sorted(set(inspector.get_table_names()) - wanted):
            for key in inspector.get_foreign_keys(table):
                if key.get("referred_schema") is None and key["referred_table"] in wanted:
                    raise BackupError(f"table {table} (not this application's) has a foreign key to "
                                      f"{key['referred_table']}, which a restore replaces: drop that foreign key or "
                                      "restore elsewhere (nothing was changed)")


# --- where the restore writes: one class per engine, chosen once --------------------------------------------------


class _Staging(Protocol):
    takes_sqlite_file: bool  # a SQLite snapshot can become the staging area as it is

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection to the staging area (see ``keep``)."""
        ...

    def keep(self, connection: Connection) -> None:
        """Make what ``connection`` wrote so far durable in the staging area (a commit; on PostgreSQL nothing:
        the whole restore is one transaction)."""
        ...

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        """Make the SQLite snapshot ``part`` the staging area, and check it against the manifest."""
        ...

    def verify(self) -> None:
        """Engine-level checks of the staging area before the swap (SQLite: quick_check, foreign_key_check)."""
        ...

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        """Put the staging area in place of ``tables`` (those the target has), in one atomic step."""
        ...


class _Destination(Protocol):
    database: Database
    swapped: bool  # the new data is live (set by the swap the moment it happens)

    def exists(self) -> bool:
        """Whether the target database exists already (a missing SQLite file is not created to find out)."""
        ...

    def app_tables(self) -> list[str]: ...

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        """Bytes the staging area will take on local file systems."""
        ...

    def staging(self) -> contextlib.AbstractContextManager[_Staging]:
        """A new staging area, removed when the block ends unless it was swapped in."""
        ...


def _destination_for(database: Database) -> _Destination:
    if database.backend == "sqlite":
        return _SqliteDestination(database)
    if database.backend == "postgresql":
        return _PostgresqlDestination(database)
    if database.backend in ("mysql", "mariadb"):
        return _MariadbDestination(database)
    raise BackupError(f"cannot restore into a {database.backend} database")


def _token() -> str:
    return secrets.token_hex(6)


class _SqliteDestination:
    """A new file ``.<name>.restore-<token>`` beside the target, whose tables replace the target's in one
    transaction of the target (``dialects.swap_sqlite_tables``)."""

    def __init__(self, database: Database) -> None:
        name = database.url.database
        if not name or name == ":memory:" or name.startswith("file:"):
            raise BackupError("only a SQLite database file can be restored into")
        self.database, self.path, self.swapped = database, Path(name).expanduser().absolute(), False

    def exists(self) -> bool:
        return self.path.exists()

    def app_tables(self) -> list[str]:
        return _app_tables_present(self.database) if self.path.exists() else []  # never create the file

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        # The staging file, then as much again in the target's WAL while the swap copies it in.
        parts = [part for part in manifest.parts if part.is_compressed]
        return {self.path.parent: 2 * sum(part.raw_size for part in parts)}

    @contextlib.contextmanager
    def staging(self) -> Iterator[_Staging]:
        made = _make_directory(self.path.parent)
        try:
            path = dialects.sqlite_staging_path(self.path, _token())
            with leftovers.creating_in(self.path.parent):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # mode as SQLite makes it
                lock = leftovers.hold(path)
            staging = _SqliteStaging(self, path)
            try:
                yield staging
            finally:
                staging.close()
                for leftover in (*dialects.sqlite_companions(path), path):
                    leftover.unlink(missing_ok=True)
                leftovers.release(lock)
        finally:
            if not self.swapped:
                _remove_empty_directories(made)


class _CommittedStaging:
    """A staging area in a database of its own (``_database``), where each ``keep`` commits."""

    _database: Database

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._database.engine.connect() as connection:
            yield connection
            self.keep(connection)

    def keep(self, connection: Connection) -> None:
        if connection.in_transaction():
            connection.commit()


class _SqliteStaging(_CommittedStaging):
    takes_sqlite_file = True

    def __init__(self, destination: _SqliteDestination, path: Path) -> None:
        self.destination, self.path = destination, path
        self._database = Database(URL.create("sqlite", database=str(path)), poolclass=_null_pool())

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        """The snapshot becomes the staging file."""
        with verified.reader(part) as stream, disk_full_as_error(str(self.path.parent)), \
                self.path.open("r+b") as out:
            while chunk := stream.read(COPY_CHUNK):
                out.write(chunk)
                advance(len(chunk))
        _check_snapshot(self.path, verified.manifest)

    def verify(self) -> None:
        with self.connection() as connection:
            problems = dialects.sqlite_integrity_problems(connection) + dialects.sqlite_foreign_key_problems(
                connection)
        if problems:
            raise BackupError(f"the restored SQLite file fails its checks: {'; '.join(problems[:3])}")

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        self.close()
        dialects.swap_sqlite_tables(self.path, self.destination.path, tables, timeout=SWAP_TIMEOUT)
        self.destination.swapped = True
        advance(1)

    def close(self) -> None:
        self._database.dispose()


def _make_directory(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
    return missing


def _remove_empty_directories(directories: Iterable[Path]) -> None:
    for path in directories:
        with contextlib.suppress(OSError):
            path.rmdir()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool  # noqa: PLC0415 - only the staging databases use it

    return NullPool


class _PostgresqlDestination:
    """The whole restore is one transaction: a staging schema, moved in at its end
    (``dialects.swap_postgresql_schema``). Interrupted, the server rolls all of it back."""

    def __init__(self, database: Database) -> None:
        self.database, self.swapped = database, False

    def exists(self) -> bool:
        return True

    def app_tables(self) -> list[str]:
        return _app_tables_present(self.database)

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        return {}  # the server's disk: its own "disk full" error says so

    @contextlib.contextmanager
    def staging(self) -> Iterator[_Staging]:
        with self.database.engine.connect() as connection:
            transaction = connection.begin()
            try:
                live, schema = dialects.begin_postgresql_staging(connection, _token())
                yield _PostgresqlStaging(self, connection, transaction, live, schema)
            finally:
                if transaction.is_active:
                    transaction.rollback()


class _PostgresqlStaging:
    takes_sqlite_file = False

    def __init__(self, destination: _PostgresqlDestination, connection: Connection, transaction: RootTransaction,
                 live: str, schema: str) -> None:
        self.destination, self._connection, self._transaction = destination, connection, transaction
        self.live, self.schema = live, schema

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        yield self._connection

    def keep(self, connection: Connection) -> None:
        return None  # one transaction, committed by the swap

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        raise AssertionError("a server takes rows, not a SQLite file")

    def verify(self) -> None:
        return None

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        dialects.swap_postgresql_schema(self._connection, live=self.live, staging=self.schema, tables=tables)
        self._transaction.commit()
        self.destination.swapped = True
        advance(1)


class _MariadbDestination:
    """A staging database, swapped in with one ``RENAME TABLE`` (``dialects.rename_mariadb_tables``), the old
    tables leaving for a second database; a named lock marks both as in use while the restore runs."""

    def __init__(self, database: Database) -> None:
        self.database, self.swapped = database, False
        self.live = str(database.url.database)

    def exists(self) -> bool:
        return True

    def app_tables(self) -> list[str]:
        return _app_tables_present(self.database)

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        return {}

    @contextlib.contextmanager
    def staging(self) -> Iterator[_Staging]:
        token = _token()
        staging, replaced = dialects.mariadb_restore_databases(self.live, token)
        with (self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as control,
              leftovers.mariadb_restore_lock(control, staging) as taken):
            if not taken:  # pragma: no cover - the token is random
                raise BackupError(f"another restore uses the staging database {staging}")
            area = _MariadbStaging(self, control, staging, replaced)
            try:
                dialects.create_mariadb_staging(control, staging)
                yield area
            finally:
                area.close()
                with contextlib.suppress(Exception):  # else it is a leftover, listed by check, removed by cleanup
                    leftovers.settle_mariadb_restore(control, self.live, token)


class _MariadbStaging(_CommittedStaging):
    takes_sqlite_file = False

    def __init__(self, destination: _MariadbDestination, control: Connection, staging: str, replaced: str) -> None:
        self.destination, self._control, self.staging, self.replaced = destination, control, staging, replaced
        self._database = Database(destination.database.url.set(database=staging), poolclass=_null_pool())

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        raise AssertionError("a server takes rows, not a SQLite file")

    def verify(self) -> None:
        return None

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        self.close()
        live = self.destination.live
        with dialects.mariadb_swap_lock(self._control, live):
            dialects.rename_mariadb_tables(self._control, live=live, staging=self.staging, replaced=self.replaced,
                                           tables=tables)
            self.destination.swapped = True
            advance(1)
            dialects.finish_mariadb_swap(self._control, live=live, staging=self.staging, replaced=self.replaced)
            advance(1)

    def close(self) -> None:
        self._database.dispose()


# --- the work ----------------------------------------------------------------------------------------------------


def _space_needed(destination: _Destination, verified: VerifiedArchive, storage: LocalStorage) -> dict[Path, int]:
    manifest = verified.manifest
    needs = destination.space_needed(manifest)
    snapshot = _snapshot_part(manifest)
    if snapshot is not None and not isinstance(destination, _SqliteDestination):
        scratch = Path(tempfile.gettempdir())
        needs[scratch] = needs.get(scratch, 0) + snapshot.raw_size
    missing = sum(part.size for part in manifest.blob_parts if not storage.exists(part.sha256))
    needs[storage.root] = needs.get(storage.root, 0) + missing
    return needs


def _snapshot_part(manifest: Manifest) -> Part | None:
    return next((part for part in manifest.parts if part.name == SQLITE_PART), None)


def _restore(destination: _Destination, verified: VerifiedArchive, storage: LocalStorage, identity: uuid.UUID,
             progress: Progress) -> dict[str, int]:
    with destination.staging() as staging:
        rows = _build(staging, verified, progress)
        with staging.connection() as connection:
            storage_binding.stamp_identity(connection, identity)  # the target's identity, never the backup's
            staging.keep(connection)
        _restore_blobs(storage, verified, progress)
        _check_blobs_present(staging, storage)
        with progress.track("swap", total=2 if isinstance(destination, _MariadbDestination) else 1) as advance:
            staging.swap(_wanted_tables(), advance)
    storage_binding.finish_restore(destination.database, storage, identity)
    return rows


def _build(staging: _Staging, verified: VerifiedArchive, progress: Progress) -> dict[str, int]:
    """The new data, complete and verified, in the staging area."""
    manifest = verified.manifest
    snapshot = _snapshot_part(manifest)
    if snapshot is not None and staging.takes_sqlite_file:
        with progress.track("database", total=snapshot.raw_size) as advance:
            staging.place_file(verified, snapshot, advance)
        rows = manifest.row_counts
    else:
        _migrate(staging, manifest.revision)
        if snapshot is not None:
            with _extracted(verified, snapshot) as path:
                _check_snapshot(path, manifest)
                rows = _load(staging, manifest, lambda dump: _snapshot_rows(dump, path), progress)
        else:
            rows = _load(staging, manifest, lambda dump: _json_rows(dump, verified), progress)
    if manifest.revision != runner.head_revision():
        _migrate(staging, "head")
    _check_counts(staging, manifest)
    staging.verify()
    return rows


_ALEMBIC = threading.Lock()  # Alembic's migration context is global to the process: one migration at a time


def _migrate(staging: _Staging, revision: str) -> None:
    """Run the migrations up to ``revision`` in the staging area, on its connection."""
    config = runner.alembic_config()
    with staging.connection() as connection, _ALEMBIC:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def _extracted(verified: VerifiedArchive, part: Part) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dblayer-restore-") as scratch:
        path = Path(scratch) / SQLITE_FILE
        verified.extract(part, path)
        yield path


def _check_snapshot(path: Path, manifest: Manifest) -> None:
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


def _check_counts(staging: _Staging, manifest: Manifest) -> None:
    with staging.connection() as connection:
        for dump in manifest.tables:
            found = connection.execute(select(func.count()).select_from(typed_table(dump.name, ()))).scalar()
            if found != dump.rows:
                raise BackupError(f"table {dump.name}: {found:,} rows restored, the manifest says {dump.rows:,}")


def _load(staging: _Staging, manifest: Manifest, rows_of: Callable[[TableDump], Iterator[list[dict[str, Any]]]],
          progress: Progress) -> dict[str, int]:
    dumps = {dump.name: dump for dump in manifest.tables}
    restored: dict[str, int] = {}
    with staging.connection() as connection, progress.track(
        "rows", total=sum(dump.rows for dump in manifest.tables)
    ) as advance:
        order = _foreign_key_order(connection)
        missing = set(dumps) - set(order)
        if missing:
            raise BackupError(f"revision {manifest.revision} has no table {sorted(missing)[0]}")
        _clear_seeded_rows(connection, order)
        for name in order:
            if name in dumps:
                dump = dumps[name]
                restored[name] = _load_table(staging, connection, dump, rows_of(dump), advance)
                if restored[name] != dump.rows:
                    raise BackupError(f"table {name}: {restored[name]} rows loaded, the manifest says {dump.rows}")
    return restored


def _foreign_key_order(connection: Connection) -> list[str]:
    names = inspect(connection).get_sorted_table_and_fkc_names()
    order = [name for name, _ in names if name is not None and name in Base.metadata.tables]
    # The audit chain head last: the database refuses an audit entry or checkpoint at or below the head.
    return sorted(order, key=lambda name: name == "audit_chain_head")


def _clear_seeded_rows(connection: Connection, order: Sequence[str]) -> None:
    """Remove what the migrations inserted (built-in roles, the chain's genesis head): the backup has its own."""
    reflected = MetaData()
    reflected.reflect(connection, only=list(order))
    for name in reversed(order):
        if name in dialects.APPEND_ONLY_TABLES:  # created empty by the migrations; DELETE is refused there anyway
            continue
        connection.execute(delete(reflected.tables[name]))


def _load_table(staging: _Staging, connection: Connection, dump: TableDump,
                batches: Iterator[list[dict[str, Any]]], advance: Advance) -> int:
    statement = insert(typed_table(dump.name, dump.columns))
    loaded = 0
    for batch in batches:
        connection.execute(statement, batch)
        staging.keep(connection)
        loaded += len(batch)
        advance(len(batch))
    return loaded


def _batched(rows: Iterable[tuple[dict[str, Any], int]]) -> Iterator[list[dict[str, Any]]]:
    """Rows (each with its size in bytes) in batches of at most ``BATCH_ROWS`` rows and about ``BATCH_BYTES``."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row, row_bytes in rows:
        batch.append(row)
        size += row_bytes
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _json_rows(dump: TableDump, verified: VerifiedArchive) -> Iterator[list[dict[str, Any]]]:
    part = next(part for part in verified.manifest.parts if part.name == f"tables/{dump.name}.jsonl.zst")
    decode = row_decoder(dump.columns)
    return _batched((decode(line), len(line)) for line in verified.lines(part))


def _snapshot_rows(dump: TableDump, snapshot: Path) -> Iterator[list[dict[str, Any]]]:
    """The table's rows read from the snapshot one at a time (a value longer than ``MAX_ROW_BYTES`` is refused), so
    that a batch holds at most about ``BATCH_BYTES``."""
    engine = snapshot_engine(snapshot)
    table = typed_table(dump.name, dump.columns)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=1).execute(select(table))
            yield from _batched((dict(row), _size_of(row)) for row in result.mappings())
    except sqlite3.DataError:
        raise BackupError(f"the SQLite snapshot's table {dump.name} holds a value longer than "
                          f"{MAX_ROW_BYTES:,} bytes (the limit): refused") from None
    finally:
        engine.dispose()


def _size_of(row: Any) -> int:
    return sum(len(value) if isinstance(value, str | bytes) else 16 for value in row.values())


# --- blobs -------------------------------------------------------------------------------------------------------


def _restore_blobs(storage: LocalStorage, verified: VerifiedArchive, progress: Progress) -> None:
    manifest = verified.manifest
    with progress.track("blobs", total=manifest.blob_count) as advance:
        for part in manifest.blob_parts:
            if not storage.exists(part.sha256):
                with verified.reader(part) as stream, disk_full_as_error(str(storage.root)):
                    key, _size = storage.put(stream)
                if key != part.sha256:  # pragma: no cover - the archive was verified and is re-hashed on reading
                    raise BackupError(f"blob {part.sha256} changed while it was being restored")
            advance(1)


def _check_blobs_present(staging: _Staging, storage: LocalStorage) -> None:
    """Every blob a restored ``file_blob`` row names is in the storage root."""
    with staging.connection() as connection:
        if not inspect(connection).has_table(FileBlob.__tablename__):
            return
        for key in connection.scalars(select(FileBlob.sha256).order_by(FileBlob.sha256)):
            if not storage.exists(key):
                raise BackupError(f"the backup names blob {key} but holds no such blob, and the storage root has none")


__all__ = ["BATCH_BYTES", "BATCH_ROWS", "Limits", "RestoreResult", "restore", "verify_archive", "verify_backup"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("restore")

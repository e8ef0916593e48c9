"""Restore a backup archive (``db.scripts.backup_db``) into a database on any engine, with its file blobs.

    python -m db.scripts.restore_db ARCHIVE [--url URL] [--storage DIR] [--yes] [--verify-only]
                                                                       # = python -m db restore ...

Decisions:

- Verify first, touch later. The archive is checked in full (member names on a whitelist so nothing can escape,
  manifest present and well-formed, every part present with its stored size and SHA-256, all before anything is
  decompressed; then every zstd frame's checksum and every part's raw size) while its parts are extracted into a
  private temporary directory; the schema revision must be one this code knows (a backup from newer code is
  refused). Only then is the target looked at.
- A target that already has any of the application's tables (or an Alembic version table) is replaced only with
  ``yes=True`` or after ``confirm(message)`` returns True; the message names the target with its password hidden.
  Without either, ``ConfirmationRequired``. Tables that are not the application's are left alone.
- Blobs go into the target's storage root first (``LocalStorage.put``, each checked against its hash; blobs
  already there are kept), so that no restored row ever names a missing blob.
- Rows: the application's tables are dropped, the schema is built by the migrations at the backup's revision,
  the rows the migrations seed (built-in roles, the audit chain's genesis head) are cleared, and the backup's rows
  are inserted with Core in foreign-key order, in batches of ``BATCH_ROWS``, in one transaction; then the schema
  is upgraded to head if the backup is older. The audit log's rows, chain head and checkpoints are copied as they
  are, so ``verify_chain()`` holds afterwards (the append-only triggers allow inserts).
- SQLite into SQLite: the snapshot is copied over the target file with SQLite's backup API (one transaction)
  instead of row by row; it replaces the whole file, not only the application's tables.
- Nothing half-written: if anything fails after the target was touched, the application's tables are dropped and
  ``BackupError`` says the target was left empty; a failure before that leaves it unchanged.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, delete, insert, inspect, select

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import dialects
from db.base import Base
from db.errors import BackupError, ConfirmationRequired
from db.migrations import runner
from db.scripts import archive
from db.scripts.archive import Manifest, TableDump, unpack, verify_archive
from db.scripts.progress import SILENT, Advance, Progress
from db.session import Database
from db.storage import LocalStorage

BATCH_ROWS = 5_000
VERSION_TABLE = "alembic_version"

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
) -> RestoreResult:
    """Restore the backup at ``archive_path`` into ``database`` and its storage root; see the module docstring."""
    started = time.perf_counter()
    path = Path(archive_path)
    target = database.url.render_as_string(hide_password=True)
    if path.is_file() and not yes and confirm is None and _app_tables_present(database):  # say so before unpacking
        raise ConfirmationRequired(f"{target} already holds data: restoring would replace it; confirm with --yes")
    with tempfile.TemporaryDirectory(prefix="dblayer-restore-") as scratch_dir:
        scratch = Path(scratch_dir)
        manifest = unpack(path, scratch, progress=progress)
        _check_revision(manifest.revision)
        existing = _app_tables_present(database)
        if existing:
            _confirm(target, manifest, len(existing), yes=yes, confirm=confirm)
        _restore_blobs(LocalStorage(database.settings.storage_root), manifest, scratch, progress)
        try:
            rows = _restore_rows(database, manifest, scratch, progress)
            if manifest.revision != runner.head_revision():
                runner.upgrade(database)
        except Exception as failure:
            reason = failure if isinstance(failure, BackupError) else _describe(failure)
            raise BackupError(f"restore into {target} failed ({reason}); {_leave_empty(database)}") from None
        except BaseException:  # interrupted: no half-restored database either
            _leave_empty(database)
            raise
    return RestoreResult(
        target=target, archive=path, manifest=manifest, rows=rows, blobs=manifest.blob_count,
        replaced=bool(existing), revision=runner.current_revision(database), seconds=time.perf_counter() - started,
    )


def _leave_empty(database: Database) -> str:
    """Drop what a failed restore wrote; say what state the target is in."""
    try:
        _drop_app_tables(database)
    except Exception:
        return "the target may hold a partial restore: drop its tables (or restore again with --yes)"
    return "the target was left empty"


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


def _app_tables_present(database: Database) -> list[str]:
    wanted = {*Base.metadata.tables, VERSION_TABLE}
    with database.engine.connect() as connection:
        return sorted(set(inspect(connection).get_table_names()) & wanted)


def _drop_app_tables(database: Database) -> None:
    """Drop the application's tables (and Alembic's), children first; the audit triggers go with their tables."""
    with database.engine.begin() as connection:
        present = set(inspect(connection).get_table_names()) & {*Base.metadata.tables, VERSION_TABLE}
        if present:
            reflected = MetaData()
            reflected.reflect(connection, only=sorted(present))
            reflected.drop_all(connection)


# --- blobs -------------------------------------------------------------------------------------------------------


def _restore_blobs(storage: LocalStorage, manifest: Manifest, scratch: Path, progress: Progress) -> None:
    with progress.track("blobs", total=manifest.blob_count) as advance:
        for part in manifest.blob_parts:
            with (scratch / part.extracted_name).open("rb") as source:
                key, _size = storage.put(source)
            if key != part.sha256:  # pragma: no cover - the archive was verified; a disk error would show here
                raise BackupError(f"blob {part.sha256} changed while it was being restored")
            advance(1)


# --- rows --------------------------------------------------------------------------------------------------------


def _restore_rows(database: Database, manifest: Manifest, scratch: Path, progress: Progress) -> dict[str, int]:
    if manifest.is_sqlite_snapshot and database.backend == "sqlite":
        return _copy_sqlite_file(database, manifest, scratch / archive.SQLITE_FILE, progress)
    _drop_app_tables(database)
    runner.upgrade(database, manifest.revision)
    dumps = {dump.name: dump for dump in manifest.tables}
    restored: dict[str, int] = {}
    with database.engine.begin() as connection, progress.track(
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
                restored[name] = _load_table(connection, dump, _rows_of(dump, manifest, scratch), advance)
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


def _load_table(connection: Connection, dump: TableDump, rows: Iterator[list[dict[str, Any]]], advance: Advance) -> int:
    statement = insert(archive.typed_table(dump.name, dump.columns))
    loaded = 0
    for batch in rows:
        connection.execute(statement, batch)
        loaded += len(batch)
        advance(len(batch))
    return loaded


def _rows_of(dump: TableDump, manifest: Manifest, scratch: Path) -> Iterator[list[dict[str, Any]]]:
    if manifest.is_sqlite_snapshot:
        return _snapshot_rows(dump, scratch / archive.SQLITE_FILE)
    return _json_rows(dump, scratch / "tables" / f"{dump.name}.jsonl")


def _json_rows(dump: TableDump, path: Path) -> Iterator[list[dict[str, Any]]]:
    decode = archive.row_decoder(dump.columns)
    batch: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="\n") as lines:
        for line in lines:
            batch.append(decode(line))
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
    if batch:
        yield batch


def _snapshot_rows(dump: TableDump, snapshot: Path) -> Iterator[list[dict[str, Any]]]:
    engine = archive.snapshot_engine(snapshot)
    table = archive.typed_table(dump.name, dump.columns)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=BATCH_ROWS).execute(select(table))
            for partition in result.mappings().partitions():
                yield [dict(row) for row in partition]
    finally:
        engine.dispose()


def _copy_sqlite_file(database: Database, manifest: Manifest, snapshot: Path, progress: Progress) -> dict[str, int]:
    """SQLite into SQLite: the snapshot replaces the target file through the backup API, in one transaction."""
    name = database.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError("only a SQLite database file can be restored into")
    database.dispose()  # no pooled connection keeps a read transaction open on the old contents
    dialects.prepare_sqlite_file(database.url)
    with progress.track("database", total=1) as advance:
        source = sqlite3.connect(snapshot)  # our private copy
        try:
            target = sqlite3.connect(Path(name).expanduser(), timeout=30)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        advance(1)
    return manifest.row_counts


__all__ = ["BATCH_ROWS", "RestoreResult", "restore", "verify_archive"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("restore")

"""The new data, complete and verified, in a staging area (``staging``): the schema migrated to the backup's
revision, the seeded rows cleared, the backup's rows inserted in foreign-key order in bounded batches, the schema
upgraded to the head, every table's row count checked; or a SQLite snapshot made the staging file as it is."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from sqlalchemy import Connection, MetaData, delete, func, insert, inspect, select

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import dialects
from db.backup.codec import row_decoder, snapshot_engine, typed_table
from db.backup.manifest import Manifest, TableDump
from db.backup.reader import VerifiedArchive
from db.backup.sizes import MAX_ROW_BYTES
from db.backup.sqlite_part import check_snapshot, extracted, snapshot_part
from db.base import Base
from db.errors import BackupError
from db.migrations import runner
from db.progress import Advance, Progress
from db.repositories import bulk

if TYPE_CHECKING:
    from db.backup.staging import Staging

BATCH_ROWS = bulk.BATCH_ROWS
BATCH_BYTES = 16 << 20


def build(staging: Staging, verified: VerifiedArchive, progress: Progress) -> dict[str, int]:
    """The new data, complete and verified, in the staging area."""
    manifest = verified.manifest
    snapshot = snapshot_part(manifest)
    if snapshot is not None and staging.takes_sqlite_file:
        with progress.track("database", total=snapshot.raw_size) as advance:
            staging.place_file(verified, snapshot, advance)
        rows = manifest.row_counts
    else:
        _migrate(staging, manifest.revision)
        if snapshot is not None:
            with extracted(verified, snapshot) as path:
                check_snapshot(path, manifest)
                rows = _load(staging, manifest, lambda dump: _snapshot_rows(dump, path), progress)
        else:
            rows = _load(staging, manifest, lambda dump: _json_rows(dump, verified), progress)
    if manifest.revision != runner.head_revision():
        _migrate(staging, "head")
    _check_counts(staging, manifest)
    staging.verify()
    return rows


_ALEMBIC = threading.Lock()  # Alembic's migration context is global to the process: one migration at a time


def _migrate(staging: Staging, revision: str) -> None:
    """Run the migrations up to ``revision`` in the staging area, on its connection."""
    config = runner.alembic_config()
    with staging.connection() as connection, _ALEMBIC:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _check_counts(staging: Staging, manifest: Manifest) -> None:
    with staging.connection() as connection:
        for dump in manifest.tables:
            found = connection.execute(select(func.count()).select_from(typed_table(dump.name, ()))).scalar()
            if found != dump.rows:
                raise BackupError(f"table {dump.name}: {found:,} rows restored, the manifest says {dump.rows:,}")


def _load(staging: Staging, manifest: Manifest, rows_of: Callable[[TableDump], Iterator[list[dict[str, Any]]]],
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


def _load_table(staging: Staging, connection: Connection, dump: TableDump,
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


__all__ = ["BATCH_BYTES", "BATCH_ROWS", "build"]

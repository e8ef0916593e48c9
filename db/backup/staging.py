"""Where a restore builds the new data, one class per engine (chosen once by ``destination_for``), and the one
swap that puts it in place of the old (``db.dialects``, "restore").

SQLite builds a new file beside the target and copies its tables into the target in one transaction (no rename:
connections that have the file open go on working and see the new data); PostgreSQL builds the new tables in a
staging schema inside one transaction and moves them into place at its end; MariaDB builds them in a staging
database and swaps them in with one ``RENAME TABLE``. What an interruption leaves is handled by ``leftovers``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, RootTransaction, inspect
from sqlalchemy.engine import URL

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import dialects
from db.backup import leftovers
from db.backup.disk import disk_full_as_error
from db.backup.interrupts import interrupts_deferred
from db.backup.manifest import Manifest, Part
from db.backup.reader import VerifiedArchive
from db.backup.sizes import COPY_CHUNK
from db.backup.sqlite_part import check_snapshot
from db.base import Base
from db.dialects import mariadb, postgresql, sqlite
from db.errors import BackupError
from db.layer import Database
from db.progress import Advance

VERSION_TABLE = "alembic_version"
SWAP_TIMEOUT = 30.0  # seconds a SQLite swap waits for another writer to finish


def wanted_tables() -> list[str]:
    """The tables a restore replaces: the application's and Alembic's."""
    return sorted({*Base.metadata.tables, VERSION_TABLE})


def _app_tables_present(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return sorted(set(inspect(connection).get_table_names()) & set(wanted_tables()))



# --- where the restore writes: one class per engine, chosen once --------------------------------------------------


class Staging(Protocol):
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


class Destination(Protocol):
    database: Database
    swapped: bool  # the new data is live (set by the swap as it commits, Ctrl-C held back in between)

    def exists(self) -> bool:
        """Whether the target database exists already (a missing SQLite file is not created to find out)."""
        ...

    def app_tables(self) -> list[str]: ...

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        """Bytes the staging area will take on local file systems."""
        ...

    def staging(self) -> contextlib.AbstractContextManager[Staging]:
        """A new staging area, removed when the block ends unless it was swapped in."""
        ...


def destination_for(database: Database) -> Destination:
    """The target of a restore, by how its engine stages one (``Dialect.restore_staging``)."""
    destinations: dict[str, Callable[[Database], Destination]] = {
        "file": SqliteDestination, "transaction": PostgresqlDestination, "database": MariadbDestination,
    }
    destination = destinations.get(database.dialect.restore_staging)
    if destination is None:
        raise BackupError(f"cannot restore into a {database.backend} database")
    return destination(database)


def _token() -> str:
    return secrets.token_hex(6)


class SqliteDestination:
    """A new file ``.<name>.restore-<token>`` beside the target, whose tables replace the target's in one
    transaction of the target (``sqlite.swap_tables``)."""

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
    def staging(self) -> Iterator[Staging]:
        made = _make_directory(self.path.parent)
        try:
            path = sqlite.staging_path(self.path, _token())
            with leftovers.creating_in(self.path.parent):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # mode as SQLite makes it
                lock = leftovers.hold(path)
            staging = _SqliteStaging(self, path)
            try:
                yield staging
            finally:
                staging.close()
                for leftover in (*sqlite.companions(path), path):
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

    def __init__(self, destination: SqliteDestination, path: Path) -> None:
        self.destination, self.path = destination, path
        self._database = Database(URL.create("sqlite", database=str(path)), poolclass=_null_pool())

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        """The snapshot becomes the staging file."""
        with verified.reader(part) as stream, disk_full_as_error(str(self.path.parent)), \
                self.path.open("r+b") as out:
            while chunk := stream.read(COPY_CHUNK):
                out.write(chunk)
                advance(len(chunk))
        check_snapshot(self.path, verified.manifest)

    def verify(self) -> None:
        with self.connection() as connection:
            dialect = dialects.dialect_of(connection)
            problems = (dialect.integrity_problems(connection) or []) + (
                dialect.foreign_key_problems(connection) or [])
        if problems:
            raise BackupError(f"the restored SQLite file fails its checks: {'; '.join(problems[:3])}")

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        self.close()
        with interrupts_deferred():  # the swap commits inside: Ctrl-C waits until it is recorded
            sqlite.swap_tables(self.path, self.destination.path, tables, timeout=SWAP_TIMEOUT)
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


class PostgresqlDestination:
    """The whole restore is one transaction: a staging schema, moved in at its end
    (``postgresql.swap_schema``). Interrupted, the server rolls all of it back."""

    def __init__(self, database: Database) -> None:
        self.database, self.swapped = database, False

    def exists(self) -> bool:
        return True

    def app_tables(self) -> list[str]:
        return _app_tables_present(self.database)

    def space_needed(self, manifest: Manifest) -> dict[Path, int]:
        return {}  # the server's disk: its own "disk full" error says so

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        with self.database.engine.connect() as connection:
            transaction = connection.begin()
            try:
                live, schema = postgresql.begin_staging(connection, _token())
                yield _PostgresqlStaging(self, connection, transaction, live, schema)
            finally:
                if transaction.is_active:
                    transaction.rollback()


class _PostgresqlStaging:
    takes_sqlite_file = False

    def __init__(self, destination: PostgresqlDestination, connection: Connection, transaction: RootTransaction,
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
        postgresql.swap_schema(self._connection, live=self.live, staging=self.schema, tables=tables)
        with interrupts_deferred():  # Ctrl-C waits until the commit is recorded
            self._transaction.commit()
            self.destination.swapped = True
        advance(1)


class MariadbDestination:
    """A staging database, swapped in with one ``RENAME TABLE`` (``mariadb.rename_tables``), the old
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
    def staging(self) -> Iterator[Staging]:
        token = _token()
        staging, replaced = mariadb.restore_databases(self.live, token)
        with (self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as control,
              leftovers.mariadb_restore_lock(control, staging) as taken):
            if not taken:  # pragma: no cover - the token is random
                raise BackupError(f"another restore uses the staging database {staging}")
            area = _MariadbStaging(self, control, staging, replaced)
            try:
                mariadb.create_staging(control, staging)
                yield area
            finally:
                area.close()
                with contextlib.suppress(Exception):  # else it is a leftover, listed by check, removed by cleanup
                    leftovers.settle_mariadb_restore(control, self.live, token)


class _MariadbStaging(_CommittedStaging):
    takes_sqlite_file = False

    def __init__(self, destination: MariadbDestination, control: Connection, staging: str, replaced: str) -> None:
        self.destination, self._control, self.staging, self.replaced = destination, control, staging, replaced
        self._database = Database(destination.database.url.set(database=staging), poolclass=_null_pool())

    def place_file(self, verified: VerifiedArchive, part: Part, advance: Advance) -> None:
        raise AssertionError("a server takes rows, not a SQLite file")

    def verify(self) -> None:
        return None

    def swap(self, tables: Sequence[str], advance: Advance) -> None:
        self.close()
        live = self.destination.live
        with mariadb.swap_lock(self._control, live):
            with interrupts_deferred():  # Ctrl-C waits until the rename is recorded
                mariadb.rename_tables(self._control, live=live, staging=self.staging,
                                               replaced=self.replaced, tables=tables)
                self.destination.swapped = True
            advance(1)
            mariadb.finish_swap(self._control, live=live, staging=self.staging, replaced=self.replaced)
            advance(1)

    def close(self) -> None:
        self._database.dispose()


__all__ = [
    "SWAP_TIMEOUT", "VERSION_TABLE", "Destination", "MariadbDestination", "PostgresqlDestination",
    "SqliteDestination", "Staging", "destination_for", "wanted_tables",
]

"""What killed backups and restores leave behind: how it is recognised, listed (``check``, ``cleanup``) and removed
(``cleanup --apply``, and the next restore into the same database).

- A backup writes ``.<archive>.partial`` in its backup directory and renames it when complete; on SQLite it also
  makes a scratch folder ``.backup-*`` there for the snapshot.
- A restore into SQLite builds ``.<name>.restore-<token>`` beside the target (with SQLite's ``-journal``,
  ``-wal`` and ``-shm`` beside that); into MariaDB, the databases ``<name>__restore_<token>`` (the new tables)
  and ``<name>__replaced_<token>`` (the old ones, during the swap). A restore into PostgreSQL is one transaction:
  nothing of it survives an interruption.

Each running backup or restore holds a lock on what it made: an ``flock`` on the file or folder (its directory is
locked shared while they are created and exclusive while leftovers are looked for, so nothing is ever seen before
it is locked), or on MariaDB a named lock (``GET_LOCK``) called like the staging database, which the server
releases when the session ends, however it ends. What is locked is *in use* and never touched. Locks are local to
one machine: a backup directory shared over the network is only safe from cleanup on the machine that writes it.

A killed MariaDB restore may already have swapped the new data in without finishing (the audit log's triggers
not yet created again): that is *unfinished*; ``check`` fails on it, and removing it finishes the swap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from db.dialects import mariadb, sqlite
from db.errors import DatabaseError
from db.layer import Database

BACKUP, RESTORE = "backup", "restore"
ABANDONED, UNFINISHED, IN_USE = "abandoned", "unfinished", "in use"
BACKUP_SCRATCH_PREFIX = ".backup-"
_PARTIAL = re.compile(r"\..+\.tar\.partial")


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str  # BACKUP or RESTORE
    name: str  # a path, or a MariaDB database
    state: str  # ABANDONED, UNFINISHED or IN_USE

    @property
    def removable(self) -> bool:
        return self.state != IN_USE

    def describe(self) -> str:
        what = {ABANDONED: "left by a killed", UNFINISHED: "of an interrupted", IN_USE: "in use by a running"}
        detail = {
            ABANDONED: "nothing uses it; cleanup --apply removes it",
            UNFINISHED: "the new data is in place but the swap did not finish; cleanup --apply finishes it",
            IN_USE: "left alone",
        }
        return f"{self.name}: {what[self.state]} {self.kind} ({detail[self.state]})"


# --- locks -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def creating_in(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock shared while making something in it and locking that with ``hold``."""
    with _directory_lock(directory, fcntl.LOCK_SH):
        yield


def hold(path: Path) -> int:
    """Lock ``path`` (a file or a folder) as in use for as long as the returned descriptor is open."""
    handle = os.open(path, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def release(handle: int) -> None:
    os.close(handle)


@contextlib.contextmanager
def _directory_lock(directory: Path, mode: int) -> Iterator[None]:
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, mode)
        yield
    finally:
        os.close(handle)


@contextlib.contextmanager
def _unless_in_use(path: Path) -> Iterator[bool]:
    """True (and ``path`` locked for the block) if no running backup or restore holds it."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


# --- backups ---------------------------------------------------------------------------------------------------


def backup_leftovers(directory: Path) -> list[Leftover]:
    """The ``.partial`` archives and ``.backup-*`` scratch folders in ``directory``."""
    if not directory.is_dir():
        return []
    found = []
    with _directory_lock(directory, fcntl.LOCK_EX):
        for path in _backup_debris(directory):
            with _unless_in_use(path) as free:
                found.append(Leftover(BACKUP, str(path), ABANDONED if free else IN_USE))
    return found


def _backup_debris(directory: Path) -> list[Path]:
    return sorted(entry for entry in directory.iterdir()
                  if (_PARTIAL.fullmatch(entry.name) and entry.is_file())
                  or (entry.name.startswith(BACKUP_SCRATCH_PREFIX) and entry.is_dir() and not entry.is_symlink()))


def _remove_backup_leftover(path: Path) -> bool:
    with _directory_lock(path.parent, fcntl.LOCK_EX), _unless_in_use(path) as free:
        if not free or path not in _backup_debris(path.parent):
            return False
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True


# --- restores --------------------------------------------------------------------------------------------------


def restore_leftovers(database: Database) -> list[Leftover]:
    """What killed or running restores into ``database`` left: staging files (SQLite), staging databases
    (MariaDB); never anything on PostgreSQL."""
    staging = database.dialect.restore_staging
    if staging == "file":
        return _sqlite_leftovers(database)
    if staging == "database":
        with database.engine.connect() as connection:
            return _mariadb_leftovers(connection, str(database.url.database))
    return []  # a restore's own transaction: nothing outlives it


def _sqlite_target(database: Database) -> Path | None:
    name = database.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).expanduser().absolute()


def _sqlite_leftovers(database: Database) -> list[Leftover]:
    target = _sqlite_target(database)
    if target is None or not target.parent.is_dir():
        return []
    found = []
    with _directory_lock(target.parent, fcntl.LOCK_EX):
        for path in sqlite.staging_files(target):
            with _unless_in_use(path) as free:
                found.append(Leftover(RESTORE, str(path), ABANDONED if free else IN_USE))
    return found


def _remove_sqlite_leftover(database: Database, path: Path) -> bool:
    target = _sqlite_target(database)
    if target is None or path not in sqlite.staging_files(target):
        return False
    with _directory_lock(path.parent, fcntl.LOCK_EX), _unless_in_use(path) as free:
        if not free:
            return False
        for companion in sqlite.companions(path):
            companion.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return True


def _mariadb_leftovers(connection: Connection, live: str) -> list[Leftover]:
    found = []
    for token in mariadb.restore_tokens(connection, live):
        staging, replaced = mariadb.restore_databases(live, token)
        if not _mariadb_lock_free(connection, staging):
            state = IN_USE
        elif mariadb.swap_done(connection, live, staging, replaced):
            state = UNFINISHED
        else:
            state = ABANDONED
        found.append(Leftover(RESTORE, staging, state))
    return found


def _mariadb_lock_free(connection: Connection, name: str) -> bool:
    return bool(connection.execute(text("SELECT IS_FREE_LOCK(:name)"), {"name": name}).scalar())


@contextlib.contextmanager
def mariadb_restore_lock(connection: Connection, staging: str) -> Iterator[bool]:
    """Hold the named lock that marks the staging database ``staging`` in use; True if it could be taken."""
    taken = bool(connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": staging}).scalar())
    try:
        yield taken
    finally:
        if taken:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": staging})


def _remove_mariadb_leftover(database: Database, staging: str) -> bool:
    live = str(database.url.database)
    token = staging[-12:]
    if mariadb.restore_databases(live, token)[0] != staging:
        return False
    with (database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
          mariadb_restore_lock(connection, staging) as taken):
        if taken:
            settle_mariadb_restore(connection, live, token)
        return taken


def settle_mariadb_restore(connection: Connection, live: str, token: str) -> None:
    """Finish an interrupted restore whose rename has run, else drop its databases (the old data is intact)."""
    staging, replaced = mariadb.restore_databases(live, token)
    if mariadb.swap_done(connection, live, staging, replaced):
        mariadb.finish_swap(connection, live=live, staging=staging, replaced=replaced)
    else:
        mariadb.drop_restore_databases(connection, staging=staging, replaced=replaced)


# --- removal ---------------------------------------------------------------------------------------------------


def remove(database: Database, leftovers: Iterable[Leftover]) -> list[Leftover]:
    """Remove (or finish) each leftover that is still not in use; return those removed. One that cannot be removed
    (the database or the disk refused) stays, and stays listed."""
    removed = []
    for leftover in leftovers:
        try:
            if leftover.removable and _remove_one(database, leftover):
                removed.append(leftover)
        except (DatabaseError, SQLAlchemyError, OSError):
            continue
    return removed


def _remove_one(database: Database, leftover: Leftover) -> bool:
    if leftover.kind == BACKUP:
        return _remove_backup_leftover(Path(leftover.name))
    staging = database.dialect.restore_staging
    if staging == "file":
        return _remove_sqlite_leftover(database, Path(leftover.name))
    if staging == "database":
        return _remove_mariadb_leftover(database, leftover.name)
    return False


__all__ = [
    "ABANDONED", "BACKUP", "IN_USE", "RESTORE", "UNFINISHED", "Leftover", "backup_leftovers", "creating_in", "hold",
    "mariadb_restore_lock", "release", "remove", "restore_leftovers", "settle_mariadb_restore",
]


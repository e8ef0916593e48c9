"""SQLite: an embedded file, one writer at a time, DDL inside transactions, any value in any column."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Engine, LargeBinary, String, cast, event, exc, func, type_coerce
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import NullType

from db import errors
from db.dialects import audit_sql
from db.dialects.base import RESTORE_TOKEN, Dialect, is_write
from db.dialects.sql import TimeBucket, constant, on_conflict_upsert
from db.dialects.translation import is_disk_full

SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13
# Seconds a writer waits for the file's write lock, as a server transaction waits for a row lock. Five seconds was
# measured too short on a saturated host (16 processes hashing passwords on 2 CPUs: writers waited 10-16 s).
DEFAULT_BUSY_TIMEOUT = 30.0
_CANTOPEN, _IOERR, _NOTADB = 14, 10, 26
_UNDEFINED = re.compile(r"no such (?:table|column): |table \S+ has no column named ")
_MAX_VARIABLES = 32_766  # SQLite 3.32 and later
_TYPE_SUFFIX = "__storage_class"
_STATE = "dblayer_sqlite_transaction"
_PENDING, _READING, _WRITING = "pending", "reading", "writing"


class SQLite(Dialect):
    """SQLite.

    - Connections are not pooled with server settings; ``busy_timeout`` (seconds, default 30) is how long a writer
      waits for the file's write lock.
    - SQLAlchemy, not pysqlite, begins transactions, by their first statement (``install``).
    - Every read transaction already has one snapshot: no isolation level to ask for.
    - Any value goes in any column, so damaged rows are read as storage classes and bytes.
    """

    names = ("sqlite",)
    location_name = "sqlite"
    driver_modules = ("sqlite3",)
    upsert_returns_rows = sqlite3.sqlite_version_info >= (3, 35)  # RETURNING came with 3.35
    pooled = False
    concurrent_writers = False
    typeless_columns = True
    alters_by_copy = True
    embedded = True
    restore_staging = "file"
    datetimes_as_text = True
    snapshot_isolation: ClassVar[str | None] = None

    def connect_args(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"timeout": options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT), "check_same_thread": False}

    def local_file(self, url: URL) -> Path | None:
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database).expanduser()

    def location(self, url: URL) -> str:
        """``sqlite:`` and the file's resolved absolute path."""
        file = self.local_file(url)
        return f"sqlite:{file.resolve() if file is not None else url.database or ''}"

    def location_is_certain(self, url: URL) -> bool:
        file = self.local_file(url)
        return file is None or file.is_absolute()

    def prepare(self, url: URL) -> None:
        file = self.local_file(url)
        if file is not None:
            file.resolve().parent.mkdir(parents=True, exist_ok=True)

    def create_database_if_missing(self, url: URL) -> bool:
        """Nothing to create: the file is made by its first connection (True if it does not exist yet)."""
        file = self.local_file(url)
        return file is not None and not file.exists()

    def install(self, engine: Engine, options: Mapping[str, Any]) -> None:
        install_transactions(engine, busy_timeout=options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        install_full_disk_detection(engine, self.local_file(engine.url))

    def has_written(self, connection: Connection) -> bool:
        return bool(connection.info.get(_STATE, _WRITING) == _WRITING)

    # --- errors ----------------------------------------------------------------------------------------------

    def is_transient(self, original: Any) -> bool:
        code = getattr(original, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
        # Older sqlite3 modules carry no error code; their message is the only clue (it never holds user values).
        return str(original) == "database is locked"

    def is_disk_full(self, original: Any) -> bool:
        if getattr(original, _NO_ROOM, False):
            return True
        code = getattr(original, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF == SQLITE_FULL

    def is_unreachable(self, error: exc.DBAPIError) -> bool:
        code = getattr(error.orig, "sqlite_errorcode", None)
        return bool(error.connection_invalidated) or (isinstance(code, int) and code & 0xFF in (
            _CANTOPEN, _IOERR, _NOTADB))

    def is_missing_value(self, original: Any) -> bool:
        return str(original).startswith("NOT NULL constraint failed")

    def is_foreign_key(self, original: Any) -> bool:
        return str(original) == "FOREIGN KEY constraint failed"

    def is_undefined(self, original: Any) -> bool:
        return _UNDEFINED.match(str(original)) is not None

    def raised_message(self, original: Any) -> str | None:
        return str(original).split("\n")[0].strip()

    def constraint_name(self, error: exc.DBAPIError) -> str | None:
        unique = re.fullmatch(r"UNIQUE constraint failed: ([\w., ]+)", str(error.orig))
        return unique.group(1) if unique else None

    # --- SQL -------------------------------------------------------------------------------------------------

    def upsert_statement(self, table: Table, match: Sequence[str], updates: Mapping[str, Any]) -> Insert:
        return on_conflict_upsert(sqlite.insert(table), match, updates)

    def ascii_insensitive_match(self, column: ColumnElement[Any], op: str, folded: str) -> ColumnElement[bool]:
        """SQLite's lower() folds A-Z only: exactly the rule."""
        lowered = func.lower(column, type_=String)
        return (lowered.contains if op == "contains" else lowered.startswith)(folded, autoescape=True)

    # --- the audit log ---------------------------------------------------------------------------------------

    def audit_rows_per_statement(self, columns: int) -> int:
        """SQLite keeps a statement journal for every statement on a table with triggers (a trigger may abort it half
        way), and every execution of an executemany is a statement: with the seq guard, one row per statement costs
        about 20 µs more per row (2.4x the insert), many rows per statement nothing measurable."""
        return max(1, min(1_000, _MAX_VARIABLES // columns))

    def append_only_ddl(self) -> list[str]:
        return [_append_only_trigger(table, operation)
                for table in audit_sql.APPEND_ONLY_TABLES for operation in ("UPDATE", "DELETE")]

    def drop_append_only_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op}"
                for table in audit_sql.APPEND_ONLY_TABLES for op in ("delete", "update")]

    def seq_guard_ddl(self) -> list[str]:
        return [ddl for _table, _name, ddl in _seq_guards()]

    def drop_seq_guard_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {name}" for name in audit_sql.SEQ_GUARD_TRIGGERS]

    def head_guard_ddl(self) -> list[str]:
        return [_head_guard()]

    def drop_head_guard_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {audit_sql.HEAD_KEPT_TRIGGER}"]

    def missing_audit_triggers(self, connection: Connection) -> list[str]:
        return [ddl.split()[2] for ddl in self.missing_trigger_ddl(connection)]

    def missing_trigger_ddl(self, connection: Connection, applied: Collection[str] | None = None) -> list[str]:
        """DDL for the audit triggers a table copy (a batch migration) dropped; empty when all are there.

        ``applied``: the revisions the database has (a trigger of a revision not applied is not missing); None: all.
        """
        present = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
        tables = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
        return [ddl for revision, table, name, ddl in _audit_triggers()
                if (applied is None or revision in applied) and table in tables and name not in present]

    def allow_audit_purge(self, connection: Connection) -> None:
        """SQLite's DDL is transactional: the trigger is dropped inside the purge's own transaction."""
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_delete")

    def end_audit_purge(self, connection: Connection) -> None:
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_delete")
        connection.exec_driver_sql(_append_only_trigger("audit_entry", "DELETE"))

    def raw_columns(self, table: Table) -> list[ColumnElement[Any]]:
        """SQLite stores any value in any column and the driver fails on text that is not UTF-8, so each column comes
        as its storage class and its bytes (``raw_value`` decodes them)."""
        return [
            expression
            for column in table.columns
            for expression in (
                func.typeof(column).label(column.name + _TYPE_SUFFIX),
                type_coerce(cast(column, LargeBinary), NullType()).label(column.name),
            )
        ]

    def raw_value(self, row: Mapping[Any, Any], name: str) -> Any:
        """ValueError (a UnicodeDecodeError) if SQLite holds text there that is not UTF-8."""
        data, storage_class = row[name], row[name + _TYPE_SUFFIX]
        if storage_class == "null" or data is None:
            return None
        if storage_class == "integer":
            return int(data)
        if storage_class == "real":
            return float(data)
        if storage_class == "text":
            return bytes(data).decode("utf-8")
        return bytes(data)

    # --- maintenance -----------------------------------------------------------------------------------------

    def reclaim_space(self, engine: Engine, tables: Sequence[str]) -> None:
        """``VACUUM`` (the whole file) and ``ANALYZE``, outside any transaction (the raw connection is in autocommit
        mode, see ``install_transactions``)."""
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("VACUUM")
            cursor.execute("ANALYZE")
            cursor.close()
        finally:
            raw.close()

    def integrity_problems(self, connection: Connection) -> list[str]:
        """``PRAGMA integrity_check``'s findings (page-level damage, broken indexes); empty when the file is sound."""
        rows = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def foreign_key_problems(self, connection: Connection) -> list[str]:
        """``PRAGMA foreign_key_check``'s findings, one line per row that names a missing parent row."""
        return [f"{row[0]} row {row[1]} refers to a missing {row[2]} row"
                for row in connection.exec_driver_sql("PRAGMA foreign_key_check")]


@compiles(TimeBucket, "sqlite")
def _time_bucket(element: TimeBucket, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (``db.base.UTCDateTime``): the day is its first ten
    characters, the month its first seven plus '-01', and the week's Monday is ``date(day, 'weekday 0', '-6 days')``
    (the Sunday on or after the day, less six days). Date arithmetic is done on the day alone: SQLite's date
    functions keep milliseconds only, so ``date('2021-03-07 23:59:59.999999')`` is the 8th."""
    column = element.column
    if element.unit == "month":
        bucket = func.substr(column, constant("1"), constant("7"), type_=String).concat(constant("'-01'"))
    else:
        day = func.substr(column, constant("1"), constant("10"), type_=String)
        bucket = day if element.unit == "day" else func.date(day, constant("'weekday 0'"), constant("'-6 days'"))
    return compiler.process(bucket, **kw)


# --- transactions ------------------------------------------------------------------------------------------------


_NO_ROOM = "dblayer_no_room"  # set on a driver error met where the database's file system has no room left
_NEARLY_FULL = 1 << 20


def install_full_disk_detection(engine: Engine, file: Path | None) -> None:
    """SQLite reports a full disk as SQLITE_FULL only while writing pages; a connection that cannot create the WAL or
    shared-memory file beside the database says "disk I/O error" or "unable to open database file". Such an error
    met while the file system holding the database has (almost) no room left is marked as a full disk."""
    if file is None:
        return

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        original = context.original_exception
        code = getattr(original, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (_IOERR, _CANTOPEN) and _no_room_at(file):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(original, _NO_ROOM, True)


def _no_room_at(file: Path) -> bool:
    try:
        return shutil.disk_usage(file.resolve().parent).free < _NEARLY_FULL
    except OSError:
        return False


def install_transactions(engine: Engine, *, busy_timeout: float) -> None:
    """SQLAlchemy, not pysqlite, begins transactions, and reads never take SQLite's write lock.

    pysqlite's own transaction handling defers BEGIN until the first write and breaks SAVEPOINT; SQLAlchemy's
    documented recipe turns it off. On top of it, a transaction begins *by its first statement*
    (``sqlite_begin="AUTO"``, the default):

    - a read begins ``BEGIN DEFERRED``: a snapshot, no lock, so readers never queue behind writers or each other;
    - a write (INSERT, UPDATE, DELETE, DDL), a locking read (``with_for_update``) or a SAVEPOINT begins
      ``BEGIN IMMEDIATE``: the write lock is taken up front, waiting on the busy timeout;
    - the first write of a transaction that has only read so far does not upgrade it in place (which fails at
      once, without waiting, if another connection committed since the snapshot was taken): the read-only
      transaction ends and ``BEGIN IMMEDIATE`` starts a fresh one. Nothing is lost, since nothing was written,
      and from then on the transaction is serialized. Reads made before it saw the latest committed data, as
      under PostgreSQL's READ COMMITTED: a read-then-write reads with ``for_update=True`` what it means to change.

    ``sqlite_begin="DEFERRED"``, ``"IMMEDIATE"`` or ``"EXCLUSIVE"`` begins at once in that mode instead.
    """
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "AUTO")
        if mode == "AUTO":
            connection.info[_STATE] = _PENDING
            return
        connection.exec_driver_sql(f"BEGIN {mode}")
        connection.info[_STATE] = _READING if mode == "DEFERRED" else _WRITING

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        connection: Connection, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool
    ) -> None:
        state = connection.info.get(_STATE)
        if state is None or state == _WRITING:
            return
        writes = is_write(statement, context)
        if state == _READING and not writes:
            return
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        if state == _READING:
            dbapi_connection.execute("COMMIT")  # ends a snapshot that has written nothing
            connection.info[_STATE] = None  # should BEGIN IMMEDIATE fail: no transaction is open
        dbapi_connection.execute("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")
        connection.info[_STATE] = _WRITING if writes else _READING

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Connection) -> None:
        connection.info.pop(_STATE, None)


# --- the audit triggers ------------------------------------------------------------------------------------------


def _append_only_trigger(table: str, operation: str) -> str:
    return (f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{audit_sql.append_only_message(table)}'); END")


def _seq_guards() -> list[tuple[str, str, str]]:
    """(table, trigger, DDL) of the seq guards."""
    guards = [
        ("audit_entry", "audit_entry_above_head", "INSERT", f"NEW.seq <= {audit_sql.HEAD_SEQ}", audit_sql.ABOVE_HEAD),
        ("audit_checkpoint", "audit_checkpoint_proven", "INSERT", audit_sql.CHECKPOINT_UNPROVEN,
         audit_sql.PROVEN_CHECKPOINT),
        ("audit_chain_head", "audit_chain_head_forward", "UPDATE", "NEW.seq < OLD.seq", audit_sql.HEAD_FORWARD),
    ]
    return [
        (table, name, f"CREATE TRIGGER {name} BEFORE {operation} ON {table} WHEN {condition} "
                      f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        for table, name, operation, condition, message in guards
    ]


def _head_guard() -> str:
    return (f"CREATE TRIGGER {audit_sql.HEAD_KEPT_TRIGGER} BEFORE DELETE ON audit_chain_head "
            f"WHEN {audit_sql.HEAD_NOT_REMOVABLE} BEGIN SELECT RAISE(ABORT, '{audit_sql.HEAD_KEPT}'); END")


# The triggers of the audit tables, by the revision that made them: a batch migration (a table copy) drops a
# table's triggers, and the migration environment re-creates those of the revisions applied, no others.
def _audit_triggers() -> list[tuple[str, str, str, str]]:
    """(revision, table, trigger, DDL) of every trigger on the audit tables."""
    append_only = [
        ("0002_audit_log", table, f"{table}_no_{operation.lower()}", _append_only_trigger(table, operation))
        for table in audit_sql.APPEND_ONLY_TABLES
        for operation in ("UPDATE", "DELETE")
    ]
    guards = [("0005_audit_integrity", table, name, ddl) for table, name, ddl in _seq_guards()]
    head_kept = [("0007_audit_head_kept", "audit_chain_head", audit_sql.HEAD_KEPT_TRIGGER, _head_guard())]
    return append_only + guards + head_kept


# --- restore: a staging file and one transaction of the live file ------------------------------------------------
# The new tables are built in a new file ``.<name>.restore-<token>`` beside the target; the swap is one transaction
# of the live file (SQLite's DDL is transactional) that replaces its tables with the new file's.

_COMPANIONS = ("-journal", "-wal", "-shm")
_KINDS = {"table": 0, "index": 1, "trigger": 2}


def staging_path(target: Path, token: str) -> Path:
    """The file a restore into the SQLite file ``target`` builds before swapping it in."""
    return target.with_name(f".{target.name}.restore-{token}")


def staging_files(target: Path) -> list[Path]:
    """The staging files of restores into ``target`` (of running or killed restores), without their companions."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.restore-{RESTORE_TOKEN.pattern}")
    if not target.parent.is_dir():
        return []
    return sorted(entry for entry in target.parent.iterdir() if pattern.fullmatch(entry.name))


def companions(path: Path) -> list[Path]:
    """The journal, WAL and shared-memory files SQLite may keep beside ``path``."""
    return [path.with_name(path.name + suffix) for suffix in _COMPANIONS]


def swap_tables(staging: Path, target: Path, tables: Sequence[str], *, timeout: float) -> None:
    """Put the complete SQLite file ``staging``'s ``tables`` in place of the live file's, in one transaction.

    A missing target is simply the staging file, linked into place (never over a file that appeared meanwhile).
    Otherwise, in one ``BEGIN IMMEDIATE`` transaction of the live file (SQLite's DDL is transactional): drop those
    of ``tables`` it has, create them as ``staging`` has them (with their indexes and triggers), copy their rows,
    check every foreign key, commit. Killed before the commit, SQLite rolls it back; connections that have the
    file open keep working and see the new data from their next transaction. The file is not renamed over: a
    connection with the old file open would go on using its ``-wal`` and ``-shm``, which SQLite finds by name.
    """
    if not target.exists():
        _fsync_path(staging)
        with contextlib.suppress(FileExistsError):
            os.link(staging, target)
            staging.unlink()
            _fsync_path(target.parent)
            return
    live = sqlite3.connect(_uri(target), uri=True, timeout=timeout, isolation_level=None)
    try:
        live.execute("PRAGMA foreign_keys=OFF")  # dropping a parent table must not cascade; checked before commit
        live.execute("ATTACH DATABASE ? AS restored", (_uri(staging),))
        live.execute("BEGIN IMMEDIATE")
        try:
            _replace_tables(live, tables)
            live.execute("COMMIT")
        except BaseException:
            live.execute("ROLLBACK")
            raise
        with contextlib.suppress(sqlite3.Error):
            live.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # give back the WAL the copy grew
    except sqlite3.OperationalError as error:
        if is_disk_full(error):
            raise
        raise errors.BackupError(f"SQLite could not swap the restored tables into {target} "
                                 f"({type(error).__name__}: {error})") from None
    finally:
        live.close()


def _replace_tables(live: sqlite3.Connection, tables: Sequence[str]) -> None:
    wanted = set(tables)
    for (name,) in live.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'").fetchall():
        if name in wanted:
            live.execute(f"DROP TABLE main.{_quote(name)}")
    objects = [row for row in live.execute(
        "SELECT type, name, tbl_name, sql FROM restored.sqlite_master WHERE sql IS NOT NULL").fetchall()
        if row[2] in wanted and row[0] in _KINDS]
    for kind, name, _, sql in sorted(objects, key=lambda row: _KINDS[row[0]]):
        live.execute(sql)  # unqualified: created in main
        if kind == "table":
            quoted = _quote(name)
            live.execute(f"INSERT INTO main.{quoted} SELECT * FROM restored.{quoted}")
    dangling = [row for name in sorted(wanted) for row in live.execute(
        f"PRAGMA main.foreign_key_check({_quote(name)})").fetchall()] if wanted else []
    if dangling:
        raise errors.BackupError(f"{len(dangling)} row(s) of the SQLite file would refer to missing rows after the "
                                 f"swap (first: a {dangling[0][0]} row refers to a missing {dangling[0][2]} row)")


def _uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fsync_path(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)

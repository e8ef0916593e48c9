"""Everything that differs between SQLite, PostgreSQL and MariaDB lives here, and only here.

- engine options and connection set-up for each backend;
- which driver errors are transient (worth retrying) and how driver errors become ``db.errors``;
- the atomic upsert statement, and NULL ordering;
- the calendar buckets and text ordering of the reports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, and_, create_engine, event, exc, func, literal_column, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import exc as orm_exc
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.sql.schema import Table

from db import errors

DEFAULT_SQLITE_PATH = Path(__file__).resolve().parent / "data" / "app.db"

# Drivers this layer is tested with; a bare ``postgresql://`` would otherwise pick psycopg2.
_DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}

SQLITE_BUSY, SQLITE_LOCKED = 5, 6
_PG_TRANSIENT = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_MYSQL_TRANSIENT = {1213, 1205}  # deadlock, lock wait timeout
_MYSQL_STRICT_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


def resolve_url(url: str | URL | None) -> URL:
    """The URL from the argument, else ``DATABASE_URL``, else the SQLite file ``db/data/app.db``."""
    raw = url if url is not None else os.environ.get("DATABASE_URL") or None
    if raw is None:
        return make_url(f"sqlite:///{DEFAULT_SQLITE_PATH}")
    try:
        parsed = make_url(raw)
    except (exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        # The text is not echoed: a malformed URL may still hold a password.
        raise errors.DatabaseUnavailable(
            "not a database URL (expected e.g. postgresql://user:password@host/name or sqlite:///path.db)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if not driver and backend in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    if backend in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def engine_options(url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
    """create_engine keyword arguments for this backend, overridable by the caller's options."""
    base: dict[str, Any] = {"hide_parameters": True}  # bound values (hashes, tokens) never reach logs or errors
    backend = url.get_backend_name()
    if backend == "sqlite":
        base["connect_args"] = {"timeout": options.get("busy_timeout", 5.0), "check_same_thread": False}
    elif "poolclass" not in options:
        base.update(pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800, pool_timeout=30)
    if backend == "postgresql":
        base["connect_args"] = {"options": "-c timezone=UTC", "connect_timeout": 10}
    if backend in ("mysql", "mariadb"):
        base["connect_args"] = {
            "init_command": f"SET SESSION sql_mode='{_MYSQL_STRICT_MODE}', time_zone='+00:00'",
            "connect_timeout": 10,
        }
    own = {key: value for key, value in options.items() if key != "busy_timeout"}
    # connect_args are merged, not replaced: a caller's extra argument must not drop strict mode or UTC.
    connect_args = {**base.get("connect_args", {}), **own.pop("connect_args", {})}
    return base | own | ({"connect_args": connect_args} if connect_args else {})


def prepare_sqlite_file(url: URL) -> None:
    """Create the directory of a SQLite file on demand (never for ``:memory:``)."""
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith(
        "file:"
    ):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def create_database_if_missing(url: URL) -> bool:
    """Create the database ``url`` names on its PostgreSQL or MariaDB server if it is missing; True if it was.

    SQLite needs nothing: the file is created by its first connection (True if it does not exist yet). The
    server is reached through its maintenance database (``postgres``, or ``mysql`` on MariaDB), so the URL's user
    needs the right to connect there and to create databases; an existing database is never touched.
    """
    backend = url.get_backend_name()
    name = url.database
    if backend == "sqlite":
        return bool(name) and name != ":memory:" and not str(name).startswith("file:") and not (
            Path(str(name)).expanduser().exists()
        )
    if not name:
        raise errors.ValidationError("the database URL names no database", field="url")
    admin = create_engine(
        url.set(database="postgres" if backend == "postgresql" else "mysql"),
        isolation_level="AUTOCOMMIT", poolclass=NullPool, hide_parameters=True,
    )
    try:
        with admin.connect() as connection:
            return _create_on_server(connection, backend, name)
    finally:
        admin.dispose()


def _create_on_server(connection: Connection, backend: str, name: str) -> bool:
    if backend == "postgresql":
        found = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
        options = ""
    else:
        found = connection.scalar(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"), {"name": name}
        )
        options = " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
    if found:
        return False
    quoted = connection.dialect.identifier_preparer.quote_identifier(name)
    connection.exec_driver_sql(f"CREATE DATABASE {quoted}{options}")
    return True


def install_sqlite_transactions(engine: Engine, *, busy_timeout: float) -> None:
    """SQLAlchemy, not pysqlite, begins transactions: SAVEPOINT and real isolation then work.

    pysqlite's own transaction handling defers BEGIN until the first write and breaks SAVEPOINT; this is
    SQLAlchemy's documented recipe. A unit of work asks for ``BEGIN IMMEDIATE`` (execution option
    ``sqlite_begin``) so that a read-then-write transaction takes the write lock up front and waits on the busy
    timeout instead of failing with "database is locked" at its first write.
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
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def is_transient(error: BaseException) -> bool:
    """Serialization failures, deadlocks, lock timeouts and a busy SQLite file: a retry may succeed.

    The exception's context is searched too: on MariaDB a deadlock rolls back the whole transaction, so the
    ``ROLLBACK TO SAVEPOINT`` that follows fails (1305) and that error replaces the deadlock.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(error: BaseException) -> bool:
    if isinstance(error, errors.TransientError):
        return True
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    if getattr(original, "sqlstate", None) in _PG_TRANSIENT:
        return True
    if _driver_code(original) in _MYSQL_TRANSIENT:
        return True
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    # Older sqlite3 modules carry no error code; their message is the only clue (it never holds user values).
    return type(original).__module__ == "sqlite3" and str(original) == "database is locked"


def _driver_code(original: Any) -> int | None:
    """PyMySQL's error number, or None for other drivers."""
    args = getattr(original, "args", ())
    if type(original).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        return int(args[0])
    return None


def constraint_name(error: exc.DBAPIError) -> str | None:
    """The violated constraint's name where the driver tells it apart from the values, else None."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return str(name)
    message = str(error.orig)
    # Anchored at the end of the message: the duplicate value that precedes it is the caller's text.
    for pattern in (r"for key '(?:[^'.]*\.)?([^']+)'\W*$", r"CONSTRAINT `([^`]+)` FOREIGN KEY[^`]*`[^`]*`"):
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    sqlite_unique = re.fullmatch(r"UNIQUE constraint failed: ([\w., ]+)", message)
    return sqlite_unique.group(1) if sqlite_unique else None


_MYSQL_BAD_VALUE = {1048, 1264, 1292, 1364, 1366, 1406}  # NULL, out of range, bad value, no default, too long
_MYSQL_UNREACHABLE = {1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013}
_MYSQL_FOREIGN_KEY = {1451, 1452}
_PG_FOREIGN_KEY, _PG_NOT_NULL, _PG_RAISED = "23503", "23502", "P0001"


# Errors a driver raises itself, not as a DBAPI error, for a value it cannot send: a lone surrogate, an integer beyond
# 64 bits (sqlite3), a type it cannot adapt. Translated only when raised inside the driver's call.
_DRIVER_VALUE_ERRORS = (ValueError, TypeError, OverflowError)
_DRIVER_CALLS = frozenset({"do_execute", "do_executemany", "do_execute_no_params"})


def domain_error(error: BaseException, *, entity: str) -> errors.DatabaseError | None:
    """The ``db.errors`` error a failure inside the layer becomes, or None to let it through unchanged.

    Only what the database, its driver or SQLAlchemy refused is translated. A programming error (a wrong call, a
    bug in the layer, a misuse of SQLAlchemy such as an ``ArgumentError``) leaves as it is, so it can be found.
    Raise the result ``from None`` when the failure came from the driver: a driver's message may quote the
    statement's values (PostgreSQL's DETAIL, MariaDB's "Duplicate entry"), which could be a hash or a token.
    """
    if is_disk_full(error):
        return errors.DiskFull(f"{entity}: the disk is full (no room for the database or its files); nothing was "
                               "written: free some space and try again")
    if isinstance(error, exc.SQLAlchemyError):
        return translate(error, entity=entity)
    if isinstance(error, _DRIVER_VALUE_ERRORS) and raised_by_driver(error):
        return errors.ValidationError(f"{entity}: the database driver cannot take a value (wrong type or out of "
                                      "range)", rule="type")
    return None


def raised_by_driver(error: BaseException) -> bool:
    """Whether ``error`` was raised inside the DBAPI driver's execute call (rather than by code around it)."""
    frame = error.__traceback__
    while frame is not None:
        code, module = frame.tb_frame.f_code, str(frame.tb_frame.f_globals.get("__name__", ""))
        if code.co_name in _DRIVER_CALLS and module.startswith("sqlalchemy."):
            return True
        frame = frame.tb_next
    return False


def translate(error: exc.SQLAlchemyError, *, entity: str) -> errors.DatabaseError | None:
    """A driver error, or a value SQLAlchemy refused, as a ``db.errors`` error; None for a programming error.

    Errors are told apart by their codes (SQLSTATE, MariaDB error numbers, SQLite result codes), never by
    searching message text that may contain the caller's values. The message never repeats bound values.
    """
    if isinstance(error, orm_exc.StaleDataError):
        return errors.StaleVersion(entity, "row")
    if isinstance(error, orm_exc.ObjectDeletedError):  # another transaction deleted the row this one had loaded
        return errors.NotFound(entity, "row")
    if isinstance(error, exc.DBAPIError):
        return _translate_driver_error(error, entity)
    if isinstance(error, exc.StatementError) and isinstance(error.orig, (*_DRIVER_VALUE_ERRORS, AttributeError)):
        # A column type's bind processor refused the value (values the layer checks never get here).
        return errors.ValidationError(f"{entity}: a value has the wrong type or is out of range", rule="type")
    if isinstance(error, exc.TimeoutError):
        return errors.TransientError(f"{entity}: no database connection became free within the pool's timeout")
    if isinstance(error, exc.DisconnectionError):
        return errors.DatabaseUnavailable(f"{entity}: the database connection was lost")
    return None


def _translate_driver_error(error: exc.DBAPIError, entity: str) -> errors.DatabaseError:
    original, code = error.orig, _driver_code(error.orig)
    sqlstate = getattr(original, "sqlstate", None)
    if is_transient(error):
        return errors.TransientError(f"{entity}: transient database error ({type(original).__name__})")
    if _is_append_only_refusal(original, code, sqlstate):
        return errors.Conflict(f"{entity}: the audit log is append-only: entries cannot be changed or removed",
                               entity=entity)
    if sqlstate == _PG_NOT_NULL or code == 1048 or str(original).startswith("NOT NULL constraint failed"):
        return errors.ValidationError(f"{entity}: a required field is missing", rule="required")
    if isinstance(error, exc.IntegrityError):
        sqlite_fk = str(original) == "FOREIGN KEY constraint failed"
        foreign = sqlstate == _PG_FOREIGN_KEY or code in _MYSQL_FOREIGN_KEY or sqlite_fk
        return _integrity_conflict(error, entity, foreign=foreign)
    if isinstance(error, exc.DataError) or code in _MYSQL_BAD_VALUE:
        return errors.ValidationError(f"{entity}: a value was refused by the database (out of range or wrong type)")
    if error.connection_invalidated or code in _MYSQL_UNREACHABLE or _is_unreachable(error):
        return errors.DatabaseUnavailable(f"{entity}: the database is unavailable ({type(original).__name__})")
    return errors.DatabaseError(f"{entity}: {type(original).__name__} from the database")


_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"
_MYSQL_DISK_FULL = {1021, 1114}  # ER_DISK_FULL, ER_RECORD_FILE_FULL ("The table ... is full")
_MYSQL_OS_ERROR = {1026, 1030}  # ER_ERROR_ON_WRITE, ER_GET_ERRNO: full when the OS error is 28 (ENOSPC)
_OS_FULL = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(error: BaseException) -> bool:
    """Whether a full disk (or quota) caused ``error``, here or in its context.

    The context is searched: after SQLite's "database or disk is full" the transaction is gone, so the rollback of
    the savepoint that follows fails too, and that error replaces the first.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_disk_full_one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_disk_full_one(error: BaseException) -> bool:
    if isinstance(error, errors.DiskFull):
        return True
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(original, OSError) and original.errno in _OS_FULL:
        return True
    if getattr(original, "sqlstate", None) == _PG_DISK_FULL:
        return True
    code = _driver_code(original)
    if code in _MYSQL_DISK_FULL:
        return True
    if code in _MYSQL_OS_ERROR:  # the OS error number is in the server's own words, after the table name
        return re.search(r"(?:errno|Errcode|error):? 28\b", str(original.args[-1])) is not None  # type: ignore[union-attr]
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    return isinstance(sqlite_code, int) and sqlite_code & 0xFF == _SQLITE_FULL


def _is_append_only_refusal(original: Any, code: int | None, sqlstate: str | None) -> bool:
    if code == 1644:
        return str(original.args[1]) in _REFUSALS
    if sqlstate == _PG_RAISED or type(original).__module__ == "sqlite3":
        return str(original).split("\n")[0].strip() in _REFUSALS
    return False


def _is_unreachable(error: exc.DBAPIError) -> bool:
    sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
    if type(error.orig).__module__.startswith("psycopg"):
        return sqlstate.startswith("08") or (isinstance(error, exc.OperationalError) and not sqlstate)
    code = getattr(error.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (14, 10, 26)  # CANTOPEN, IOERR, NOTADB


def _integrity_conflict(error: exc.IntegrityError, entity: str, *, foreign: bool) -> errors.Conflict:
    name = constraint_name(error)
    kind = "refers to a missing row or is still referred to" if foreign else "already exists"
    where = f" ({name})" if name else ""
    return errors.Conflict(f"{entity}{where}: {kind}", entity=entity, constraint=name)


def upsert_for(
    backend: str, table: Table, values: Mapping[str, Any], match: Sequence[str], updates: Mapping[str, Any]
) -> Insert:
    """``INSERT … ON CONFLICT (match) DO UPDATE`` (SQLite, PostgreSQL) or ``… ON DUPLICATE KEY UPDATE``.

    ``updates`` maps a column to ``EXCLUDED`` (take the value that was to be inserted) or to an expression.
    """
    if backend in ("mysql", "mariadb"):
        # ON DUPLICATE KEY UPDATE fires on a clash with *any* unique key. Each assignment is guarded so that it
        # only applies when the clash is on ``match``; otherwise the row is left as it was and the caller, not
        # finding a row by ``match``, reports a Conflict, as SQLite and PostgreSQL do.
        my_stmt = mysql.insert(table).values(dict(values))
        same_key = and_(*(table.c[key] == my_stmt.inserted[key] for key in match))
        return my_stmt.on_duplicate_key_update(
            {
                key: func.if_(same_key, my_stmt.inserted[key] if _is_excluded(value) else value, table.c[key])
                for key, value in updates.items()
            }
            or {match[0]: table.c[match[0]]}
        )
    dialect_insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    stmt = dialect_insert(table).values(dict(values))
    set_ = {key: stmt.excluded[key] if _is_excluded(value) else value for key, value in updates.items()}
    if not set_:
        return stmt.on_conflict_do_nothing(index_elements=list(match))
    return stmt.on_conflict_do_update(index_elements=list(match), set_=set_)


EXCLUDED = object()


def _is_excluded(value: Any) -> bool:
    return value is EXCLUDED


def nulls_smallest(column: ColumnElement[Any], *, descending: bool, backend: str) -> ColumnElement[Any]:
    """Order so that NULL sorts as the smallest value on every engine.

    SQLite and MariaDB already do so; PostgreSQL treats NULL as the largest, so it is told explicitly, and only
    for nullable columns: ``NULLS FIRST`` on a NOT NULL column would stop PostgreSQL using a plain index. (Index a
    nullable sort column on PostgreSQL with ``postgresql_nulls_first=True`` for the same reason.)
    """
    ordered = column.desc() if descending else column.asc()
    if backend == "postgresql" and getattr(column, "nullable", True):
        return ordered.nulls_last() if descending else ordered.nulls_first()
    return ordered


def ascii_lower(column: ColumnElement[Any], backend: str) -> ColumnElement[str]:
    """``column`` with A-Z lowered and every other character left as it is, the same on every engine.

    This is what ``contains`` and ``startswith`` compare case-insensitively (``query_spec.ascii_fold`` is the same
    in Python). SQLite's lower() folds ASCII only; PostgreSQL's lower() and MariaDB's LOWER() fold the rest of
    Unicode too, each its own way (the dotted İ, ß, the Kelvin sign), so they are given the ASCII mapping itself.
    """
    if backend == "postgresql":
        return func.translate(column, _sql(f"'{string.ascii_uppercase}'"), _sql(f"'{string.ascii_lowercase}'"),
                              type_=String)
    if backend in ("mysql", "mariadb"):  # no translate(): one REPLACE per letter (binary collation: exact)
        folded: ColumnElement[Any] = column
        for upper, lower in zip(string.ascii_uppercase, string.ascii_lowercase, strict=True):
            folded = func.replace(folded, _sql(f"'{upper}'"), _sql(f"'{lower}'"), type_=String)
        return folded
    return func.lower(column, type_=String)


# --- the append-only audit log ---------------------------------------------------------------------------------
# The database refuses UPDATE and DELETE on audit_entry and audit_checkpoint. A retention purge (and nothing else
# in this layer) lifts the DELETE ban on audit_entry for its own transaction: a session setting on PostgreSQL and
# MariaDB; on SQLite, whose DDL is transactional, by dropping and re-creating the trigger inside the purge's
# transaction. The triggers stop accidental and application-level edits; a client that can run arbitrary SQL can
# lift them, and that is what the hash chain is for: it makes such edits evident.

APPEND_ONLY_TABLES = ("audit_entry", "audit_checkpoint")
_APPEND_ONLY = "audit_entry is append-only"
_REFUSALS = frozenset(f"{table} is append-only" for table in APPEND_ONLY_TABLES)


def append_only_ddl(backend: str) -> list[str]:
    if backend == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION dblayer_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_entry' "
            "AND current_setting('dblayer.audit_purge', true) = 'on' THEN RETURN OLD; END IF; "
            "RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$ LANGUAGE plpgsql",
            *(
                statement
                for table in APPEND_ONLY_TABLES
                for statement in (
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_append_only()",
                    f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION dblayer_audit_append_only()",
                )
            ),
        ]
    if backend in ("mysql", "mariadb"):
        return [
            f"CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry FOR EACH ROW {_signal('audit_entry')}",
            "CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry FOR EACH ROW BEGIN "
            f"IF @dblayer_audit_purge IS NULL OR @dblayer_audit_purge <> 1 THEN {_signal('audit_entry')}; END IF; END",
            "CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint FOR EACH ROW "
            f"{_signal('audit_checkpoint')}",
            "CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint FOR EACH ROW "
            f"{_signal('audit_checkpoint')}",
        ]
    return [_sqlite_trigger(table, operation) for table in APPEND_ONLY_TABLES for operation in ("UPDATE", "DELETE")]


def _signal(table: str) -> str:
    return f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{table} is append-only'"


def _sqlite_trigger(table: str, operation: str) -> str:
    return (
        f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    )


def drop_append_only_ddl(backend: str) -> list[str]:
    if backend == "postgresql":
        return [
            *(
                f"DROP TRIGGER IF EXISTS {table}_{kind} ON {table}"
                for table in APPEND_ONLY_TABLES
                for kind in ("no_truncate", "append_only")
            ),
            "DROP FUNCTION IF EXISTS dblayer_audit_append_only()",
        ]
    return [f"DROP TRIGGER IF EXISTS {table}_no_{op}" for table in APPEND_ONLY_TABLES for op in ("delete", "update")]


def missing_sqlite_append_only_triggers(connection: Connection) -> list[str]:
    """DDL for the append-only triggers a SQLite table copy (batch migration) dropped; empty when all are there."""
    present = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    tables = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
    return [
        _sqlite_trigger(table, operation)
        for table in APPEND_ONLY_TABLES
        for operation in ("UPDATE", "DELETE")
        if table in tables and f"{table}_no_{operation.lower()}" not in present
    ]


def allow_audit_purge(connection: Connection) -> None:
    """Let this transaction DELETE from audit_entry, until ``end_audit_purge`` (always call it: try/finally)."""
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.exec_driver_sql("SET LOCAL dblayer.audit_purge = 'on'")
    elif backend in ("mysql", "mariadb"):
        connection.exec_driver_sql("SET @dblayer_audit_purge = 1")
    else:
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_delete")


def end_audit_purge(connection: Connection) -> None:
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.exec_driver_sql("SET LOCAL dblayer.audit_purge = 'off'")
    elif backend in ("mysql", "mariadb"):
        connection.exec_driver_sql("SET @dblayer_audit_purge = NULL")
    else:
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_delete")
        connection.exec_driver_sql(_sqlite_trigger("audit_entry", "DELETE"))


def install_mariadb_reset(engine: Engine) -> None:
    """A pooled MariaDB connection never goes back to the pool with the audit purge switch still on."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        with contextlib.suppress(Exception):
            cursor = dbapi_connection.cursor()
            cursor.execute("SET @dblayer_audit_purge = NULL")
            cursor.close()


# --- maintenance: reclaiming space, SQLite's own integrity checks ---------------------------------------------


def reclaim_space(engine: Engine, tables: Sequence[str]) -> None:
    """After a large removal: give the space back and refresh the planner's statistics of ``tables``.

    SQLite: ``VACUUM`` (the whole file) and ``ANALYZE``, outside any transaction (the raw connection is in
    autocommit mode, see ``install_sqlite_transactions``). PostgreSQL: ``VACUUM (ANALYZE)`` of the tables, in
    autocommit. MariaDB: ``OPTIMIZE TABLE`` (InnoDB rebuilds the table online, then analyses it). ``tables`` are
    names of this layer's own tables, quoted here.
    """
    backend = engine.dialect.name
    if backend == "sqlite":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("VACUUM")
            cursor.execute("ANALYZE")
            cursor.close()
        finally:
            raw.close()
        return
    if not tables:
        return
    quote = engine.dialect.identifier_preparer.quote
    names = ", ".join(quote(table) for table in tables)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if backend == "postgresql":
            connection.exec_driver_sql(f"VACUUM (ANALYZE) {names}")
        else:
            connection.exec_driver_sql(f"OPTIMIZE TABLE {names}").all()


def sqlite_integrity_problems(connection: Connection) -> list[str]:
    """``PRAGMA integrity_check``'s findings (page-level damage, broken indexes); empty when the file is sound."""
    rows = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA integrity_check")]
    return [] if rows == ["ok"] else rows


def sqlite_foreign_key_problems(connection: Connection) -> list[str]:
    """``PRAGMA foreign_key_check``'s findings, one line per row that names a missing parent row."""
    return [
        f"{row[0]} row {row[1]} refers to a missing {row[2]} row"
        for row in connection.exec_driver_sql("PRAGMA foreign_key_check")
    ]


# --- reports: calendar buckets and text ordering ---------------------------------------------------------------
# Everything engine-specific that ``db.repositories.report_repository`` needs. A time bucket is labelled with the
# ISO date ('YYYY-MM-DD') of its first day: the day itself, the Monday of its ISO week, the first of its month,
# all in UTC, computed by the engine from the stored value and never through a session time zone:
#
# - SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (``db.base.UTCDateTime``): the day is its first ten
#   characters, the month its first seven plus '-01', and the week's Monday is ``date(day, 'weekday 0',
#   '-6 days')`` (the Sunday on or after the day, less six days). Date arithmetic is done on the day alone:
#   SQLite's date functions keep milliseconds only, so ``date('2021-03-07 23:59:59.999999')`` is the 8th.
# - PostgreSQL stores timestamptz: ``timezone('UTC', value)`` is its UTC wall time, then ``date_trunc`` (whose
#   'week' is the ISO week) and ``to_char`` (which, unlike a cast to text, ignores DateStyle).
# - MariaDB stores UTC wall time in DATETIME(6): ``DATE_FORMAT``, with ``SUBDATE(value, WEEKDAY(value))`` for the
#   Monday (WEEKDAY counts from Monday = 0).
#
# The constants are written into the SQL rather than bound: the GROUP BY expression is then textually the SELECT
# expression on every engine, which PostgreSQL requires and which lets SQLite evaluate it once per row.

BUCKETS = ("day", "week", "month")
_PG_TRUNC = {"day": "day", "week": "week", "month": "month"}
_MY_FORMAT = {"day": "'%Y-%m-%d'", "week": "'%Y-%m-%d'", "month": "'%Y-%m-01'"}


def time_bucket(column: ColumnElement[Any], unit: str, backend: str) -> ColumnElement[str]:
    """The label of the ``unit`` bucket (day, week or month) that ``column``, a UTC datetime, falls in."""
    if unit not in BUCKETS:
        raise errors.ValidationError(f"bucket must be one of {', '.join(BUCKETS)}", field="bucket", rule="bucket")
    if backend == "postgresql":
        wall: ColumnElement[Any] = func.timezone(_sql("'UTC'"), column)
        start = wall if unit == "day" else func.date_trunc(_sql(f"'{_PG_TRUNC[unit]}'"), wall)
        return func.to_char(start, _sql("'YYYY-MM-DD'"), type_=String)
    if backend in ("mysql", "mariadb"):
        start = func.subdate(column, func.weekday(column)) if unit == "week" else column
        return func.date_format(start, _sql(_MY_FORMAT[unit]), type_=String)
    if unit == "month":
        return func.substr(column, _sql("1"), _sql("7"), type_=String).concat(_sql("'-01'"))
    day = func.substr(column, _sql("1"), _sql("10"), type_=String)
    return day if unit == "day" else func.date(day, _sql("'weekday 0'"), _sql("'-6 days'"), type_=String)


def text_order(column: ColumnElement[Any], backend: str, *, descending: bool = False) -> ColumnElement[Any]:
    """Order text by code point on every engine, NULL first (smallest).

    SQLite and MariaDB (binary collation, ``db.base.TABLE_OPTIONS``) already do; a PostgreSQL database created
    with a linguistic collation would not, so PostgreSQL is told ``COLLATE "C"``.
    """
    ordered: ColumnElement[Any] = column.collate("C") if backend == "postgresql" else column
    return nulls_smallest(ordered, descending=descending, backend=backend)


def _sql(constant: str) -> ColumnElement[Any]:
    """A constant of our own (never caller input) written into the statement."""
    return literal_column(constant)

"""Everything that differs between SQLite, PostgreSQL and MariaDB lives here, and only here.

- engine options and connection set-up for each backend;
- which driver errors are transient (worth retrying) and how driver errors become ``db.errors``;
- the atomic upsert statement, and NULL ordering;
- the calendar buckets and text ordering of the reports.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    LargeBinary,
    String,
    and_,
    cast,
    create_engine,
    event,
    exc,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import exc as orm_exc
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import NullType

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
            connection.info[_SQLITE_STATE] = _PENDING
            return
        connection.exec_driver_sql(f"BEGIN {mode}")
        connection.info[_SQLITE_STATE] = _READING if mode == "DEFERRED" else _WRITING

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        connection: Connection, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool
    ) -> None:
        state = connection.info.get(_SQLITE_STATE)
        if state is None or state == _WRITING:
            return
        writes = is_write(statement, context)
        if state == _READING and not writes:
            return
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        if state == _READING:
            dbapi_connection.execute("COMMIT")  # ends a snapshot that has written nothing
            connection.info[_SQLITE_STATE] = None  # should BEGIN IMMEDIATE fail: no transaction is open
        dbapi_connection.execute("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")
        connection.info[_SQLITE_STATE] = _WRITING if writes else _READING

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Connection) -> None:
        connection.info.pop(_SQLITE_STATE, None)


def install_write_tracking(engine: Engine) -> None:
    """Remember, per connection, whether its transaction has written or locked anything yet (see ``has_written``).

    SQLite's transactions (``install_sqlite_transactions``) know it already.
    """

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.info[_WROTE] = False

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        connection: Connection, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool
    ) -> None:
        if connection.info.get(_WROTE) is False and is_write(statement, context):
            connection.info[_WROTE] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Connection) -> None:
        connection.info.pop(_WROTE, None)


def has_written(connection: Connection) -> bool:
    """Whether the connection's transaction has written or taken a lock: only then can another transaction wait on it.

    Known for the connections of engines set up by ``install_sqlite_transactions`` or ``install_write_tracking``;
    for any other connection the answer is True (assume the worst).
    """
    if connection.dialect.name == "sqlite":
        return bool(connection.info.get(_SQLITE_STATE, _WRITING) == _WRITING)
    return connection.info.get(_WROTE) is not False


_WROTE = "dblayer_wrote"
_SQLITE_STATE = "dblayer_sqlite_transaction"
_PENDING, _READING, _WRITING = "pending", "reading", "writing"
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "SAVEPOINT", "REINDEX")


def is_write(statement: str, context: Any) -> bool:
    """Whether a statement writes or locks: DML, DDL, a SAVEPOINT, or a SELECT … FOR UPDATE."""
    if context is not None:
        if context.isinsert or context.isupdate or context.isdelete:
            return True
        compiled = context.compiled
        if compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None:
            return True
    return statement.lstrip().upper().startswith(_WRITE_VERBS)


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
_MYSQL_CHECK_FAILED = 4025
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
    refusal = _audit_refusal(original, code, sqlstate)
    if refusal is not None:
        return errors.Conflict(f"{entity}: {refusal}", entity=entity)
    if sqlstate == _PG_NOT_NULL or code == 1048 or str(original).startswith("NOT NULL constraint failed"):
        return errors.ValidationError(f"{entity}: a required field is missing", rule="required")
    if isinstance(error, exc.IntegrityError) or code == _MYSQL_CHECK_FAILED:  # PyMySQL: an OperationalError
        sqlite_fk = str(original) == "FOREIGN KEY constraint failed"
        foreign = sqlstate == _PG_FOREIGN_KEY or code in _MYSQL_FOREIGN_KEY or sqlite_fk
        return _integrity_conflict(error, entity, foreign=foreign)
    if isinstance(error, exc.DataError) or code in _MYSQL_BAD_VALUE:
        return errors.ValidationError(f"{entity}: a value was refused by the database (out of range or wrong type)")
    if error.connection_invalidated or code in _MYSQL_UNREACHABLE or _is_unreachable(error):
        return errors.DatabaseUnavailable(f"{entity}: the database is unavailable ({type(original).__name__})")
    if sqlstate in _PG_UNDEFINED or code in _MYSQL_UNDEFINED or _SQLITE_UNDEFINED.match(str(original)):
        return errors.SchemaMissing(
            f"{entity}: a table or column the statement needs does not exist: the schema is missing or older than "
            "the code (run python -m db create, or python -m db migrate upgrade; a table of your own needs a migration)"
        )
    return errors.DatabaseError(f"{entity}: {type(original).__name__} from the database")


_PG_UNDEFINED = {"42P01", "42703"}  # undefined table, undefined column
_MYSQL_UNDEFINED = {1146, 1054}  # no such table, unknown column
_SQLITE_UNDEFINED = re.compile(r"no such (?:table|column): |table \S+ has no column named ")


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


def _audit_refusal(original: Any, code: int | None, sqlstate: str | None) -> str | None:
    """What an audit trigger's refusal means, or None if the error is not one (see ``_REFUSALS``)."""
    if code == 1644:
        return _REFUSALS.get(str(original.args[1]))
    if sqlstate == _PG_RAISED or type(original).__module__ == "sqlite3":
        return _REFUSALS.get(str(original).split("\n")[0].strip())
    return None


def _is_unreachable(error: exc.DBAPIError) -> bool:
    sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
    if type(error.orig).__module__.startswith("psycopg"):
        return sqlstate.startswith("08") or (isinstance(error, exc.OperationalError) and not sqlstate)
    code = getattr(error.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (14, 10, 26)  # CANTOPEN, IOERR, NOTADB


def _integrity_conflict(error: exc.DBAPIError, entity: str, *, foreign: bool) -> errors.Conflict:
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


def ascii_insensitive_match(column: ColumnElement[Any], op: str, folded: str, backend: str) -> ColumnElement[bool]:
    """``column`` contains (``op`` "contains") or starts with (``op`` "startswith") ``folded``, already A-Z-lowered,
    ignoring the case of A-Z only, the same on every engine (``query_spec.ascii_fold`` is the same in Python); ``%``
    and ``_`` in it are literal.

    Each engine's own lower() folds a different set of letters: SQLite's A-Z only; PostgreSQL's and MariaDB's all of
    Unicode, each its own way (the dotted I, sharp s, the Kelvin sign). PostgreSQL lowers under the "C" collation,
    which folds A-Z only. MariaDB has no ASCII-only lowering, so there the test is a regular expression in which each
    letter is a class (``[Aa]``) and every other ASCII character is escaped; the binary collation makes the rest
    exact.
    """
    if backend in ("mysql", "mariadb"):
        pattern = ("^" if op == "startswith" else "") + "".join(_regex_char(char) for char in folded)
        return column.regexp_match(pattern)
    lowered = func.lower(column.collate("C") if backend == "postgresql" else column, type_=String)
    matches = lowered.contains if op == "contains" else lowered.startswith
    return matches(folded, autoescape=True)


def _regex_char(char: str) -> str:
    if "a" <= char <= "z":
        return f"[{char.upper()}{char}]"
    if char.isascii() and not char.isalnum():
        return "\\" + char
    return char


# --- the append-only audit log ---------------------------------------------------------------------------------
# The database refuses UPDATE and DELETE on audit_entry and audit_checkpoint. A retention purge (and nothing else
# in this layer) lifts the DELETE ban on audit_entry for its own transaction: a session setting on PostgreSQL and
# MariaDB; on SQLite, whose DDL is transactional, by dropping and re-creating the trigger inside the purge's
# transaction. The triggers stop accidental and application-level edits; a client that can run arbitrary SQL can
# lift them, and that is what the hash chain is for: it makes such edits evident.
#
# Since revision 0005 the database also refuses impossible positions (``seq_guard_ddl``): CHECK constraints keep
# every seq positive and the head row single, and triggers refuse an entry at or below the chain head, a
# checkpoint that no purge can have made (above the head, not above the last checkpoint, or with entries still at
# or below it), and a chain head that moves back. Someone with INSERT rights alone can then add entries only above
# the head (and no checkpoint at all), where the verification names them and an append that meets one raises
# ``AuditTampered``. An absent head row lets rows in: a restore clears the genesis head, then loads the backup's
# rows, the head last.

APPEND_ONLY_TABLES = ("audit_entry", "audit_checkpoint")
_ABOVE_HEAD = "audit_entry seq must be above the chain head"
_PROVEN_CHECKPOINT = "audit_checkpoint must follow a purge"
_HEAD_FORWARD = "audit_chain_head cannot move back"
_REFUSALS = {
    **{f"{table} is append-only": "the audit log is append-only: entries cannot be changed or removed"
       for table in APPEND_ONLY_TABLES},
    _ABOVE_HEAD: "an audit entry's seq must be above the chain head: the log only grows at its head",
    _PROVEN_CHECKPOINT: "an audit checkpoint is recorded by a purge only, after the entries it covers are removed",
    _HEAD_FORWARD: "the audit chain head never moves back",
}
_HEAD_SEQ = "(SELECT seq FROM audit_chain_head WHERE id = 1)"
# A checkpoint no purge can have made: above the head or not above the last checkpoint (while there is a head: a
# restore loads the head last), or with entries still at or below it.
_CHECKPOINT_UNPROVEN = (
    "EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND (NEW.up_to_seq > seq OR NEW.up_to_seq <= "
    "(SELECT coalesce(max(up_to_seq), 0) FROM audit_checkpoint))) "
    "OR EXISTS (SELECT 1 FROM audit_entry WHERE seq <= NEW.up_to_seq)"
)


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
    return _raise_mariadb(f"{table} is append-only")


def _raise_mariadb(message: str) -> str:
    return f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"


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


def seq_guard_ddl(backend: str) -> list[str]:
    """The triggers of revision 0005 that refuse impossible positions in the chain (see the section's comment).

    Row triggers on every engine. (A PostgreSQL statement trigger over a transition table was measured slower: the
    driver's executemany runs one statement per row, and each builds its transition table.)
    """
    if backend == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION dblayer_audit_above_head() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.seq <= {_HEAD_SEQ} THEN RAISE EXCEPTION USING MESSAGE = '{_ABOVE_HEAD}'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_above_head()",
            "CREATE OR REPLACE FUNCTION dblayer_audit_checkpoint_proven() RETURNS trigger AS $$ BEGIN "
            f"IF {_CHECKPOINT_UNPROVEN} THEN RAISE EXCEPTION USING MESSAGE = '{_PROVEN_CHECKPOINT}'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_checkpoint_proven()",
            "CREATE OR REPLACE FUNCTION dblayer_audit_head_forward() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.seq < OLD.seq THEN RAISE EXCEPTION USING MESSAGE = '{_HEAD_FORWARD}'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_head_forward()",
        ]
    if backend in ("mysql", "mariadb"):
        return [
            "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry FOR EACH ROW BEGIN "
            f"IF NEW.seq <= {_HEAD_SEQ} THEN {_raise_mariadb(_ABOVE_HEAD)}; END IF; END",
            "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint FOR EACH ROW BEGIN "
            f"IF {_CHECKPOINT_UNPROVEN} THEN {_raise_mariadb(_PROVEN_CHECKPOINT)}; END IF; END",
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head FOR EACH ROW BEGIN "
            f"IF NEW.seq < OLD.seq THEN {_raise_mariadb(_HEAD_FORWARD)}; END IF; END",
        ]
    return [ddl for _table, _name, ddl in _sqlite_seq_guards()]


def _sqlite_seq_guards() -> list[tuple[str, str, str]]:
    """(table, trigger, DDL) of the SQLite seq guards."""
    guards = [
        ("audit_entry", "audit_entry_above_head", "INSERT", f"NEW.seq <= {_HEAD_SEQ}", _ABOVE_HEAD),
        ("audit_checkpoint", "audit_checkpoint_proven", "INSERT", _CHECKPOINT_UNPROVEN, _PROVEN_CHECKPOINT),
        ("audit_chain_head", "audit_chain_head_forward", "UPDATE", "NEW.seq < OLD.seq", _HEAD_FORWARD),
    ]
    return [
        (table, name, f"CREATE TRIGGER {name} BEFORE {operation} ON {table} WHEN {condition} "
                      f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        for table, name, operation, condition, message in guards
    ]


def drop_seq_guard_ddl(backend: str) -> list[str]:
    if backend == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS audit_entry_above_head ON audit_entry",
            "DROP TRIGGER IF EXISTS audit_checkpoint_proven ON audit_checkpoint",
            "DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head",
            "DROP FUNCTION IF EXISTS dblayer_audit_above_head()",
            "DROP FUNCTION IF EXISTS dblayer_audit_checkpoint_proven()",
            "DROP FUNCTION IF EXISTS dblayer_audit_head_forward()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SEQ_GUARD_TRIGGERS]


# The SQLite triggers of the audit tables, by the revision that made them: a batch migration (a table copy) drops a
# table's triggers, and the migration environment re-creates those of the revisions applied, no others.
def _sqlite_audit_triggers() -> list[tuple[str, str, str, str]]:
    """(revision, table, trigger, DDL) of every SQLite trigger on the audit tables."""
    append_only = [
        ("0002_audit_log", table, f"{table}_no_{operation.lower()}", _sqlite_trigger(table, operation))
        for table in APPEND_ONLY_TABLES
        for operation in ("UPDATE", "DELETE")
    ]
    guards = [("0005_audit_integrity", table, name, ddl) for table, name, ddl in _sqlite_seq_guards()]
    return append_only + guards


def missing_sqlite_append_only_triggers(connection: Connection, applied: Collection[str] | None = None) -> list[str]:
    """DDL for the audit triggers a SQLite table copy (batch migration) dropped; empty when all are there.

    ``applied``: the revisions the database has (a trigger of a revision not applied is not missing); None: all.
    """
    present = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    tables = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
    return [
        ddl
        for revision, table, name, ddl in _sqlite_audit_triggers()
        if (applied is None or revision in applied) and table in tables and name not in present
    ]


SEQ_GUARD_TRIGGERS = ("audit_entry_above_head", "audit_checkpoint_proven", "audit_chain_head_forward")
_SERVER_AUDIT_TRIGGERS = {
    "postgresql": frozenset(SEQ_GUARD_TRIGGERS)
    | {f"{table}_{kind}" for table in APPEND_ONLY_TABLES for kind in ("append_only", "no_truncate")},
    "mysql": frozenset(SEQ_GUARD_TRIGGERS)
    | {f"{table}_no_{op}" for table in APPEND_ONLY_TABLES for op in ("update", "delete")},
}


def missing_audit_triggers(connection: Connection) -> list[str]:
    """The audit triggers (append-only and seq guards) a database at the head revision lacks, by name: someone
    dropped them, or on SQLite a table copy did."""
    backend = "mysql" if connection.dialect.name in ("mysql", "mariadb") else connection.dialect.name
    if backend == "sqlite":
        return [ddl.split()[2] for ddl in missing_sqlite_append_only_triggers(connection)]
    if backend == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND pg_table_is_visible(tgrelid)"
    else:
        query = "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
    present = set(connection.exec_driver_sql(query).scalars())
    return sorted(_SERVER_AUDIT_TRIGGERS[backend] - present)


def is_audit_seq_clash(error: exc.DBAPIError) -> bool:
    """An INSERT into audit_entry met a row that already holds one of its seqs (the unique key on seq)."""
    return isinstance(error, exc.IntegrityError) and constraint_name(error) in ("uq_audit_entry_seq", "audit_entry.seq")


def audit_rows_per_statement(backend: str, columns: int) -> int:
    """How many audit entries one INSERT statement of a bulk append carries.

    SQLite keeps a statement journal for every statement on a table with triggers (a trigger may abort it half
    way), and every execution of an executemany is a statement: with the seq guard, one row per statement costs
    about 20 µs more per row (2.4x the insert), many rows per statement nothing measurable. The servers take the
    driver's executemany (pipelined by psycopg, rewritten to multi-row by PyMySQL).
    """
    if backend != "sqlite":
        return 1
    return max(1, min(1_000, _SQLITE_MAX_VARIABLES // columns))


_SQLITE_MAX_VARIABLES = 32_766  # SQLite 3.32 and later


def snapshot_isolation(backend: str) -> str | None:
    """The isolation level that gives one transaction a single snapshot of the audit log (verification reads the
    whole log and must not see a purge half-way); None where every read transaction already has one (SQLite)."""
    return None if backend == "sqlite" else "REPEATABLE READ"


_SQLITE_TYPE_SUFFIX = "__storage_class"


def raw_columns(table: Table, backend: str) -> list[ColumnElement[Any]]:
    """``table``'s columns selected as stored, with no type processing, for reading rows that may be damaged.

    SQLite stores any value in any column and the driver fails on text that is not UTF-8, so there each column
    comes as its storage class and its bytes (``raw_value`` decodes them); the servers check types and encodings on
    write, so their values come as the driver reads them.
    """
    if backend != "sqlite":
        return [type_coerce(column, NullType()).label(column.name) for column in table.columns]
    return [
        expression
        for column in table.columns
        for expression in (
            func.typeof(column).label(column.name + _SQLITE_TYPE_SUFFIX),
            type_coerce(cast(column, LargeBinary), NullType()).label(column.name),
        )
    ]


def raw_value(row: Mapping[Any, Any], name: str, backend: str) -> Any:
    """Column ``name`` of a row read with ``raw_columns``, as the driver would give it: ValueError (a
    UnicodeDecodeError) if SQLite holds text there that is not UTF-8."""
    if backend != "sqlite":
        return row[name]
    data, storage_class = row[name], row[name + _SQLITE_TYPE_SUFFIX]
    if storage_class == "null" or data is None:
        return None
    if storage_class == "integer":
        return int(data)
    if storage_class == "real":
        return float(data)
    if storage_class == "text":
        return bytes(data).decode("utf-8")
    return bytes(data)


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


# --- restore: a staging area and one atomic swap ---------------------------------------------------------------
# ``db.scripts.restore_db`` builds the restored database next to the live one and swaps it in at the end, so that
# an interrupted restore leaves either the old data or the new, never a mix. What differs per engine:
#
# - SQLite: the new tables are built in a new file ``.<name>.restore-<token>`` beside the target; the swap is one
#   transaction of the live file (SQLite's DDL is transactional) that replaces its tables with the new file's
#   (``swap_sqlite_tables``).
# - PostgreSQL: DDL is transactional, so the whole restore is one transaction: the new tables are built in a
#   staging schema ``dblayer_restore_<token>``, then the old tables are dropped and the new ones moved into the
#   live schema (``swap_postgresql_schema``). Killed anywhere, the server rolls everything back: nothing is left.
# - MariaDB: DDL is not transactional, and InnoDB foreign-key names are unique per database, so the new tables
#   are built in a staging database and the old ones leave for a second database; one ``RENAME TABLE`` statement
#   (atomic) moves both sets (``rename_mariadb_tables``). A table with triggers cannot change databases: the staging
#   tables' triggers (the audit log's append-only ones) are saved in the staging database, dropped, and created
#   again on the live tables after the rename; an old table with triggers is renamed inside the live database and
#   dropped after the rename. Killed between the rename and the end, the new data is in place and
#   ``finish_mariadb_swap`` (run by the next restore or by cleanup) completes it.

RESTORE_TOKEN = re.compile(r"[0-9a-f]{12}")
_SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


def sqlite_staging_path(target: Path, token: str) -> Path:
    """The file a restore into the SQLite file ``target`` builds before swapping it in."""
    return target.with_name(f".{target.name}.restore-{token}")


def sqlite_staging_files(target: Path) -> list[Path]:
    """The staging files of restores into ``target`` (of running or killed restores), without their companions."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.restore-{RESTORE_TOKEN.pattern}")
    if not target.parent.is_dir():
        return []
    return sorted(entry for entry in target.parent.iterdir() if pattern.fullmatch(entry.name))


def sqlite_companions(path: Path) -> list[Path]:
    """The journal, WAL and shared-memory files SQLite may keep beside ``path``."""
    return [path.with_name(path.name + suffix) for suffix in _SQLITE_COMPANIONS]


def swap_sqlite_tables(staging: Path, target: Path, tables: Sequence[str], *, timeout: float) -> None:
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
    live = sqlite3.connect(_sqlite_uri(target), uri=True, timeout=timeout, isolation_level=None)
    try:
        live.execute("PRAGMA foreign_keys=OFF")  # dropping a parent table must not cascade; checked before commit
        live.execute("ATTACH DATABASE ? AS restored", (_sqlite_uri(staging),))
        live.execute("BEGIN IMMEDIATE")
        try:
            _replace_sqlite_tables(live, tables)
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


_SQLITE_KINDS = {"table": 0, "index": 1, "trigger": 2}


def _replace_sqlite_tables(live: sqlite3.Connection, tables: Sequence[str]) -> None:
    wanted = set(tables)
    for (name,) in live.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'").fetchall():
        if name in wanted:
            live.execute(f"DROP TABLE main.{_sqlite_quote(name)}")
    objects = [row for row in live.execute(
        "SELECT type, name, tbl_name, sql FROM restored.sqlite_master WHERE sql IS NOT NULL").fetchall()
        if row[2] in wanted and row[0] in _SQLITE_KINDS]
    for kind, name, _, sql in sorted(objects, key=lambda row: _SQLITE_KINDS[row[0]]):
        live.execute(sql)  # unqualified: created in main
        if kind == "table":
            quoted = _sqlite_quote(name)
            live.execute(f"INSERT INTO main.{quoted} SELECT * FROM restored.{quoted}")
    dangling = [row for name in sorted(wanted) for row in live.execute(
        f"PRAGMA main.foreign_key_check({_sqlite_quote(name)})").fetchall()] if wanted else []
    if dangling:
        raise errors.BackupError(f"{len(dangling)} row(s) of the SQLite file would refer to missing rows after the "
                                 f"swap (first: a {dangling[0][0]} row refers to a missing {dangling[0][2]} row)")


def _sqlite_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}"


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fsync_path(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def begin_postgresql_staging(connection: Connection, token: str) -> tuple[str, str]:
    """In the restore's transaction: create the staging schema and make it the only one unqualified names
    reach (the migrations then build the new schema there). Returns (live schema, staging schema)."""
    live = str(connection.exec_driver_sql("SELECT current_schema()").scalar())
    staging = f"dblayer_restore_{token}"
    quoted = connection.dialect.identifier_preparer.quote_identifier(staging)
    connection.exec_driver_sql(f"CREATE SCHEMA {quoted}")
    connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted}")
    return live, staging


def swap_postgresql_schema(connection: Connection, *, live: str, staging: str, tables: Sequence[str]) -> None:
    """Still in the restore's transaction: drop those of ``tables`` that ``live`` has, move every table and function
    of ``staging`` into ``live`` (a function of the same signature there is replaced), drop ``staging``.

    Nothing is dropped with CASCADE: anything else that depends on the old tables (a foreign key from a table of
    another application) makes the swap fail, and the transaction rolls back. Concurrent swaps into one database
    wait for each other (an advisory lock)."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                       {"key": f"dblayer restore {live}"})
    connection.exec_driver_sql(f"SET LOCAL search_path TO {quote(live)}")
    present = set(connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                                     {"schema": live}).scalars().all())
    replaced = [name for name in tables if name in present]
    if replaced:
        connection.exec_driver_sql(f"DROP TABLE {', '.join(f'{quote(live)}.{quote(name)}' for name in replaced)}")
    functions = connection.execute(text(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema"), {"schema": staging}).all()
    for name, arguments in functions:
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {quote(live)}.{quote(name)}({arguments})")
        connection.exec_driver_sql(f"ALTER FUNCTION {quote(staging)}.{quote(name)}({arguments}) "
                                   f"SET SCHEMA {quote(live)}")
    tables = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                                {"schema": staging}).scalars().all()
    for name in tables:
        connection.exec_driver_sql(f"ALTER TABLE {quote(staging)}.{quote(name)} SET SCHEMA {quote(live)}")
    connection.exec_driver_sql(f"DROP SCHEMA {quote(staging)}")


MARIADB_RESTORE_STATE = "dblayer_restore_state"  # in the staging database: phase and the saved triggers
_MARIADB_REPLACED_PREFIX = "_dblayer_replaced_"  # an old table with triggers, renamed inside the live database
_SWAPPING = "swapping"


def mariadb_restore_databases(live: str, token: str) -> tuple[str, str]:
    """The staging database (the new tables) and the database the old tables go to, for a restore into ``live``."""
    base = live if len(live) <= 40 else f"dblayer_{hashlib.sha256(live.encode()).hexdigest()[:16]}"
    return f"{base}__restore_{token}", f"{base}__replaced_{token}"


def mariadb_restore_tokens(connection: Connection, live: str) -> list[str]:
    """The tokens of restores into ``live`` whose databases exist (running, killed or unfinished restores)."""
    staging, replaced = mariadb_restore_databases(live, "0" * 12)
    prefixes = (staging[:-12], replaced[:-12])
    names = connection.execute(text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")).scalars().all()
    return sorted({name[-12:] for name in names
                   if name.startswith(prefixes) and RESTORE_TOKEN.fullmatch(name[-12:])
                   and name[:-12] in prefixes})


def create_mariadb_staging(connection: Connection, staging: str) -> None:
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.exec_driver_sql(f"CREATE DATABASE {quote(staging)} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
    connection.exec_driver_sql(f"CREATE TABLE {quote(staging)}.{MARIADB_RESTORE_STATE} "
                               "(name VARCHAR(64) PRIMARY KEY, value LONGTEXT NOT NULL) ENGINE=InnoDB")


def mariadb_swap_started(connection: Connection, staging: str) -> bool:
    """Whether a restore into the live database reached its swap (its rename may or may not have run)."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    if not _mariadb_has_database(connection, staging):
        return False
    try:
        phase = connection.exec_driver_sql(
            f"SELECT value FROM {quote(staging)}.{MARIADB_RESTORE_STATE} WHERE name = 'phase'").scalar()
    except exc.DBAPIError:  # killed before its state table was made
        return False
    return phase == _SWAPPING


def mariadb_swap_done(connection: Connection, live: str, staging: str, replaced: str) -> bool:
    """Whether the rename of a restore into ``live`` has run (then the new data is live; only the end is left)."""
    return mariadb_swap_started(connection, staging) and (
        bool(_mariadb_tables(connection, replaced)) or bool(_mariadb_replaced_tables(connection, live))
        or not [name for name in _mariadb_tables(connection, staging) if name != MARIADB_RESTORE_STATE])


@contextlib.contextmanager
def mariadb_swap_lock(connection: Connection, live: str, *, timeout: int = 60) -> Iterator[None]:
    """Swaps into one database, one at a time (a named lock, released however the session ends)."""
    name = f"dblayer_swap_{hashlib.sha256(live.encode()).hexdigest()[:32]}"
    if connection.execute(text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout}).scalar() != 1:
        raise errors.BackupError(f"another restore into {live} is swapping its data in: try again")
    try:
        yield
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def rename_mariadb_tables(connection: Connection, *, live: str, staging: str, replaced: str,
                          tables: Sequence[str]) -> None:
    """Swap the staging database's tables in for those of ``tables`` that ``live`` has, in one ``RENAME TABLE``
    (then ``finish_mariadb_swap``). ``connection`` is on the live database, in autocommit mode."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    # The saved triggers and the phase in one statement: all of them or none (InnoDB).
    state = [(f"trigger {number:04d}", ddl) for number, ddl in enumerate(_mariadb_trigger_ddl(connection, staging))]
    state.append(("phase", _SWAPPING))
    values = ", ".join(f"(:name{index}, :value{index})" for index in range(len(state)))
    connection.execute(
        text(f"INSERT INTO {quote(staging)}.{MARIADB_RESTORE_STATE} (name, value) VALUES {values} "
             "ON DUPLICATE KEY UPDATE value = VALUES(value)"),
        {key: value for index, (name, ddl) in enumerate(state)
         for key, value in ((f"name{index}", name), (f"value{index}", ddl))})
    for name in connection.execute(text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                        "WHERE TRIGGER_SCHEMA = :schema"), {"schema": staging}).scalars().all():
        connection.exec_driver_sql(f"DROP TRIGGER {quote(staging)}.{quote(name)}")
    connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {quote(replaced)} CHARACTER SET utf8mb4")
    present = set(_mariadb_tables(connection, live))
    tables = [name for name in tables if name in present]
    with_triggers = set(connection.execute(text(
        "SELECT DISTINCT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :schema"),
        {"schema": live}).scalars().all())
    moves = [f"{quote(live)}.{quote(name)} TO " + (f"{quote(live)}.{quote(_MARIADB_REPLACED_PREFIX + name)}"
                                                   if name in with_triggers else f"{quote(replaced)}.{quote(name)}")
             for name in tables]
    moves += [f"{quote(staging)}.{quote(name)} TO {quote(live)}.{quote(name)}"
              for name in _mariadb_tables(connection, staging) if name != MARIADB_RESTORE_STATE]
    connection.exec_driver_sql(f"RENAME TABLE {', '.join(moves)}")


def finish_mariadb_swap(connection: Connection, *, live: str, staging: str, replaced: str) -> None:
    """After the rename (idempotent): drop the old tables, give the new ones their saved triggers, drop the staging
    and replaced databases."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    for name in _mariadb_replaced_tables(connection, live):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(live)}.{quote(name)}")
    present = set(connection.execute(text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                          "WHERE TRIGGER_SCHEMA = :schema"), {"schema": live}).scalars().all())
    state = f"{quote(staging)}.{MARIADB_RESTORE_STATE}"
    saved: Sequence[str] = []
    if _mariadb_has_database(connection, staging):
        saved = connection.execute(text(f"SELECT value FROM {state} WHERE name LIKE :saved ORDER BY name"),
                                   {"saved": "trigger %"}).scalars().all()
    tables = set(_mariadb_tables(connection, live))
    for ddl in saved:
        trigger = json.loads(ddl)
        if trigger["name"] not in present and trigger["table"] in tables:
            _mariadb_execute_as_is(connection, _mariadb_create_trigger(trigger, quote))
    drop_mariadb_restore_databases(connection, staging=staging, replaced=replaced)


def drop_mariadb_restore_databases(connection: Connection, *, staging: str, replaced: str) -> None:
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(replaced)}")
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(staging)}")


def _mariadb_trigger_ddl(connection: Connection, schema: str) -> list[str]:
    """The triggers of ``schema`` as JSON documents ``_mariadb_create_trigger`` turns back into DDL, in their
    order of execution."""
    rows = connection.execute(text(
        "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_STATEMENT "
        "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :schema "
        "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER"), {"schema": schema}).all()
    return [json.dumps({"name": name, "timing": timing, "event": event, "table": table, "body": body})
            for name, timing, event, table, body in rows]


def _mariadb_create_trigger(trigger: Mapping[str, str], quote: Any) -> str:
    return (f"CREATE TRIGGER {quote(trigger['name'])} {trigger['timing']} {trigger['event']} "
            f"ON {quote(trigger['table'])} FOR EACH ROW {trigger['body']}")


def _mariadb_execute_as_is(connection: Connection, statement: str) -> None:
    """Run a statement through the driver with no parameters at all: PyMySQL would read a ``%`` in a trigger's
    body as a parameter marker."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _mariadb_has_database(connection: Connection, name: str) -> bool:
    return connection.execute(text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                              {"name": name}).scalar() is not None


def _mariadb_tables(connection: Connection, schema: str) -> list[str]:
    return list(connection.execute(text("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s "
                                        "ORDER BY TABLE_NAME"), {"s": schema}).scalars().all())


def _mariadb_replaced_tables(connection: Connection, live: str) -> list[str]:
    return [name for name in _mariadb_tables(connection, live) if name.startswith(_MARIADB_REPLACED_PREFIX)]



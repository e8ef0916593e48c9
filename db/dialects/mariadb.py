"""MariaDB (PyMySQL): strict mode and UTC per session, utf8mb4 with a binary collation, DDL outside transactions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import Engine, String, and_, event, exc, func, text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Insert, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import TypeEngine

from db import errors
from db.dialects import audit_sql
from db.dialects.base import EXCLUDED, RESTORE_TOKEN, Dialect
from db.dialects.sql import TimeBucket, constant

_STRICT_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_TRANSIENT = {1213, 1205}  # deadlock, lock wait timeout
_BAD_VALUE = {1048, 1264, 1292, 1364, 1366, 1406}  # NULL, out of range, bad value, no default, too long
_UNREACHABLE = {1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013}
_FOREIGN_KEY = {1451, 1452}
_NOT_NULL = 1048
_CHECK_FAILED = 4025
_SIGNAL = 1644
_UNDEFINED = {1146, 1054}  # no such table, unknown column
_DISK_FULL = {1021, 1114}  # ER_DISK_FULL, ER_RECORD_FILE_FULL ("The table ... is full")
_OS_ERROR = {1026, 1030}  # ER_ERROR_ON_WRITE, ER_GET_ERRNO: full when the OS error is 28 (ENOSPC)
_WEEK_FORMAT = {"day": "'%Y-%m-%d'", "week": "'%Y-%m-%d'", "month": "'%Y-%m-01'"}


class MariaDB(Dialect):
    """MariaDB (and MySQL).

    - Every session runs in strict mode and UTC; a bare ``mariadb://`` or ``mysql://`` URL uses PyMySQL, utf8mb4.
    - DDL is not transactional, and ``ON DUPLICATE KEY UPDATE`` fires on a clash with *any* unique key.
    - An audit purge is allowed by a user variable, which survives the transaction: it is reset when a connection
      goes back to the pool.
    """

    names = ("mysql", "mariadb")
    transactional_ddl = False
    restore_staging = "database"
    default_driver = "pymysql"
    upsert_returns_rows = False  # INSERT … RETURNING exists (10.5), but not with ON DUPLICATE KEY UPDATE
    upsert_skips_other_key_clashes = True  # the guarded assignments of ``upsert_statement``
    driver_modules = ("pymysql",)
    maintenance_database = "mysql"
    location_name = "mariadb"
    default_port = 3306
    create_database_options: ClassVar[str] = " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"

    def datetime_type(self) -> TypeEngine[Any]:
        """DATETIME(6): microseconds, no zone (UTC wall time)."""
        return mysql.DATETIME(fsp=6)

    def normalized_url(self, url: URL) -> URL:
        url = super().normalized_url(url)
        return url if "charset" in url.query else url.update_query_dict({"charset": "utf8mb4"})

    def connect_args(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"init_command": f"SET SESSION sql_mode='{_STRICT_MODE}', time_zone='+00:00'", "connect_timeout": 10}

    def install(self, engine: Engine, options: Mapping[str, Any]) -> None:
        super().install(engine, options)
        install_purge_reset(engine)

    @contextlib.contextmanager
    def bounded_lock_wait(self, connection: Connection, seconds: float) -> Iterator[None]:
        """The wait is a session setting (whole seconds): set for the block, then the server's default again."""
        connection.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {max(1, round(seconds))}")
        try:
            yield
        finally:
            connection.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = DEFAULT")

    def database_exists(self, connection: Connection, name: str) -> bool:
        return bool(connection.scalar(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"), {"name": name}))

    # --- errors ----------------------------------------------------------------------------------------------

    def is_transient(self, original: Any) -> bool:
        return error_code(original) in _TRANSIENT

    def is_disk_full(self, original: Any) -> bool:
        code = error_code(original)
        if code in _DISK_FULL:
            return True
        if code in _OS_ERROR:  # the OS error number is in the server's own words, after the table name
            return re.search(r"(?:errno|Errcode|error):? 28\b", str(original.args[-1])) is not None
        return False

    def is_unreachable(self, error: exc.DBAPIError) -> bool:
        return bool(error.connection_invalidated) or error_code(error.orig) in _UNREACHABLE

    def is_missing_value(self, original: Any) -> bool:
        return error_code(original) == _NOT_NULL

    def is_foreign_key(self, original: Any) -> bool:
        return error_code(original) in _FOREIGN_KEY

    def is_refused_value(self, original: Any) -> bool:
        return error_code(original) in _BAD_VALUE

    def is_integrity(self, error: exc.DBAPIError) -> bool:
        """A CHECK constraint's refusal comes as an OperationalError from PyMySQL."""
        return isinstance(error, exc.IntegrityError) or error_code(error.orig) == _CHECK_FAILED

    def is_undefined(self, original: Any) -> bool:
        return error_code(original) in _UNDEFINED

    def raised_message(self, original: Any) -> str | None:
        return str(original.args[1]) if error_code(original) == _SIGNAL else None

    def constraint_name(self, error: exc.DBAPIError) -> str | None:
        message = str(error.orig)
        # Anchored at the end of the message: the duplicate value that precedes it is the caller's text.
        for pattern in (r"for key '(?:[^'.]*\.)?([^']+)'\W*$", r"CONSTRAINT `([^`]+)` FOREIGN KEY[^`]*`[^`]*`"):
            match = re.search(pattern, message)
            if match:
                return match.group(1)
        return None

    # --- SQL -------------------------------------------------------------------------------------------------

    def upsert_statement(self, table: Table, match: Sequence[str], updates: Mapping[str, Any]) -> Insert:
        """Each assignment is guarded so that it only applies when the clash is on ``match``; otherwise the row is
        left as it was and the caller, not finding a row by ``match``, reports a Conflict, as elsewhere."""
        stmt = mysql.insert(table)
        same_key = and_(*(table.c[key] == stmt.inserted[key] for key in match))
        return stmt.on_duplicate_key_update(
            {key: func.if_(same_key, stmt.inserted[key] if value is EXCLUDED else value, table.c[key])
             for key, value in updates.items()}
            or {match[0]: table.c[match[0]]}
        )

    def latest_committed(self, statement: Select[Any]) -> Select[Any]:
        """REPEATABLE READ (the default) reads the snapshot; a shared locking read reads the latest committed rows."""
        return statement.with_for_update(read=True)

    def ascii_insensitive_match(self, column: ColumnElement[Any], op: str, folded: str) -> ColumnElement[bool]:
        """MariaDB has no ASCII-only lowering: a regular expression in which each letter is a class (``[Aa]``) and
        every other ASCII character is escaped; the binary collation makes the rest exact."""
        pattern = ("^" if op == "startswith" else "") + "".join(_regex_char(char) for char in folded)
        return column.regexp_match(pattern)

    # --- the audit log ---------------------------------------------------------------------------------------

    triggers_query = "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
    audit_triggers = frozenset(audit_sql.SEQ_GUARD_TRIGGERS) | {
        f"{table}_no_{op}" for table in audit_sql.APPEND_ONLY_TABLES for op in ("update", "delete")} | {
        audit_sql.HEAD_KEPT_TRIGGER}

    def append_only_ddl(self) -> list[str]:
        return [
            f"CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry FOR EACH ROW {_refuse('audit_entry')}",
            "CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry FOR EACH ROW BEGIN "
            f"IF @dblayer_audit_purge IS NULL OR @dblayer_audit_purge <> 1 THEN {_refuse('audit_entry')}; END IF; END",
            "CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint FOR EACH ROW "
            f"{_refuse('audit_checkpoint')}",
            "CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint FOR EACH ROW "
            f"{_refuse('audit_checkpoint')}",
        ]

    def drop_append_only_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op}"
                for table in audit_sql.APPEND_ONLY_TABLES for op in ("delete", "update")]

    def seq_guard_ddl(self) -> list[str]:
        return [
            "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry FOR EACH ROW BEGIN "
            f"IF NEW.seq <= {audit_sql.HEAD_SEQ} THEN {_signal(audit_sql.ABOVE_HEAD)}; END IF; END",
            "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint FOR EACH ROW BEGIN "
            f"IF {audit_sql.CHECKPOINT_UNPROVEN} THEN {_signal(audit_sql.PROVEN_CHECKPOINT)}; END IF; END",
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head FOR EACH ROW BEGIN "
            f"IF NEW.seq < OLD.seq THEN {_signal(audit_sql.HEAD_FORWARD)}; END IF; END",
        ]

    def drop_seq_guard_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {name}" for name in audit_sql.SEQ_GUARD_TRIGGERS]

    def head_guard_ddl(self) -> list[str]:
        """DELETE only (TRUNCATE fires no trigger on MariaDB; it needs the DROP privilege, which drops triggers too)."""
        return [
            f"CREATE TRIGGER {audit_sql.HEAD_KEPT_TRIGGER} BEFORE DELETE ON audit_chain_head FOR EACH ROW BEGIN "
            f"IF {audit_sql.HEAD_NOT_REMOVABLE} THEN {_signal(audit_sql.HEAD_KEPT)}; END IF; END",
        ]

    def drop_head_guard_ddl(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {audit_sql.HEAD_KEPT_TRIGGER}"]

    def allow_audit_purge(self, connection: Connection) -> None:
        connection.exec_driver_sql("SET @dblayer_audit_purge = 1")

    def end_audit_purge(self, connection: Connection) -> None:
        connection.exec_driver_sql("SET @dblayer_audit_purge = NULL")

    # --- maintenance -----------------------------------------------------------------------------------------

    def reclaim_tables(self, connection: Connection, names: str) -> None:
        """InnoDB rebuilds the table online, then analyses it."""
        connection.exec_driver_sql(f"OPTIMIZE TABLE {names}").all()


def error_code(original: Any) -> int | None:
    """PyMySQL's error number, or None for other drivers."""
    args = getattr(original, "args", ())
    if type(original).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        return int(args[0])
    return None


def _regex_char(char: str) -> str:
    if "a" <= char <= "z":
        return f"[{char.upper()}{char}]"
    if char.isascii() and not char.isalnum():
        return "\\" + char
    return char


def _refuse(table: str) -> str:
    return _signal(audit_sql.append_only_message(table))


def _signal(message: str) -> str:
    return f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"


def install_purge_reset(engine: Engine) -> None:
    """A pooled connection never goes back to the pool with the audit purge switch still on."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        with contextlib.suppress(Exception):
            cursor = dbapi_connection.cursor()
            cursor.execute("SET @dblayer_audit_purge = NULL")
            cursor.close()


@compiles(TimeBucket, "mysql")
@compiles(TimeBucket, "mariadb")
def _time_bucket(element: TimeBucket, compiler: SQLCompiler, **kw: Any) -> str:
    """UTC wall time in DATETIME(6): ``DATE_FORMAT``, with ``SUBDATE(value, WEEKDAY(value))`` for the Monday
    (WEEKDAY counts from Monday = 0)."""
    column = element.column
    start = func.subdate(column, func.weekday(column)) if element.unit == "week" else column
    return compiler.process(func.date_format(start, constant(_WEEK_FORMAT[element.unit]), type_=String), **kw)


# --- restore: a staging database and one RENAME TABLE ------------------------------------------------------------
# DDL is not transactional, and InnoDB foreign-key names are unique per database, so the new tables are built in a
# staging database and the old ones leave for a second database; one ``RENAME TABLE`` statement (atomic) moves both
# sets (``rename_tables``). A table with triggers cannot change databases: the staging tables' triggers (the audit
# log's append-only ones) are saved in the staging database, dropped, and created again on the live tables after
# the rename; an old table with triggers is renamed inside the live database and dropped after the rename. Killed
# between the rename and the end, the new data is in place and ``finish_swap`` (run by the next restore or by
# cleanup) completes it.

RESTORE_STATE = "dblayer_restore_state"  # in the staging database: phase and the saved triggers
_REPLACED_PREFIX = "_dblayer_replaced_"  # an old table with triggers, renamed inside the live database
_SWAPPING = "swapping"


def restore_databases(live: str, token: str) -> tuple[str, str]:
    """The staging database (the new tables) and the database the old tables go to, for a restore into ``live``."""
    base = live if len(live) <= 40 else f"dblayer_{hashlib.sha256(live.encode()).hexdigest()[:16]}"
    return f"{base}__restore_{token}", f"{base}__replaced_{token}"


def restore_tokens(connection: Connection, live: str) -> list[str]:
    """The tokens of restores into ``live`` whose databases exist (running, killed or unfinished restores)."""
    staging, replaced = restore_databases(live, "0" * 12)
    prefixes = (staging[:-12], replaced[:-12])
    names = connection.execute(text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")).scalars().all()
    return sorted({name[-12:] for name in names
                   if name.startswith(prefixes) and RESTORE_TOKEN.fullmatch(name[-12:])
                   and name[:-12] in prefixes})


def create_staging(connection: Connection, staging: str) -> None:
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.exec_driver_sql(f"CREATE DATABASE {quote(staging)} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
    connection.exec_driver_sql(f"CREATE TABLE {quote(staging)}.{RESTORE_STATE} "
                               "(name VARCHAR(64) PRIMARY KEY, value LONGTEXT NOT NULL) ENGINE=InnoDB")


def swap_started(connection: Connection, staging: str) -> bool:
    """Whether a restore into the live database reached its swap (its rename may or may not have run)."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    if not _has_database(connection, staging):
        return False
    try:
        phase = connection.exec_driver_sql(
            f"SELECT value FROM {quote(staging)}.{RESTORE_STATE} WHERE name = 'phase'").scalar()
    except exc.DBAPIError:  # killed before its state table was made
        return False
    return phase == _SWAPPING


def swap_done(connection: Connection, live: str, staging: str, replaced: str) -> bool:
    """Whether the rename of a restore into ``live`` has run (then the new data is live; only the end is left)."""
    return swap_started(connection, staging) and (
        bool(_tables(connection, replaced)) or bool(_replaced_tables(connection, live))
        or not [name for name in _tables(connection, staging) if name != RESTORE_STATE])


@contextlib.contextmanager
def swap_lock(connection: Connection, live: str, *, timeout: int = 60) -> Iterator[None]:
    """Swaps into one database, one at a time (a named lock, released however the session ends)."""
    name = f"dblayer_swap_{hashlib.sha256(live.encode()).hexdigest()[:32]}"
    if connection.execute(text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout}).scalar() != 1:
        raise errors.BackupError(f"another restore into {live} is swapping its data in: try again")
    try:
        yield
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def rename_tables(connection: Connection, *, live: str, staging: str, replaced: str,
                          tables: Sequence[str]) -> None:
    """Swap the staging database's tables in for those of ``tables`` that ``live`` has, in one ``RENAME TABLE``
    (then ``finish_swap``). ``connection`` is on the live database, in autocommit mode."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    # The saved triggers and the phase in one statement: all of them or none (InnoDB).
    state = [(f"trigger {number:04d}", ddl) for number, ddl in enumerate(_trigger_ddl(connection, staging))]
    state.append(("phase", _SWAPPING))
    values = ", ".join(f"(:name{index}, :value{index})" for index in range(len(state)))
    connection.execute(
        text(f"INSERT INTO {quote(staging)}.{RESTORE_STATE} (name, value) VALUES {values} "
             "ON DUPLICATE KEY UPDATE value = VALUES(value)"),
        {key: value for index, (name, ddl) in enumerate(state)
         for key, value in ((f"name{index}", name), (f"value{index}", ddl))})
    for name in connection.execute(text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                        "WHERE TRIGGER_SCHEMA = :schema"), {"schema": staging}).scalars().all():
        connection.exec_driver_sql(f"DROP TRIGGER {quote(staging)}.{quote(name)}")
    connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {quote(replaced)} CHARACTER SET utf8mb4")
    present = set(_tables(connection, live))
    tables = [name for name in tables if name in present]
    with_triggers = set(connection.execute(text(
        "SELECT DISTINCT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :schema"),
        {"schema": live}).scalars().all())
    moves = [f"{quote(live)}.{quote(name)} TO " + (f"{quote(live)}.{quote(_REPLACED_PREFIX + name)}"
                                                   if name in with_triggers else f"{quote(replaced)}.{quote(name)}")
             for name in tables]
    moves += [f"{quote(staging)}.{quote(name)} TO {quote(live)}.{quote(name)}"
              for name in _tables(connection, staging) if name != RESTORE_STATE]
    connection.exec_driver_sql(f"RENAME TABLE {', '.join(moves)}")


def finish_swap(connection: Connection, *, live: str, staging: str, replaced: str) -> None:
    """After the rename (idempotent): drop the old tables, give the new ones their saved triggers, drop the staging
    and replaced databases."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    for name in _replaced_tables(connection, live):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(live)}.{quote(name)}")
    present = set(connection.execute(text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                          "WHERE TRIGGER_SCHEMA = :schema"), {"schema": live}).scalars().all())
    state = f"{quote(staging)}.{RESTORE_STATE}"
    saved: Sequence[str] = []
    if _has_database(connection, staging):
        saved = connection.execute(text(f"SELECT value FROM {state} WHERE name LIKE :saved ORDER BY name"),
                                   {"saved": "trigger %"}).scalars().all()
    tables = set(_tables(connection, live))
    for ddl in saved:
        trigger = json.loads(ddl)
        if trigger["name"] not in present and trigger["table"] in tables:
            _execute_as_is(connection, _create_trigger(trigger, quote))
    drop_restore_databases(connection, staging=staging, replaced=replaced)


def drop_restore_databases(connection: Connection, *, staging: str, replaced: str) -> None:
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(replaced)}")
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(staging)}")


def _trigger_ddl(connection: Connection, schema: str) -> list[str]:
    """The triggers of ``schema`` as JSON documents ``_create_trigger`` turns back into DDL, in their
    order of execution."""
    rows = connection.execute(text(
        "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_STATEMENT "
        "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :schema "
        "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER"), {"schema": schema}).all()
    return [json.dumps({"name": name, "timing": timing, "event": event, "table": table, "body": body})
            for name, timing, event, table, body in rows]


def _create_trigger(trigger: Mapping[str, str], quote: Any) -> str:
    return (f"CREATE TRIGGER {quote(trigger['name'])} {trigger['timing']} {trigger['event']} "
            f"ON {quote(trigger['table'])} FOR EACH ROW {trigger['body']}")


def _execute_as_is(connection: Connection, statement: str) -> None:
    """Run a statement through the driver with no parameters at all: PyMySQL would read a ``%`` in a trigger's
    body as a parameter marker."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _has_database(connection: Connection, name: str) -> bool:
    return connection.execute(text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                              {"name": name}).scalar() is not None


def _tables(connection: Connection, schema: str) -> list[str]:
    return list(connection.execute(text("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s "
                                        "ORDER BY TABLE_NAME"), {"s": schema}).scalars().all())


def _replaced_tables(connection: Connection, live: str) -> list[str]:
    return [name for name in _tables(connection, live) if name.startswith(_REPLACED_PREFIX)]



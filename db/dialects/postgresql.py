"""PostgreSQL (psycopg 3): transactional DDL, SQLSTATE codes, timestamptz, linguistic collations by default."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import String, exc, func, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import Table

from db.dialects import audit_sql
from db.dialects.base import Dialect
from db.dialects.sql import TimeBucket, constant, on_conflict_upsert

_TRANSIENT = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_DISK_FULL = "53100"
_NOT_NULL, _FOREIGN_KEY, _RAISED = "23502", "23503", "P0001"
_UNDEFINED = {"42P01", "42703"}  # undefined table, undefined column


class PostgreSQL(Dialect):
    """PostgreSQL.

    - Sessions run in UTC; a bare ``postgresql://`` URL uses psycopg 3.
    - NULL sorts as the largest value, and a database may be created with a linguistic collation: ordering is told
      ``NULLS FIRST``/``LAST`` and ``COLLATE "C"`` where it must be the same as on the other engines.
    """

    names = ("postgresql", "postgres")
    aliases: ClassVar[Mapping[str, str]] = {"postgres": "postgresql"}
    default_driver = "psycopg"
    driver_modules = ("psycopg",)
    maintenance_database = "postgres"
    failed_statement_aborts_transaction = True  # "current transaction is aborted" until ROLLBACK (TO SAVEPOINT)
    location_name = "postgresql"
    default_port = 5432
    stores_aware_datetimes = True
    restore_staging = "transaction"

    def connect_args(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"options": "-c timezone=UTC", "connect_timeout": 10}

    @contextlib.contextmanager
    def consistent_snapshot(self, connection: Connection) -> Iterator[Connection]:
        snapshot = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with snapshot.begin():
            yield snapshot

    @contextlib.contextmanager
    def bounded_lock_wait(self, connection: Connection, seconds: float) -> Iterator[None]:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'")  # this transaction only
        yield

    def database_exists(self, connection: Connection, name: str) -> bool:
        return bool(connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}))

    # --- errors ----------------------------------------------------------------------------------------------

    def is_transient(self, original: Any) -> bool:
        return getattr(original, "sqlstate", None) in _TRANSIENT

    def is_disk_full(self, original: Any) -> bool:
        return getattr(original, "sqlstate", None) == _DISK_FULL

    def is_unreachable(self, error: exc.DBAPIError) -> bool:
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        return bool(error.connection_invalidated) or sqlstate.startswith("08") or (
            isinstance(error, exc.OperationalError) and not sqlstate)

    def is_missing_value(self, original: Any) -> bool:
        return getattr(original, "sqlstate", None) == _NOT_NULL

    def is_foreign_key(self, original: Any) -> bool:
        return getattr(original, "sqlstate", None) == _FOREIGN_KEY

    def is_undefined(self, original: Any) -> bool:
        return getattr(original, "sqlstate", None) in _UNDEFINED

    def raised_message(self, original: Any) -> str | None:
        if getattr(original, "sqlstate", None) != _RAISED:
            return None
        return str(original).split("\n")[0].strip()

    def constraint_name(self, error: exc.DBAPIError) -> str | None:
        name = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        return str(name) if name else None

    # --- SQL -------------------------------------------------------------------------------------------------

    def upsert_statement(self, table: Table, match: Sequence[str], updates: Mapping[str, Any]) -> Insert:
        return on_conflict_upsert(postgresql.insert(table), match, updates)

    def nulls_smallest(self, column: ColumnElement[Any], *, descending: bool) -> ColumnElement[Any]:
        """PostgreSQL treats NULL as the largest, so it is told explicitly, and only for nullable columns: ``NULLS
        FIRST`` on a NOT NULL column would stop PostgreSQL using a plain index. (Index a nullable sort column with
        ``postgresql_nulls_first=True`` for the same reason.)"""
        ordered = column.desc() if descending else column.asc()
        if getattr(column, "nullable", True):
            return ordered.nulls_last() if descending else ordered.nulls_first()
        return ordered

    def text_order(self, column: ColumnElement[Any], *, descending: bool = False) -> ColumnElement[Any]:
        """A database created with a linguistic collation would not order by code point: ``COLLATE "C"``."""
        return self.nulls_smallest(column.collate("C"), descending=descending)

    def ascii_insensitive_match(self, column: ColumnElement[Any], op: str, folded: str) -> ColumnElement[bool]:
        """lower() under the "C" collation folds A-Z only (and is about 5x cheaper than translate())."""
        lowered = func.lower(column.collate("C"), type_=String)
        return (lowered.contains if op == "contains" else lowered.startswith)(folded, autoescape=True)

    # --- the audit log ---------------------------------------------------------------------------------------

    triggers_query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND pg_table_is_visible(tgrelid)"
    audit_triggers = frozenset(audit_sql.SEQ_GUARD_TRIGGERS) | {
        f"{table}_{kind}" for table in audit_sql.APPEND_ONLY_TABLES for kind in ("append_only", "no_truncate")} | {
        audit_sql.HEAD_KEPT_TRIGGER, "audit_chain_head_no_truncate"}

    def append_only_ddl(self) -> list[str]:
        return [
            "CREATE OR REPLACE FUNCTION dblayer_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_entry' "
            "AND current_setting('dblayer.audit_purge', true) = 'on' THEN RETURN OLD; END IF; "
            "RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$ LANGUAGE plpgsql",
            *(
                statement
                for table in audit_sql.APPEND_ONLY_TABLES
                for statement in (
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_append_only()",
                    f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION dblayer_audit_append_only()",
                )
            ),
        ]

    def drop_append_only_ddl(self) -> list[str]:
        return [
            *(f"DROP TRIGGER IF EXISTS {table}_{kind} ON {table}"
              for table in audit_sql.APPEND_ONLY_TABLES for kind in ("no_truncate", "append_only")),
            "DROP FUNCTION IF EXISTS dblayer_audit_append_only()",
        ]

    def seq_guard_ddl(self) -> list[str]:
        """Row triggers. (A statement trigger over a transition table was measured slower: the driver's executemany
        runs one statement per row, and each builds its transition table.)"""
        return [
            "CREATE OR REPLACE FUNCTION dblayer_audit_above_head() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.seq <= {audit_sql.HEAD_SEQ} THEN RAISE EXCEPTION USING MESSAGE = '{audit_sql.ABOVE_HEAD}'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_above_head()",
            "CREATE OR REPLACE FUNCTION dblayer_audit_checkpoint_proven() RETURNS trigger AS $$ BEGIN "
            f"IF {audit_sql.CHECKPOINT_UNPROVEN} THEN RAISE EXCEPTION USING MESSAGE = "
            f"'{audit_sql.PROVEN_CHECKPOINT}'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_checkpoint_proven()",
            "CREATE OR REPLACE FUNCTION dblayer_audit_head_forward() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.seq < OLD.seq THEN RAISE EXCEPTION USING MESSAGE = '{audit_sql.HEAD_FORWARD}'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_head_forward()",
        ]

    def drop_seq_guard_ddl(self) -> list[str]:
        return [
            "DROP TRIGGER IF EXISTS audit_entry_above_head ON audit_entry",
            "DROP TRIGGER IF EXISTS audit_checkpoint_proven ON audit_checkpoint",
            "DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head",
            "DROP FUNCTION IF EXISTS dblayer_audit_above_head()",
            "DROP FUNCTION IF EXISTS dblayer_audit_checkpoint_proven()",
            "DROP FUNCTION IF EXISTS dblayer_audit_head_forward()",
        ]

    def head_guard_ddl(self) -> list[str]:
        """TRUNCATE (a statement trigger: no OLD row) is always refused; DELETE unless the head is the genesis head of
        an empty log."""
        refuse = f"RAISE EXCEPTION USING MESSAGE = '{audit_sql.HEAD_KEPT}'"
        return [
            "CREATE OR REPLACE FUNCTION dblayer_audit_head_kept() RETURNS trigger AS $$ BEGIN "
            f"IF TG_OP = 'TRUNCATE' THEN {refuse}; END IF; "
            f"IF {audit_sql.HEAD_NOT_REMOVABLE} THEN {refuse}; END IF; RETURN OLD; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER {audit_sql.HEAD_KEPT_TRIGGER} BEFORE DELETE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION dblayer_audit_head_kept()",
            "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION dblayer_audit_head_kept()",
        ]

    def drop_head_guard_ddl(self) -> list[str]:
        return [
            "DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head",
            f"DROP TRIGGER IF EXISTS {audit_sql.HEAD_KEPT_TRIGGER} ON audit_chain_head",
            "DROP FUNCTION IF EXISTS dblayer_audit_head_kept()",
        ]

    def allow_audit_purge(self, connection: Connection) -> None:
        connection.exec_driver_sql("SET LOCAL dblayer.audit_purge = 'on'")

    def end_audit_purge(self, connection: Connection) -> None:
        connection.exec_driver_sql("SET LOCAL dblayer.audit_purge = 'off'")

    # --- maintenance -----------------------------------------------------------------------------------------

    def reclaim_tables(self, connection: Connection, names: str) -> None:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {names}")


@compiles(TimeBucket, "postgresql")
def _time_bucket(element: TimeBucket, compiler: SQLCompiler, **kw: Any) -> str:
    """timestamptz: ``timezone('UTC', value)`` is its UTC wall time, then ``date_trunc`` (whose 'week' is the ISO
    week) and ``to_char`` (which, unlike a cast to text, ignores DateStyle)."""
    wall: ColumnElement[Any] = func.timezone(constant("'UTC'"), element.column)
    start = wall if element.unit == "day" else func.date_trunc(constant(f"'{element.unit}'"), wall)
    return compiler.process(func.to_char(start, constant("'YYYY-MM-DD'"), type_=String), **kw)


# --- restore: a staging schema in the restore's one transaction ---------------------------------------------------
# DDL is transactional, so the whole restore is one transaction: the new tables are built in a staging schema
# ``dblayer_restore_<token>``, then the old tables are dropped and the new ones moved into the live schema. Killed
# anywhere, the server rolls everything back: nothing is left.


def begin_staging(connection: Connection, token: str) -> tuple[str, str]:
    """In the restore's transaction: create the staging schema and make it the only one unqualified names
    reach (the migrations then build the new schema there). Returns (live schema, staging schema)."""
    live = str(connection.exec_driver_sql("SELECT current_schema()").scalar())
    staging = f"dblayer_restore_{token}"
    quoted = connection.dialect.identifier_preparer.quote_identifier(staging)
    connection.exec_driver_sql(f"CREATE SCHEMA {quoted}")
    connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted}")
    return live, staging


def swap_schema(connection: Connection, *, live: str, staging: str, tables: Sequence[str]) -> None:
    """Still in the restore's transaction: drop those of ``tables`` that ``live`` has, move every table and function
    of ``staging`` into ``live`` (a function of the same signature there is replaced), drop ``staging``.

    Nothing is dropped with CASCADE: anything else that depends on the old tables (a foreign key from a table of
    another application) makes the swap fail, and the transaction rolls back. Concurrent swaps into one database
    wait for each other (an advisory lock)."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"dblayer restore {live}"})
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
    moved = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                               {"schema": staging}).scalars().all()
    for name in moved:
        connection.exec_driver_sql(f"ALTER TABLE {quote(staging)}.{quote(name)} SET SCHEMA {quote(live)}")
    connection.exec_driver_sql(f"DROP SCHEMA {quote(staging)}")

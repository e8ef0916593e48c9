"""The interface every engine implements, and the registry that picks one implementation per engine.

The shape is Alembic's ``ddl/impl.py``: one class per engine, registered under the SQLAlchemy dialect names it
serves and found once per engine (``dialect_of(engine)``, ``dialect_named("postgresql")``). The rest of the layer
calls methods of that object and never asks which engine it is on. A method here is the behaviour of an engine
with no quirk in that respect; an engine's class overrides what differs and says why in its docstring.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, create_engine, event, exc, type_coerce
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.interfaces import Dialect as SQLAlchemyDialect
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import ColumnElement, Insert, Select
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import NullType, TypeEngine

from db import errors

_REGISTRY: dict[str, Dialect] = {}
# The module of each engine, imported on first use: a command on SQLite never pays for the other engines' modules
# (and the SQLAlchemy dialects they import). Importing a module registers its class under its names.
ENGINE_MODULES: Mapping[str, str] = {
    "sqlite": "db.dialects.sqlite",
    "postgresql": "db.dialects.postgresql",
    "postgres": "db.dialects.postgresql",
    "mysql": "db.dialects.mariadb",
    "mariadb": "db.dialects.mariadb",
}
_LOOPBACK = frozenset({"", "localhost", "127.0.0.1", "::1", "[::1]"})

EXCLUDED = object()
"""In ``Dialect.upsert``'s ``updates``: take the value that was to be inserted."""

RESTORE_TOKEN = re.compile(r"[0-9a-f]{12}")
"""The token that names a restore's staging area (a file, a schema, a database) on every engine."""


class Dialect:
    """What differs between engines. Subclasses set ``names`` and are registered when their module is imported."""

    names: ClassVar[tuple[str, ...]] = ()
    """The SQLAlchemy dialect names (``engine.dialect.name``) this class serves."""
    default_driver: ClassVar[str | None] = None
    """The driver a bare URL (``postgresql://``) gets; None: SQLAlchemy's default."""
    driver_modules: ClassVar[tuple[str, ...]] = ()
    """Module prefixes of the DBAPI drivers whose exceptions this class classifies."""
    aliases: ClassVar[Mapping[str, str]] = {}
    """Other spellings of the engine's name in a URL, and the name they stand for."""
    transactional_ddl: ClassVar[bool] = True
    """Whether CREATE/ALTER/DROP are part of the transaction (and a rollback takes them back)."""
    concurrent_writers: ClassVar[bool] = True
    """Whether two transactions can write at once (row locks), rather than one writer for the whole database."""
    restore_staging: ClassVar[str] = ""
    """How a restore builds the new data before its one swap (``db.backup.staging``): ``"file"`` (a new file beside
    the live one), ``"transaction"`` (a staging schema inside the restore's one transaction: nothing is ever left
    behind) or ``"database"`` (a staging database and one atomic RENAME TABLE)."""
    embedded: ClassVar[bool] = False
    """Whether the database is a file this process opens itself (no server): backed up by copying its pages."""
    alters_by_copy: ClassVar[bool] = False
    """Whether ALTER TABLE is too limited for migrations, which then copy the table (Alembic's batch mode)."""
    typeless_columns: ClassVar[bool] = False
    """Whether a column may hold a value of any type, so that reading a damaged row can fail in the driver."""
    pooled: ClassVar[bool] = True
    """Whether connections are pooled with this layer's pool settings (a server) or not (an embedded file)."""
    maintenance_database: ClassVar[str] = ""
    """The server database a missing database is created from."""
    failed_statement_aborts_transaction: ClassVar[bool] = False
    """Whether a statement that fails (a unique violation) leaves the transaction unusable until a rollback, so
    that a write which may fail needs a savepoint around it; otherwise only the failed statement is undone."""
    upsert_returns_rows: ClassVar[bool] = True
    """Whether an upsert can give back the row it wrote (``RETURNING``) rather than be followed by a read."""
    upsert_skips_other_key_clashes: ClassVar[bool] = False
    """Whether an upsert whose row clashes on a unique key other than its ``match`` silently writes nothing (the
    caller must then check each row was written) rather than fail with a unique violation."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        instance = cls()
        for name in cls.names:
            _REGISTRY[name] = instance

    def __repr__(self) -> str:
        return f"<dialect {self.names[0] if self.names else '?'}>"

    # --- URL, engine and connections --------------------------------------------------------------------------

    def normalized_url(self, url: URL) -> URL:
        """The URL with this layer's driver and connection defaults filled in."""
        backend, _, driver = url.drivername.partition("+")
        if self.default_driver and not driver:
            url = url.set(drivername=f"{self.aliases.get(backend, backend)}+{self.default_driver}")
        return url

    def engine_options(self, url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
        """``create_engine`` keyword arguments for this engine, overridable by the caller's ``options``."""
        base: dict[str, Any] = {"hide_parameters": True}  # bound values (hashes, tokens) never reach logs or errors
        if self.pooled and "poolclass" not in options:
            base.update(pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800, pool_timeout=30)
        connect_args = self.connect_args(options)
        own = {key: value for key, value in options.items() if key != "busy_timeout"}
        # connect_args are merged, not replaced: a caller's extra argument must not drop strict mode or UTC.
        connect_args = {**connect_args, **own.pop("connect_args", {})}
        return base | own | ({"connect_args": connect_args} if connect_args else {})

    def connect_args(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    location_name: ClassVar[str] = ""
    """The engine's one name for all its spellings: in a location (``location``) and a backup's manifest."""
    default_port: ClassVar[int] = 0

    def location(self, url: URL) -> str:
        """Where the database at ``url`` is, the same text for every URL that reaches it: ``engine://host:port/name``
        (loopback host names as ``localhost``, the default port filled in). Never the user or password."""
        host = (url.host or "").lower()
        host = "localhost" if host in _LOOPBACK or host.startswith("127.") else host
        return f"{self.location_name}://{host}:{url.port or self.default_port}/{url.database or ''}"

    def location_is_certain(self, url: URL) -> bool:
        """Whether ``location(url)`` says where the database is wherever it is computed (not a relative path)."""
        return True

    @contextlib.contextmanager
    def consistent_snapshot(self, connection: Connection) -> Iterator[Connection]:
        """``connection`` in a read-only transaction whose reads all see one state of the database (a backup)."""
        snapshot = connection.execution_options(isolation_level="REPEATABLE READ")
        snapshot.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            yield snapshot
        finally:
            snapshot.rollback()

    def prepare(self, url: URL) -> None:
        """Anything to do before the first connection (SQLite: make the file's directory)."""

    def local_file(self, url: URL) -> Path | None:
        """The file the database lives in, for an embedded engine; None for a server or an in-memory database."""
        return None

    def install(self, engine: Engine, options: Mapping[str, Any]) -> None:
        """Connection and transaction set-up for every connection of ``engine`` (events)."""
        install_write_tracking(engine)

    def has_written(self, connection: Connection) -> bool:
        """Whether the connection's transaction has written or taken a lock: only then can another transaction wait
        on it. Known for engines set up by ``install``; otherwise True (assume the worst)."""
        return connection.info.get(_WROTE) is not False

    @contextlib.contextmanager
    def bounded_lock_wait(self, connection: Connection, seconds: float) -> Iterator[None]:
        """Within the block, a statement that waits longer than ``seconds`` for a row lock fails (a transient error)
        instead of waiting on: for a transaction beside another of the same caller, which could wait on it forever."""
        yield

    def create_database_if_missing(self, url: URL) -> bool:
        """Create the database ``url`` names on its server if it is missing; True if it was.

        The server is reached through its maintenance database (``postgres``, or ``mysql`` on MariaDB), so the URL's
        user needs the right to connect there and to create databases; an existing database is never touched.
        """
        name = url.database
        if not name:
            raise errors.ValidationError("the database URL names no database", field="url")
        admin = create_engine(url.set(database=self.maintenance_database), isolation_level="AUTOCOMMIT",
                              poolclass=NullPool, hide_parameters=True)
        try:
            with admin.connect() as connection:
                if self.database_exists(connection, name):
                    return False
                quoted = connection.dialect.identifier_preparer.quote_identifier(name)
                connection.exec_driver_sql(f"CREATE DATABASE {quoted}{self.create_database_options}")
                return True
        finally:
            admin.dispose()

    create_database_options: ClassVar[str] = ""

    def database_exists(self, connection: Connection, name: str) -> bool:
        raise NotImplementedError

    # --- types: how a UTC datetime is stored (``db.base.UTCDateTime``) ----------------------------------------

    stores_aware_datetimes: ClassVar[bool] = False
    """Whether the column keeps the zone (timestamptz); otherwise UTC wall time is stored."""
    datetimes_as_text: ClassVar[bool] = False
    """Whether datetimes are stored as ISO text, read and written by ``UTCDateTime``'s own fast path."""

    def datetime_type(self) -> TypeEngine[Any]:
        return DateTime(timezone=True)

    # --- errors -------------------------------------------------------------------------------------------------
    # Each takes the driver's own exception (``DBAPIError.orig``) and tells it apart by its codes (SQLSTATE, error
    # numbers, result codes), never by searching message text that may hold the caller's values.

    def is_transient(self, original: Any) -> bool:
        """A serialization failure, deadlock, lock timeout or busy file: a retry may succeed."""
        return False

    def is_disk_full(self, original: Any) -> bool:
        return False

    def is_unreachable(self, error: exc.DBAPIError) -> bool:
        return bool(error.connection_invalidated)

    def is_missing_value(self, original: Any) -> bool:
        """A NOT NULL column got no value."""
        return False

    def is_foreign_key(self, original: Any) -> bool:
        return False

    def is_refused_value(self, original: Any) -> bool:
        """A value out of range, too long or of the wrong type (as opposed to a constraint's refusal)."""
        return False

    def is_integrity(self, error: exc.DBAPIError) -> bool:
        return isinstance(error, exc.IntegrityError)

    def is_undefined(self, original: Any) -> bool:
        """A table or column the statement names does not exist."""
        return False

    def raised_message(self, original: Any) -> str | None:
        """The message a trigger or function raised (``RAISE``, ``SIGNAL``), or None if the error is not one."""
        return None

    def constraint_name(self, error: exc.DBAPIError) -> str | None:
        """The violated constraint's name where the driver tells it apart from the values, else None."""
        return None

    # --- SQL ------------------------------------------------------------------------------------------------------

    def upsert(self, table: Table, values: Mapping[str, Any], match: Sequence[str],
               updates: Mapping[str, Any]) -> Insert:
        """``INSERT … ON CONFLICT (match) DO UPDATE`` of one row's ``values``, or the engine's equivalent.

        ``updates`` maps a column to ``EXCLUDED`` (take the value that was to be inserted) or to an expression.
        """
        return self.upsert_statement(table, match, updates).values(dict(values))

    def upsert_statement(self, table: Table, match: Sequence[str], updates: Mapping[str, Any]) -> Insert:
        """``upsert`` without its values: compiled once with the columns a batch gives (``column_keys``), then
        run for many rows at once. Keep ``updates`` free of bound values, so that the only parameters are the
        row's."""
        raise NotImplementedError

    def latest_committed(self, statement: Select[Any]) -> Select[Any]:
        """``statement`` made to read the latest committed rows, not the transaction's snapshot, where the default
        isolation level reads a snapshot (a check before a write, such as a quota)."""
        return statement

    def nulls_smallest(self, column: ColumnElement[Any], *, descending: bool) -> ColumnElement[Any]:
        """Order so that NULL sorts as the smallest value (what SQLite and MariaDB do of themselves)."""
        return column.desc() if descending else column.asc()

    def text_order(self, column: ColumnElement[Any], *, descending: bool = False) -> ColumnElement[Any]:
        """Order text by code point, NULL first (smallest). The binary collations (``db.base.TABLE_OPTIONS``) do."""
        return self.nulls_smallest(column, descending=descending)

    def ascii_insensitive_match(self, column: ColumnElement[Any], op: str, folded: str) -> ColumnElement[bool]:
        """``column`` contains (``op`` "contains") or starts with (``op`` "startswith") ``folded``, already
        A-Z-lowered, ignoring the case of A-Z only, the same on every engine (``query_spec.ascii_fold`` is the same
        in Python); ``%`` and ``_`` in it are literal. Each engine's own lower() folds a different set of letters."""
        raise NotImplementedError

    # --- the audit log (see ``db.dialects.audit_sql``) ---------------------------------------------------------

    snapshot_isolation: ClassVar[str | None] = "REPEATABLE READ"
    """The isolation level that gives one transaction a single snapshot of the audit log (verification reads the
    whole log and must not see a purge half-way); None where every read transaction already has one."""

    def audit_rows_per_statement(self, columns: int) -> int:
        """How many audit entries one INSERT statement of a bulk append carries (the servers take the driver's
        executemany: pipelined by psycopg, rewritten to multi-row by PyMySQL)."""
        return 1

    def append_only_ddl(self) -> list[str]:
        raise NotImplementedError

    def drop_append_only_ddl(self) -> list[str]:
        raise NotImplementedError

    def seq_guard_ddl(self) -> list[str]:
        raise NotImplementedError

    def drop_seq_guard_ddl(self) -> list[str]:
        raise NotImplementedError

    def head_guard_ddl(self) -> list[str]:
        """The triggers refusing to remove the chain head row (but the genesis head of an empty log: a restore clears
        that one), revision 0007."""
        raise NotImplementedError

    def drop_head_guard_ddl(self) -> list[str]:
        raise NotImplementedError

    def missing_audit_triggers(self, connection: Connection) -> list[str]:
        """The audit triggers (append-only and seq guards) a database at the head revision lacks, by name: someone
        dropped them, or on SQLite a table copy did."""
        present = set(connection.exec_driver_sql(self.triggers_query).scalars())
        return sorted(self.audit_triggers - present)

    triggers_query: ClassVar[str] = ""
    audit_triggers: ClassVar[frozenset[str]] = frozenset()

    def allow_audit_purge(self, connection: Connection) -> None:
        """Let this transaction DELETE from audit_entry, until ``end_audit_purge`` (always call it: try/finally)."""
        raise NotImplementedError

    def end_audit_purge(self, connection: Connection) -> None:
        raise NotImplementedError

    def raw_columns(self, table: Table) -> list[ColumnElement[Any]]:
        """``table``'s columns selected as stored, with no type processing, for reading rows that may be damaged.
        The servers check types and encodings on write, so their values come as the driver reads them."""
        return [type_coerce(column, NullType()).label(column.name) for column in table.columns]

    def raw_value(self, row: Mapping[Any, Any], name: str) -> Any:
        """Column ``name`` of a row read with ``raw_columns``, as the driver would give it."""
        return row[name]

    # --- maintenance --------------------------------------------------------------------------------------------

    def reclaim_space(self, engine: Engine, tables: Sequence[str]) -> None:
        """After a large removal: give the space back and refresh the planner's statistics of ``tables`` (names of
        this layer's own tables, quoted here)."""
        if not tables:
            return
        quote = engine.dialect.identifier_preparer.quote
        names = ", ".join(quote(table) for table in tables)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            self.reclaim_tables(connection, names)

    def reclaim_tables(self, connection: Connection, names: str) -> None:
        raise NotImplementedError

    def integrity_problems(self, connection: Connection) -> list[str] | None:
        """The engine's own check of the stored pages and indexes; None where the server checks its own pages."""
        return None

    def foreign_key_problems(self, connection: Connection) -> list[str] | None:
        """Rows that refer to missing rows; None where the server enforces foreign keys on every write."""
        return None

    def missing_trigger_ddl(self, connection: Connection, applied: Collection[str] | None = None) -> list[str]:
        """DDL for the audit triggers a table copy (a batch migration) dropped: SQLite only."""
        return []


_WROTE = "dblayer_wrote"
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


def install_write_tracking(engine: Engine) -> None:
    """Remember, per connection, whether its transaction has written or locked anything yet (``has_written``)."""

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


def dialect_named(name: str) -> Dialect:
    """The implementation for a SQLAlchemy dialect name (``sqlite``, ``postgresql``, ``mysql``, ``mariadb``)."""
    if name not in _REGISTRY and name in ENGINE_MODULES:
        importlib.import_module(ENGINE_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise errors.DatabaseUnavailable(
            f"bad database URL: unsupported engine {name!r} (supported: {', '.join(sorted(ENGINE_MODULES))})"
        ) from None


def dialect_of(bind: Engine | Connection | Session | SQLAlchemyDialect | URL) -> Dialect:
    """The implementation for an engine, connection, session, SQLAlchemy dialect or URL."""
    if isinstance(bind, URL):
        return dialect_named(bind.get_backend_name())
    if isinstance(bind, Session):
        bind = bind.get_bind()
    sqlalchemy_dialect = bind if isinstance(bind, SQLAlchemyDialect) else bind.dialect
    return dialect_named(sqlalchemy_dialect.name)


def all_dialects() -> list[Dialect]:
    """Every engine's implementation (importing the engine modules not imported yet)."""
    return list(dict.fromkeys(dialect_named(name) for name in ENGINE_MODULES))


def for_driver_error(original: object) -> Dialect | None:
    """The implementation whose driver raised ``original``, or None if no known driver did."""
    module = type(original).__module__
    for dialects in (list(dict.fromkeys(_REGISTRY.values())), all_dialects()):  # the loaded ones first
        for dialect in dialects:
            if module.startswith(dialect.driver_modules):
                return dialect
    return None

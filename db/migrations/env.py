"""Alembic's environment: which database, which metadata, and how a migration runs.

The database is, in order:

1. ``config.attributes["connection"]``: a Connection passed by the caller (``db.migrations.runner`` does so),
   which the caller owns and closes; or an Engine (pytest-alembic passes one), from which a connection is taken
   for the run and given back;
2. ``config.attributes["url"]`` (``runner.alembic_config(url)``), else ``-x url=...`` on the command line;
3. ``DATABASE_URL``, else the SQLite file ``db/data/app.db`` (``db.dialects.resolve_url``).

Connections come from ``db.Database``, so SQLite gets the same pragmas (WAL, foreign keys, busy timeout) as
the application and the file's directory is created on demand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.runtime.environment import OnVersionApplyFn
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy.engine import URL, Connection, Engine

import db.models  # noqa: F401 - importing the package registers every model on Base.metadata
from db import dialects
from db.base import Base
from db.migrations.runner import DanglingForeignKeysError, MigrationError
from db.session import Database

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str | URL | None:
    url: str | URL | None = config.attributes.get("url")
    if url is None:
        url = context.get_x_argument(as_dictionary=True).get("url")
    return url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate renders this layer's column types as ``db.base.UTCDateTime()``: import their module."""
    module = type(obj).__module__
    if type_ == "type" and (module == "db" or module.startswith("db.")):
        autogen_context.imports.add(f"import {module}")
    return False  # the default rendering


def _configure(
    connection: Connection | None = None,
    url: URL | None = None,
    on_version_apply: OnVersionApplyFn | None = None,
) -> None:
    bind = connection if connection is not None else url
    assert bind is not None, "a migration runs on a connection or, offline, for a URL"
    by_copy = dialects.dialect_of(bind).alters_by_copy
    context.configure(
        connection=connection,
        url=url if connection is None else None,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=by_copy,  # an engine whose ALTER TABLE is limited (SQLite): alter by copying the table
        # SQLite does roll back DDL; one transaction around all the revisions makes an upgrade all-or-nothing,
        # and lets the foreign-key check below roll it back.
        transactional_ddl=True if by_copy else None,
        render_item=_render_item,
        on_version_apply=on_version_apply,
        literal_binds=connection is None,
        dialect_opts={"paramstyle": "named"} if connection is None else None,
    )


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: write the SQL instead of running it (no foreign-key check is possible)."""
    _configure(url=Database(_url()).url)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
    elif isinstance(given, Engine):
        with given.connect() as owned:
            _run(owned)
    elif given is None:
        _run_on_own_database()
    else:
        raise TypeError(f'config.attributes["connection"] must be a Connection or an Engine, not {type(given)}')


def _run_on_own_database() -> None:
    database = Database(_url())
    try:
        with database.engine.connect() as owned:
            _run(owned)
    finally:
        database.dispose()


def _run(connection: Connection) -> None:
    if not dialects.dialect_of(connection).alters_by_copy:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Why the foreign keys go off: a batch migration alters a SQLite table by copying it, dropping the
    # original and renaming the copy. With foreign_keys=ON, dropping the original first deletes its rows, and
    # that delete cascades (ON DELETE CASCADE) or nulls (SET NULL) every child row: data silently lost. So
    # the migration runs with foreign keys OFF (the pragma is a no-op inside a transaction, hence before
    # BEGIN), and PRAGMA foreign_key_check, before commit, refuses a migration that left a row pointing
    # nowhere: it raises, and the whole upgrade is rolled back.
    applied: list[MigrationInfo] = []

    def record(
        ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
    ) -> None:
        applied.append(step)

    with _sqlite_foreign_keys_off(connection):
        # IMMEDIATE: take the write lock at BEGIN, waiting on the busy timeout rather than failing midway.
        _configure(connection.execution_options(sqlite_begin="IMMEDIATE"), on_version_apply=record)
        with context.begin_transaction():
            lifted = _lift_audit_guards(connection)
            context.run_migrations()
            if applied:
                _check_foreign_keys(connection)
                _restore_append_only_triggers(connection)
            else:  # nothing ran (a check, an upgrade at head): put back what was lifted, and nothing else
                for statement in lifted:
                    connection.exec_driver_sql(statement)


def _pragma(connection: Connection, statement: str) -> list[Any]:
    """Run a PRAGMA on the driver's connection, as is: SQLAlchemy would emit BEGIN before it (autobegin)."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    if not _pragma(connection, "PRAGMA foreign_keys")[0][0]:
        yield  # already off (the caller's choice): leave it so
        return
    if connection.in_transaction():
        raise MigrationError(
            "SQLite cannot turn foreign keys off inside a transaction, and a batch migration with them on "
            "would delete child rows: migrate on a connection that has not begun a transaction"
        )
    _pragma(connection, "PRAGMA foreign_keys=OFF")
    if _pragma(connection, "PRAGMA foreign_keys")[0][0]:
        raise MigrationError("SQLite refused to turn foreign keys off; not migrating")
    try:
        yield
    finally:
        if connection.in_transaction():  # never hand a connection with foreign keys off back to the pool
            connection.invalidate()
        else:
            _pragma(connection, "PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    rows = _pragma(connection, "PRAGMA foreign_key_check")
    if rows:
        counts = Counter(f"{table} -> {parent}" for table, _rowid, parent, _fkid in rows)
        where = ", ".join(f"{pair}: {count}" for pair, count in sorted(counts.items()))
        raise DanglingForeignKeysError(
            f"the migration left {len(rows)} row(s) referring to missing rows ({where}); rolled back"
        )


def _lift_audit_guards(connection: Connection) -> list[str]:
    """SQLite re-reads every trigger when a batch migration renames its table copy into place, and fails on one
    that names a table dropped at that moment: the audit seq guards and the chain head's guard (they read the
    other audit tables) go for the migration, and come back with the other audit triggers after it. Returns the
    DDL of those lifted."""
    rows = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all()
    triggers: dict[str, str] = {str(name): str(sql) for name, sql in rows}
    guards = (*dialects.SEQ_GUARD_TRIGGERS, dialects.HEAD_KEPT_TRIGGER)
    lifted = [triggers[name] for name in guards if name in triggers]
    dialect = dialects.dialect_of(connection)
    for statement in [*dialect.drop_seq_guard_ddl(), *dialect.drop_head_guard_ddl()]:
        connection.exec_driver_sql(statement)
    return lifted


def _restore_append_only_triggers(connection: Connection) -> None:
    """A batch migration copies a SQLite table and the copy has no triggers: put the audit log's back (those of
    the revisions now applied: a downgrade that removed some must not see them come back)."""
    heads = context.get_context().get_current_heads()
    applied = {script.revision for script in context.script.iterate_revisions(heads, "base")}
    for statement in dialects.dialect_of(connection).missing_trigger_ddl(connection, applied):
        connection.exec_driver_sql(statement)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

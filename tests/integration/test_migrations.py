"""Migrations on every engine: upgrade, downgrade, drift check, the SQLite foreign-key guard, python -m db.

Each test gets the ``dblayer_migrations`` database (a file of its own on SQLite) emptied of every table,
``alembic_version`` included, so it never disturbs the tests that use ``dblayer_test``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, func, inspect, select, text

from db import Database, dialects
from db.admin_catalog import seed_builtin_roles
from db.base import TABLE_OPTIONS
from db.migrations import runner
from tests.support import APP_DB, drop_all_tables, engine_url, selected_engines

ROOT = Path(__file__).resolve().parents[2]
HEAD = runner.head_revision()  # the project's newest revision

fixture_tables = MetaData()
parent = Table(
    "parent",
    fixture_tables,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(50), nullable=False),
    **TABLE_OPTIONS,
)
child = Table(
    "child",
    fixture_tables,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("parent_id", Integer, ForeignKey("parent.id", ondelete="CASCADE"), nullable=False),
    **TABLE_OPTIONS,
)

# Alters the parent table. On SQLite a column type change is a batch "move and copy": create a new table,
# copy the rows, DROP the old table, rename. PostgreSQL and MariaDB alter in place.
ALTER_PARENT = """
with op.batch_alter_table("parent") as batch:
    batch.alter_column("name", existing_type=sa.String(50), type_=sa.String(200), existing_nullable=False)
    batch.add_column(sa.Column("note", sa.String(50), nullable=True))
"""


def empty_database(engine: str, sqlite_dir: Path) -> Iterator[Database]:
    """The engine's ``dblayer_migrations`` database, with no tables at all."""
    if engine not in selected_engines():
        pytest.skip(f"{engine} is not in TEST_ENGINES")
    database = Database(engine_url(engine, sqlite_dir, "dblayer_migrations"))
    assert Path(database.url.database or "").resolve() != APP_DB
    drop_all_tables(database)
    yield database
    database.dispose()


@pytest.fixture
def database(engine_name: str, sqlite_dir: Path) -> Iterator[Database]:
    yield from empty_database(engine_name, sqlite_dir)


@pytest.fixture
def sqlite_database(sqlite_dir: Path) -> Iterator[Database]:
    """For what only SQLite does: batch migrations copy tables there, and only there is the guard needed."""
    yield from empty_database("sqlite", sqlite_dir)


@pytest.fixture
def postgresql_database(sqlite_dir: Path) -> Iterator[Database]:
    yield from empty_database("postgresql", sqlite_dir)


def revision_config(directory: Path, revision: str, upgrade: str, downgrade: str = "pass") -> Config:
    """A config whose revisions are the project's plus ``revision``, on top of the head, in a tmp dir."""
    def body(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip(), "    ")

    source = "\n".join(
        [
            f'"""Test revision {revision}."""',
            "import sqlalchemy as sa",
            "from alembic import op",
            "",
            f"revision = {revision!r}",
            f"down_revision = {runner.head_revision()!r}",
            "",
            "",
            "def upgrade() -> None:",
            body(upgrade),
            "",
            "",
            "def downgrade() -> None:",
            body(downgrade),
            "",
        ]
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{revision}.py").write_text(source)
    return runner.alembic_config(version_locations=[directory])


def seed_parent_and_children(database: Database) -> None:
    fixture_tables.create_all(database.engine)
    with database.engine.begin() as connection:
        connection.execute(parent.insert(), [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
        connection.execute(child.insert(), [{"id": n, "parent_id": 1 + n % 2} for n in range(1, 8)])


def count(database: Database, table: Table) -> int:
    with database.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def sqlite_foreign_keys(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one())


def column_names(database: Database, table: str) -> set[str]:
    with database.engine.connect() as connection:
        return {column["name"] for column in inspect(connection).get_columns(table)}


# --- upgrade, check, downgrade --------------------------------------------------------------------


def test_upgrade_to_head_then_check_finds_no_drift(database: Database) -> None:
    assert runner.current_revision(database) is None
    runner.upgrade(database)
    assert runner.current_revision(database) == HEAD
    runner.check(database)
    with database.engine.connect() as connection:
        assert "alembic_version" in inspect(connection).get_table_names()


def test_the_migrations_seed_the_built_in_roles_as_the_catalogue_has_them(database: Database) -> None:
    """The revisions carry their own copy of the catalogue: a change to db.admin_catalog needs a revision too."""
    runner.upgrade(database)
    with database.engine.begin() as connection:
        assert seed_builtin_roles(connection) == dict.fromkeys(
            ("permissions", "roles", "grants_added", "grants_removed"), 0
        )


def test_the_migrations_make_every_audit_trigger_the_layer_expects(database: Database) -> None:
    """The revisions carry their own trigger DDL: a trigger added to db.dialects needs a revision too."""
    runner.upgrade(database)
    with database.engine.connect() as connection:
        assert dialects.dialect_of(connection).missing_audit_triggers(connection) == []


def test_check_raises_when_not_at_head_or_when_the_schema_drifted(database: Database) -> None:
    with pytest.raises(runner.SchemaDriftError, match="at revision none"):
        runner.check(database)
    runner.upgrade(database)
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    with pytest.raises(runner.SchemaDriftError, match="differs from the models") as raised:
        runner.check(database)
    assert raised.value.diffs and raised.value.diffs[0][0] == "remove_table"


def test_upgrade_downgrade_base_upgrade(database: Database, tmp_path: Path) -> None:
    config = revision_config(
        tmp_path,
        "9001_note",
        upgrade='op.create_table("note", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade='op.drop_table("note")',
    )
    runner.upgrade(database, config=config)
    assert runner.current_revision(database) == "9001_note"
    assert "note" in inspect(database.engine).get_table_names()

    runner.downgrade(database, "base", config=config)
    assert runner.current_revision(database) is None
    assert "note" not in inspect(database.engine).get_table_names()

    runner.upgrade(database, HEAD, config=config)
    assert runner.current_revision(database) == HEAD
    runner.upgrade(database, config=config)
    assert runner.current_revision(database) == "9001_note"
    runner.downgrade(database, "-1", config=config)
    assert runner.current_revision(database) == HEAD


def test_isolated_database_lends_its_transaction_on_postgresql(postgresql_database: Database) -> None:
    """PostgreSQL rolls DDL back; MariaDB commits it implicitly and SQLite's guard refuses (see below)."""
    database = postgresql_database
    with database.isolated() as isolated:
        runner.upgrade(isolated)
        assert runner.current_revision(isolated) == HEAD
    assert runner.current_revision(database) is None


def test_env_connects_by_itself_when_given_only_a_url(database: Database) -> None:
    """The path the ``alembic`` command line takes: env.py makes its own Database from the URL."""
    command.upgrade(runner.alembic_config(url=database.url), "head")
    assert runner.current_revision(database) == HEAD


def test_env_takes_a_connection_of_its_own_from_an_engine(database: Database) -> None:
    """What pytest-alembic does: it passes its engine as ``config.attributes["connection"]``."""
    config = runner.alembic_config()
    config.attributes["connection"] = database.engine
    command.upgrade(config, "head")
    assert runner.current_revision(database) == HEAD
    command.downgrade(config, "base")
    assert runner.current_revision(database) is None


def test_env_refuses_anything_else_as_its_connection(database: Database) -> None:
    config = runner.alembic_config()
    config.attributes["connection"] = str(database.url)
    with pytest.raises(TypeError, match="must be a Connection or an Engine"):
        command.upgrade(config, "head")


# --- batch migrations and the SQLite foreign-key guard --------------------------------------------


@pytest.mark.parametrize("through", ["connection", "url"])
def test_batch_migration_of_a_parent_table_keeps_its_child_rows(
    database: Database, tmp_path: Path, through: str
) -> None:
    runner.upgrade(database)
    seed_parent_and_children(database)
    config = revision_config(tmp_path, "9002_alter_parent", ALTER_PARENT)

    if through == "connection":
        runner.upgrade(database, config=config)
    else:
        config.attributes["url"] = database.url
        command.upgrade(config, "head")

    assert runner.current_revision(database) == "9002_alter_parent"
    assert count(database, parent) == 2
    assert count(database, child) == 7
    assert "note" in column_names(database, "parent")
    with database.engine.connect() as connection:
        name = next(c for c in inspect(connection).get_columns("parent") if c["name"] == "name")
        assert isinstance(name["type"], String)
        assert name["type"].length == 200
        assert [fk["referred_table"] for fk in inspect(connection).get_foreign_keys("child")] == ["parent"]
    if database.backend == "sqlite":
        assert sqlite_foreign_keys(database) == 1


def test_without_the_guard_a_sqlite_batch_migration_deletes_child_rows(sqlite_database: Database) -> None:
    """The hazard the guard exists for: the same batch operation, foreign keys on, outside env.py."""
    database = sqlite_database
    seed_parent_and_children(database)
    with database.engine.begin() as connection:
        operations = Operations(MigrationContext.configure(connection))
        with operations.batch_alter_table("parent") as batch:
            batch.alter_column("name", existing_type=String(50), type_=String(200), existing_nullable=False)
    assert count(database, parent) == 2
    assert count(database, child) == 0


@pytest.mark.parametrize("through", ["connection", "url"])
def test_sqlite_guard_rolls_back_a_migration_that_leaves_a_dangling_foreign_key(
    sqlite_database: Database, tmp_path: Path, through: str
) -> None:
    """SQLite only: the other engines enforce foreign keys during the migration itself."""
    database = sqlite_database
    runner.upgrade(database)
    seed_parent_and_children(database)
    config = revision_config(
        tmp_path, "9003_orphans", ALTER_PARENT + 'op.execute("DELETE FROM parent WHERE id = 1")'
    )

    with pytest.raises(runner.DanglingForeignKeysError, match=r"3 row\(s\).*child -> parent: 3"):
        if through == "connection":
            runner.upgrade(database, config=config)
        else:
            config.attributes["url"] = database.url
            command.upgrade(config, "head")

    assert runner.current_revision(database) == HEAD
    assert count(database, parent) == 2
    assert count(database, child) == 7
    assert "note" not in column_names(database, "parent")
    assert sqlite_foreign_keys(database) == 1


def test_sqlite_guard_refuses_a_connection_already_in_a_transaction(sqlite_database: Database) -> None:
    database = sqlite_database
    with database.isolated() as isolated, pytest.raises(runner.MigrationError, match="inside a transaction"):
        runner.upgrade(isolated)


def test_a_sqlite_batch_migration_of_the_audit_log_keeps_it_append_only(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """A table copy drops a table's triggers; the migration environment puts the audit log's back."""
    runner.upgrade(sqlite_database)
    widen = """
    with op.batch_alter_table("audit_entry") as batch:
        batch.alter_column("actor", existing_type=sa.String(64), type_=sa.String(100))
    """
    runner.upgrade(sqlite_database, config=revision_config(tmp_path, "9004_widen_actor", widen))
    with sqlite_database.engine.connect() as connection:
        triggers = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    assert {"audit_entry_no_update", "audit_entry_no_delete", "audit_checkpoint_no_update",
            "audit_checkpoint_no_delete"} <= triggers

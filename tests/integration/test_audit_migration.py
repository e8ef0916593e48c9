"""Revisions 0005 (audit integrity) and 0007 (the chain head kept) on every engine: 0005's upgrade over impossible
rows, the downgrades, and their triggers through SQLite's table copies."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Database, DatabaseError
from db.migrations import runner
from tests.integration.audit_attacks import head_row, seed, verify
from tests.integration.test_migrations import revision_config
from tests.support import TestDatabases

BEFORE = "0004_files_reports"
GUARDS = {"audit_entry_above_head", "audit_checkpoint_proven", "audit_chain_head_forward",
          "audit_chain_head_no_delete"}
APPEND_ONLY = {"audit_entry_no_update", "audit_entry_no_delete", "audit_checkpoint_no_update",
               "audit_checkpoint_no_delete"}


@pytest.fixture
def database(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    with test_databases.own(engine_name, "dblayer_audit_migration") as database:
        yield database


def test_an_upgrade_over_an_entry_at_seq_0_stops_and_says_why(database: Database) -> None:
    runner.downgrade(database, BEFORE)
    with database.engine.begin() as connection:  # 0004 had no CHECK and no seq trigger
        connection.execute(text(
            "INSERT INTO audit_entry (id, seq, kind, action, created_at, prev_hash, hash) "
            "VALUES (:id, 0, 'event', 'forged', '2026-01-01 00:00:00', :h, :h)"),
            {"id": "0" * 32 if database.backend == "sqlite" else "00000000-0000-0000-0000-000000000000",
             "h": "0" * 64})

    with pytest.raises(runner.MigrationError, match="entries with a seq of 0 or less"):
        runner.upgrade(database)
    assert runner.current_revision(database) == BEFORE


def test_an_unkeyed_chain_goes_down_to_0004_and_back_and_still_verifies(database: Database) -> None:
    seed(database, 3)
    runner.downgrade(database, BEFORE)
    runner.upgrade(database)
    assert verify(database).ok and head_row(database)[0] == 3


def test_a_downgrade_is_refused_while_keyed_entries_exist(database: Database) -> None:
    keyed = Database(database.url, settings=dataclasses.replace(database.settings, audit_key="k" * 32))
    try:
        seed(keyed, 2)
    finally:
        keyed.dispose()
    with pytest.raises(runner.MigrationError, match="keyed"):
        runner.downgrade(database, BEFORE)
    # The revisions above 0005 went down first: on MariaDB, whose DDL is not transactional, they stay down.
    assert runner.current_revision(database) in {"0005_audit_integrity", runner.head_revision()}


def triggers(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())


def test_sqlite_table_copies_keep_the_seq_guards_and_a_downgrade_takes_them_away(test_databases: TestDatabases,
                                                                                 tmp_path: Path) -> None:
    with test_databases.own("sqlite", "dblayer_audit_batch") as database:
        seed(database, 2)
        widen = """
        with op.batch_alter_table("audit_chain_head") as batch:
            batch.alter_column("hash", existing_type=sa.String(64), type_=sa.String(80))
        with op.batch_alter_table("audit_entry") as batch:
            batch.alter_column("actor", existing_type=sa.String(64), type_=sa.String(100))
        """
        config = revision_config(tmp_path, "9005_widen", widen)
        runner.upgrade(database, config=config)
        assert triggers(database) >= GUARDS | APPEND_ONLY
        assert verify(database).ok

        runner.downgrade(database, BEFORE, config=config)
        assert triggers(database) >= APPEND_ONLY and not GUARDS & triggers(database)
        runner.upgrade(database)
        assert triggers(database) >= GUARDS


def test_0007_makes_the_head_guard_and_its_downgrade_takes_it_away(database: Database) -> None:
    seed(database, 2)
    delete_head = "DELETE FROM audit_chain_head"
    runner.downgrade(database, "0006_database_identity")
    with database.engine.connect() as connection, connection.begin() as transaction:
        connection.exec_driver_sql(delete_head)  # below 0007 nothing stops it
        transaction.rollback()
    runner.upgrade(database)
    with pytest.raises(DatabaseError, match="chain head cannot be removed"), database.unit_of_work() as uow:
        uow.session.execute(text(delete_head))
    assert head_row(database)[0] == 2 and verify(database).ok

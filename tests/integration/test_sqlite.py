"""SQLite set-up: pragmas, transactions begun by SQLAlchemy, IMMEDIATE units of work, savepoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'app.db'}", busy_timeout=0.1)
    yield database
    database.dispose()


def test_the_directory_of_the_file_is_created_on_demand_and_pragmas_are_set(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        pragmas = {name: session.execute(text(f"PRAGMA {name}")).scalar()
                   for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 100}
    assert Path(sqlite_db.url.database or "").exists()


def test_a_unit_of_work_holds_the_write_lock_from_its_first_statement(sqlite_db: Database) -> None:
    path = sqlite_db.url.database or ""
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("SELECT 1"))  # a read only, yet the transaction began IMMEDIATE
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_a_plain_session_reads_without_taking_the_write_lock(sqlite_db: Database) -> None:
    path = sqlite_db.url.database or ""
    with sqlite_db.session() as session:
        session.execute(text("SELECT 1"))
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" if the session held the write lock
        assert other.in_transaction
        other.execute("ROLLBACK")
        other.close()


def test_savepoints_work_so_a_failed_nested_block_keeps_the_outer_transaction(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("INSERT INTO t VALUES (1)"))
        nested = uow.session.begin_nested()
        uow.session.execute(text("INSERT INTO t VALUES (2)"))
        nested.rollback()
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT x FROM t")).scalars().all() == [1]


def test_isolated_rolls_back_everything_even_committed_work(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    with sqlite_db.isolated() as scoped:
        with scoped.unit_of_work() as uow:
            uow.session.execute(text("INSERT INTO t VALUES (1)"))
        with scoped.session() as session:
            assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0

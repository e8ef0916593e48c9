"""SQLite set-up: pragmas, transactions begun by their first statement (reads lock nothing), savepoints."""

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


def other_writer(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def write_lock_is_free(path: str) -> bool:
    other = other_writer(path)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    return True


@pytest.fixture
def table_t(sqlite_db: Database) -> str:
    with sqlite_db.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    return sqlite_db.url.database or ""


def test_a_unit_of_work_that_only_reads_takes_no_write_lock(sqlite_db: Database, table_t: str) -> None:
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("SELECT count(*) FROM t"))
        assert write_lock_is_free(table_t)


@pytest.mark.parametrize("first", ["INSERT INTO t VALUES (1)", "SAVEPOINT s", "UPDATE t SET x = x"])
def test_a_write_or_savepoint_takes_the_write_lock_until_the_end(sqlite_db: Database, table_t: str,
                                                                 first: str) -> None:
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text(first))
        assert not write_lock_is_free(table_t)
    assert write_lock_is_free(table_t)


def test_a_locking_read_takes_the_write_lock(sqlite_db: Database, table_t: str) -> None:
    from sqlalchemy import column, select, table

    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(select(column("x")).select_from(table("t")).with_for_update())
        assert not write_lock_is_free(table_t)


def test_a_read_then_write_succeeds_although_another_connection_committed_in_between(
    sqlite_db: Database, table_t: str
) -> None:
    """Upgrading the read snapshot in place would fail at once (SQLITE_BUSY_SNAPSHOT): the write starts afresh."""
    with sqlite_db.unit_of_work() as uow:
        assert uow.session.execute(text("SELECT count(*) FROM t")).scalar() == 0
        other = other_writer(table_t)
        other.execute("INSERT INTO t VALUES (7)")
        other.close()
        uow.session.execute(text("INSERT INTO t VALUES (8)"))
        assert uow.session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [7, 8]
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [7, 8]


def test_a_rolled_back_write_after_reads_leaves_nothing(sqlite_db: Database, table_t: str) -> None:
    with pytest.raises(RuntimeError), sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("SELECT count(*) FROM t"))
        uow.session.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("changed my mind")
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0
    assert write_lock_is_free(table_t)


def test_a_write_that_finds_the_file_busy_is_a_transient_error_and_leaves_no_transaction(
    sqlite_db: Database, table_t: str
) -> None:
    from db import TransientError

    blocker = other_writer(table_t)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientError), sqlite_db.unit_of_work() as uow:
            uow.session.execute(text("SELECT count(*) FROM t"))
            uow.session.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("INSERT INTO t VALUES (2)"))
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT x FROM t")).scalars().all() == [2]


def test_a_plain_session_reads_without_taking_the_write_lock(sqlite_db: Database, table_t: str) -> None:
    with sqlite_db.session() as session:
        session.execute(text("SELECT 1"))
        assert write_lock_is_free(table_t)


def test_savepoints_work_so_a_failed_nested_block_keeps_the_outer_transaction(
    sqlite_db: Database, table_t: str
) -> None:
    with sqlite_db.unit_of_work() as uow:
        uow.session.execute(text("INSERT INTO t VALUES (1)"))
        nested = uow.session.begin_nested()
        uow.session.execute(text("INSERT INTO t VALUES (2)"))
        nested.rollback()
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT x FROM t")).scalars().all() == [1]


def test_isolated_rolls_back_everything_even_committed_work(sqlite_db: Database, table_t: str) -> None:
    with sqlite_db.isolated() as scoped:
        with scoped.unit_of_work() as uow:
            uow.session.execute(text("INSERT INTO t VALUES (1)"))
        with scoped.session() as session:
            assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0

"""``autonomous_write``: writes that outlive the caller's rollback, on every engine."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import Database
from db.autonomous import autonomous_write
from tests.integration.workers import CounterRepository
from tests.models import Counter


def bump(session: Session) -> None:
    """A self-contained write: add one to the counter named "tally"."""
    session.execute(update(Counter).where(Counter.name == "tally").values(value=Counter.value + 1))


def tally(database: Database) -> int:
    with database.unit_of_work() as uow:
        return int(uow.session.scalar(select(Counter.value).where(Counter.name == "tally")) or 0)


def others(database: Database) -> int:
    with database.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Counter).where(Counter.name != "tally")) or 0)


@pytest.fixture
def counted(database: Database) -> Database:
    with database.unit_of_work() as uow:
        uow.repository(CounterRepository).create(name="tally")
    return database


def test_a_write_survives_the_rollback_of_its_unit_of_work_and_nothing_else_does(counted: Database) -> None:
    with pytest.raises(RuntimeError), counted.unit_of_work() as uow:
        uow.repository(CounterRepository).create(name="dropped")
        autonomous_write(uow.session, bump)
        raise RuntimeError("the caller fails")
    assert tally(counted) == 1
    assert others(counted) == 0


def test_the_write_is_visible_at_once_and_made_once_when_the_transaction_commits(counted: Database) -> None:
    with counted.unit_of_work() as uow:
        autonomous_write(uow.session, bump)
        assert uow.session.scalar(select(Counter.value).where(Counter.name == "tally")) == 1
    assert tally(counted) == 1


def test_a_write_undone_by_a_savepoint_is_made_again_before_the_commit(counted: Database) -> None:
    with counted.unit_of_work() as uow:
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            autonomous_write(uow.session, bump)
            raise RuntimeError("the savepoint fails")
        uow.repository(CounterRepository).create(name="kept")
    assert tally(counted) == 1
    assert others(counted) == 1


def test_a_savepoint_rolled_back_after_the_write_does_not_repeat_it(counted: Database) -> None:
    with counted.unit_of_work() as uow:
        autonomous_write(uow.session, bump)
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            raise RuntimeError("a later savepoint fails")
    assert tally(counted) == 1


def test_a_plain_session_rollback_is_seen_too(counted: Database) -> None:
    with pytest.raises(RuntimeError), counted.session() as session:
        autonomous_write(session, bump)
        raise RuntimeError("the caller fails")
    assert tally(counted) == 1


def test_a_failing_replay_is_logged_and_never_hides_the_original_error(
    counted: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def fails_the_second_time(session: Session) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full")
        bump(session)

    with (
        caplog.at_level(logging.ERROR, logger="db.autonomous"),
        pytest.raises(RuntimeError, match="original"),
        counted.unit_of_work() as uow,
    ):
        autonomous_write(uow.session, fails_the_second_time)
        raise RuntimeError("original")
    assert len(calls) == 2
    assert "lost" in caplog.text
    assert tally(counted) == 0


def test_writes_from_earlier_committed_transactions_are_not_replayed(counted: Database) -> None:
    writes: list[Any] = []
    with counted.session() as session:
        autonomous_write(session, lambda s: (writes.append(1), bump(s)))
        session.commit()
        with pytest.raises(RuntimeError):
            try:
                raise RuntimeError("a later transaction fails")
            finally:
                session.rollback()
    assert len(writes) == 1
    assert tally(counted) == 1

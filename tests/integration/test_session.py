"""Database, sessions, units of work and retried transactions on every engine."""

from __future__ import annotations

import contextlib
import sqlite3
import traceback
from typing import Any

import pytest
from sqlalchemy import exc, text

from db import Conflict, Database, TransientError, UnitOfWork
from db import session as session_module
from db.services.users import UserService
from tests.integration.workers import CounterRepository


def counters(uow: UnitOfWork) -> CounterRepository:
    return uow.repository(CounterRepository)


def test_a_unit_of_work_commits_when_the_block_ends(database: Database) -> None:
    with database.unit_of_work() as uow:
        counters(uow).create(name="a")
    with database.unit_of_work() as uow:
        assert counters(uow).count() == 1


def test_a_unit_of_work_rolls_back_and_re_raises_on_an_exception(database: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"), database.unit_of_work() as uow:
        counters(uow).create(name="a")
        raise RuntimeError("boom")
    with database.unit_of_work() as uow:
        assert counters(uow).count() == 0


def test_a_session_commits_on_success_and_rolls_back_on_an_exception(database: Database) -> None:
    with database.session() as session:
        CounterRepository(session).create(name="kept")
    with pytest.raises(ValueError), database.session() as session:
        CounterRepository(session).create(name="dropped")
        raise ValueError
    with database.session() as session:
        assert [c.name for c in CounterRepository(session).list()] == ["kept"]


def test_repositories_never_commit(database: Database) -> None:
    with database.session() as session:
        CounterRepository(session).create(name="a")
        CounterRepository(session).create_many([{"name": "b"}])
        CounterRepository(session).upsert({"name": "c"}, match=["name"])
        session.rollback()
        assert CounterRepository(session).count() == 0


def test_repositories_are_built_once_per_unit_of_work(database: Database) -> None:
    with database.unit_of_work(actor="ada") as uow:
        assert uow.repository(CounterRepository) is uow.repository(CounterRepository)
        assert uow.repository(CounterRepository).session is uow.session
        assert uow.actor == "ada"


def test_the_core_database_knows_no_service_of_the_layer_and_the_layers_names_them(database: Database) -> None:
    core = session_module.Database(database.url)
    with core.isolated() as isolated, isolated.unit_of_work() as uow:
        assert isinstance(uow.repository(CounterRepository), CounterRepository)
        assert not hasattr(uow, "users")
    core.dispose()
    with database.unit_of_work() as uow:
        assert uow.users is uow.repository(UserService)


def test_run_in_transaction_returns_the_result(database: Database) -> None:
    assert database.run_in_transaction(lambda uow: counters(uow).create(name="a").name) == "a"


def transient_error(engine: str) -> exc.DBAPIError:
    """A genuine driver exception of the engine's transient kind, wrapped as SQLAlchemy wraps it."""
    original: Exception
    if engine == "postgresql":
        import psycopg

        original = psycopg.errors.SerializationFailure("could not serialize access")
    elif engine == "mariadb":
        import pymysql

        original = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
    else:
        original = sqlite3.OperationalError("database is locked")
        original.sqlite_errorcode = 5  # type: ignore[attr-defined]
    return exc.OperationalError("UPDATE counter ...", {}, original)


def test_transient_errors_are_retried_until_success_and_side_effects_happen_once(
    database: Database, engine_name: str
) -> None:
    calls: list[int] = []

    def work(uow: UnitOfWork) -> str:
        calls.append(1)
        counters(uow).create(name="once")
        if len(calls) < 3:
            raise transient_error(engine_name)
        return "done"

    assert database.run_in_transaction(work, attempts=5) == "done"
    assert len(calls) == 3
    with database.unit_of_work() as uow:
        assert counters(uow).count({"name": "once"}) == 1


RAISE_TRANSIENT = {
    "postgresql": "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure'; END $$",
    "mariadb": "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'injected deadlock'",
}


def test_a_transient_error_raised_by_the_server_is_retried(database: Database, engine_name: str,
                                                           tmp_path: Any) -> None:
    calls: list[int] = []
    if engine_name == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'busy.db'}", busy_timeout=0.05)
        blocker = sqlite3.connect(tmp_path / "busy.db", isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the first attempt finds the file busy

    def work(uow: UnitOfWork) -> int:
        calls.append(1)
        if engine_name == "sqlite":
            uow.session.execute(text("SAVEPOINT probe"))  # BEGIN IMMEDIATE waits 50 ms, then SQLITE_BUSY
        elif len(calls) == 1:
            uow.session.execute(text(RAISE_TRANSIENT[engine_name]))
        return len(calls)

    if engine_name == "sqlite":
        import threading

        threading.Timer(0.3, blocker.rollback).start()
    assert database.run_in_transaction(work, attempts=20) >= 2
    if engine_name == "sqlite":
        blocker.close()
        database.dispose()


def test_retries_give_up_with_transient_error_after_the_configured_attempts(
    database: Database, engine_name: str
) -> None:
    calls: list[int] = []

    def work(uow: UnitOfWork) -> None:
        calls.append(1)
        raise transient_error(engine_name)

    with pytest.raises(TransientError) as raised:
        database.run_in_transaction(work, attempts=3)
    assert len(calls) == 3
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize("error", [ValueError("bad"), Conflict("taken")])
def test_non_transient_errors_are_not_retried(database: Database, error: Exception) -> None:
    calls: list[int] = []

    def work(uow: UnitOfWork) -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        database.run_in_transaction(work, attempts=5)
    assert len(calls) == 1


def test_a_unique_violation_inside_run_in_transaction_is_a_conflict_not_retried(database: Database) -> None:
    calls: list[int] = []
    with database.unit_of_work() as uow:
        counters(uow).create(name="taken")

    def work(uow: UnitOfWork) -> None:
        calls.append(1)
        counters(uow).create(name="taken")

    with pytest.raises(Conflict):
        database.run_in_transaction(work)
    assert len(calls) == 1


def test_datetimes_round_trip_as_aware_utc(database: Database) -> None:
    with database.unit_of_work() as uow:
        made = counters(uow).create(name="t")
    with database.unit_of_work() as uow:
        again = counters(uow).list()[0]
        assert again.id == made.id
    import datetime as dt

    from tests.support import WidgetRepository

    moment = dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    with database.unit_of_work() as uow:
        widget = uow.repository(WidgetRepository).create(name="w", released_at=moment)
    uow.session.expire_all()
    with database.unit_of_work() as uow:
        loaded = uow.repository(WidgetRepository).get_by_id(widget.id)
        assert loaded is not None
        assert loaded.released_at == moment
        assert loaded.released_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == dt.timedelta(0)


def test_a_dropped_into_raw_session_error_leaves_as_a_domain_error(database: Database) -> None:
    from db import DatabaseError

    with pytest.raises(DatabaseError), database.unit_of_work() as uow:
        uow.session.execute(text("SELECT * FROM no_such_table"))


def test_error_messages_and_causes_never_carry_bound_values(database: Database) -> None:
    from tests.support import WidgetRepository

    with database.unit_of_work() as uow:
        uow.repository(WidgetRepository).create(name="w1", secret_token="tok-SECRET-1")
    with pytest.raises(Conflict) as raised, database.unit_of_work() as uow:
        uow.repository(WidgetRepository).create(name="w1", secret_token="tok-SECRET-2")
    chain: Any = raised.value
    while chain is not None:
        assert "tok-SECRET" not in str(chain)
        chain = chain.__cause__


def test_a_duplicate_secret_never_appears_in_the_error_or_its_causes(database: Database) -> None:
    import uuid

    from db import BaseRepository
    from tests.models import Secretive

    class Secrets(BaseRepository[Secretive]):
        model = Secretive

    secret = f"argon2${uuid.uuid4().hex}"  # made at run time, so the test's own source lines cannot contain it
    with database.unit_of_work() as uow:
        uow.repository(Secrets).create(token=secret)
    for attempt in (lambda uow: uow.repository(Secrets).create(token=secret),
                    lambda uow: uow.repository(Secrets).create_many([{"token": secret}])):
        with pytest.raises(Conflict) as raised, database.unit_of_work() as uow:
            attempt(uow)
        shown = "".join(traceback.format_exception(raised.value))  # what logging.exception would print
        assert secret not in shown and secret[7:] not in shown


def test_opposite_lock_orders_deadlock_and_are_retried_to_the_exact_result(session_database: Database) -> None:
    import threading
    import uuid

    names = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with session_database.unit_of_work() as uow:
        ids = [counters(uow).create(name=name).id for name in names]
    # With one writer at a time (SQLite) the second cannot lock a row before the first commits: nobody waits for it.
    both_locked_first = threading.Barrier(2 if session_database.dialect.concurrent_writers else 1, timeout=10)
    failures: list[BaseException] = []

    def transfer(order: list[Any]) -> None:
        first_try = [True]

        def work(uow: UnitOfWork) -> None:
            for position, ident in enumerate(order):
                counter = counters(uow).get_by_id(ident, for_update=True)
                assert counter is not None
                counters(uow).update(counter, value=counter.value + 1)
                if position == 0 and first_try[0]:
                    first_try[0] = False
                    with contextlib.suppress(threading.BrokenBarrierError):
                        both_locked_first.wait()

        try:
            session_database.run_in_transaction(work, attempts=10)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=transfer, args=(order,)) for order in (ids, ids[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        with session_database.unit_of_work() as uow:
            assert [counters(uow).get_by_id(ident).value for ident in ids] == [2, 2]  # type: ignore[union-attr]
    finally:
        with session_database.unit_of_work() as uow:
            counters(uow).delete_many({"name__in": names}, hard=True)

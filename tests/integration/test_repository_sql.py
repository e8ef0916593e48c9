"""What only a real database can show: the SQL that runs, foreign keys, transactions after errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from db import BaseRepository, Conflict, Database, InvalidFilter
from tests.models import Part
from tests.support import GadgetRepository, WidgetRepository


class PartRepository(BaseRepository[Part]):
    model = Part


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)  # the test's connection is one of the engine's
    yield seen
    event.remove(database.engine, "before_cursor_execute", record)


def test_exists_asks_the_database_for_exists_not_a_count(database: Database, statements: list[str]) -> None:
    with database.unit_of_work() as uow:
        uow.repository(WidgetRepository).create(name="a")
        statements.clear()
        assert uow.repository(WidgetRepository).exists(name="a")
    query = next(s for s in statements if "widget" in s.lower())
    assert "EXISTS" in query.upper() and "COUNT" not in query.upper()


@pytest.mark.parametrize(
    "call",
    [
        lambda repo: repo.list(filters={"secret_token": "x"}),
        lambda repo: repo.list(order_by=["secret_token"]),
        lambda repo: repo.page(order_by=["-secret_token"]),
        lambda repo: repo.count({"name__regex": ".*"}),
        lambda repo: repo.page(after="forged"),
        lambda repo: repo.update_many({"nope": 1}, quantity=1),
    ],
)
def test_bad_filters_are_refused_before_any_sql_runs(database: Database, statements: list[str], call: Any) -> None:
    with database.unit_of_work() as uow:
        repo = uow.repository(WidgetRepository)
        statements.clear()
        with pytest.raises(InvalidFilter):
            call(repo)
        assert statements == []


def test_hard_deleting_a_row_that_is_still_referred_to_is_a_conflict(database: Database) -> None:
    with database.unit_of_work() as uow:
        gadget = uow.repository(GadgetRepository).create(owner="o", code="c")
        uow.repository(PartRepository).create(gadget_id=gadget.id, name="bolt")
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict) as raised:
            uow.repository(GadgetRepository).delete(gadget.id)
        assert "gadget" in str(raised.value)
        assert uow.repository(GadgetRepository).count() == 1


def test_a_missing_parent_is_a_conflict(database: Database) -> None:
    import uuid

    with database.unit_of_work() as uow, pytest.raises(Conflict):
        uow.repository(PartRepository).create(gadget_id=uuid.uuid4(), name="orphan")


def test_the_transaction_stays_usable_after_a_conflict(database: Database) -> None:
    with database.unit_of_work() as uow:
        widgets = uow.repository(WidgetRepository)
        widgets.create(name="a")
        with pytest.raises(Conflict):
            widgets.create(name="a")
        with pytest.raises(Conflict):
            widgets.create_many([{"name": "b"}, {"name": "a"}])
        widgets.update_many({"name": "a"}, name="a2")
        with pytest.raises(Conflict):
            widgets.create(name="a2")
        widgets.create(name="c")
    with database.unit_of_work() as uow:
        assert sorted(w.name for w in uow.repository(WidgetRepository).list()) == ["a2", "c"]


def test_the_repr_shows_the_class_and_id_but_never_a_secret(database: Database) -> None:
    with database.unit_of_work() as uow:
        widget = uow.repository(WidgetRepository).create(name="a", secret_token="tok-123")
    assert repr(widget) == f"<Widget {widget.id}>"
    assert "tok-123" not in repr(widget)


def test_bulk_update_refreshes_objects_already_loaded(database: Database) -> None:
    with database.unit_of_work() as uow:
        widgets = uow.repository(WidgetRepository)
        widget = widgets.create(name="a", quantity=1)
        widgets.update_many({"name": "a"}, quantity=5)
        assert widget.quantity == 5 and widget.version == 2


def test_get_by_id_for_update_locks_the_row(database: Database, engine_name: str,
                                           statements: list[str]) -> None:
    with database.unit_of_work() as uow:
        widget = uow.repository(WidgetRepository).create(name="a")
        uow.session.expunge_all()
        statements.clear()
        assert uow.repository(WidgetRepository).get_by_id(widget.id, for_update=True) is not None
    select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
    assert ("FOR UPDATE" in select.upper()) == (engine_name != "sqlite")

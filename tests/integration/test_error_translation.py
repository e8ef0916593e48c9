"""What a repository translates: the database's and the driver's refusals, and nothing else.

A value the driver itself cannot send (a lone surrogate, raised by the driver as a plain ``UnicodeEncodeError``)
becomes a ``ValidationError``; the same exception raised by the layer's own code, or a misuse of SQLAlchemy, leaves
unchanged. A refusal by the database becomes its ``db.errors`` class.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc, select, text

from db import BaseRepository, Conflict, Database, DatabaseError, ValidationError
from db.repositories.base_repository import translated
from tests.models import Widget
from tests.support import WidgetRepository


class Probe(BaseRepository[Widget]):
    """A repository with methods of its own, translated like every other."""

    model = Widget

    @translated
    def echo(self, value: Any) -> Any:
        return self.session.execute(text("SELECT :value"), {"value": value}).scalar()

    @translated
    def run(self, statement: str) -> Any:
        return self.session.execute(text(statement)).all()

    @translated
    def encode_first(self, value: str) -> Any:
        value.encode()  # the layer's own code: a UnicodeEncodeError here is a bug, not the driver's refusal
        return self.echo(value)

    @translated
    def misuse(self) -> Any:
        return self.session.execute(select(Widget).where("not a clause")).all()  # a string where a clause belongs


def test_a_value_the_driver_cannot_send_is_a_validation_error(database: Database) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError) as raised:
            uow.repository(Probe).echo("lone \ud800 surrogate")
        assert raised.value.__cause__ is None and "\ud800" not in str(raised.value)
        assert uow.repository(Probe).echo("fine") == "fine"  # the transaction is still usable


def test_the_same_error_raised_by_the_layers_own_code_leaves_unchanged(database: Database) -> None:
    with database.unit_of_work() as uow, pytest.raises(UnicodeEncodeError):
        uow.repository(Probe).encode_first("lone \ud800 surrogate")


def test_a_misuse_of_sqlalchemy_inside_a_repository_is_not_disguised(database: Database) -> None:
    with database.unit_of_work() as uow, pytest.raises(exc.ArgumentError) as raised:
        uow.repository(Probe).misuse()
    assert not isinstance(raised.value, DatabaseError)


def test_a_refusal_by_the_database_is_its_domain_error(database: Database) -> None:
    with database.unit_of_work() as uow:
        widgets = uow.repository(WidgetRepository)
        widgets.create(name="alpha")
        with pytest.raises(Conflict):
            widgets.create(name="alpha")


def test_sql_the_database_cannot_run_is_a_database_error_at_the_unit_of_work(database: Database) -> None:
    with pytest.raises(DatabaseError), database.unit_of_work() as uow:
        uow.session.execute(text("SELECT * FROM no_such_table"))


@pytest.mark.parametrize("statement", ["SELECT * FROM no_such_table", "SELECT no_such_column FROM widget",
                                       "INSERT INTO widget (no_such_column) VALUES (1)"])
def test_a_missing_table_or_column_says_the_schema_is_missing_and_what_to_run(
    database: Database, statement: str
) -> None:
    from db import SchemaMissing

    with pytest.raises(SchemaMissing) as raised, database.unit_of_work() as uow:
        uow.repository(Probe).run(statement)
    assert "python -m db create" in str(raised.value)

"""The same behavioural contract runs against InMemoryRepository and against BaseRepository on every engine.

A ``Backend`` hands out repositories. ``repo(cls)`` belongs to the test's main unit of work; ``other(cls)``
to a second, concurrent one (a second session on the database; a second fake sharing the fake's store).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import exc
from sqlalchemy.orm import Session

from db import BaseRepository, Database
from tests.conftest import TestDatabases, selected_engines
from tests.models import Gadget, Widget

R = TypeVar("R")


class WidgetRepository(BaseRepository[Widget]):
    model = Widget


class GadgetRepository(BaseRepository[Gadget]):
    model = Gadget


def fakes() -> dict[type, type]:
    from db.testing import InMemoryRepository

    class FakeWidgetRepository(InMemoryRepository[Widget]):
        model = Widget

    class FakeGadgetRepository(InMemoryRepository[Gadget]):
        model = Gadget

    return {WidgetRepository: FakeWidgetRepository, GadgetRepository: FakeGadgetRepository}


class Backend:
    name: str

    def repo(self, cls: type[BaseRepository[Any]]) -> Any:
        raise NotImplementedError

    def other(self, cls: type[BaseRepository[Any]]) -> Any:
        raise NotImplementedError

    def commit(self) -> None:
        """End the main unit of work's transaction (the next call starts a new one)."""


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        from db.testing import InMemoryStore

        self.store = InMemoryStore()
        self.fakes = fakes()
        self._main: dict[type, Any] = {}

    def repo(self, cls: type[BaseRepository[Any]]) -> Any:
        if cls not in self._main:
            self._main[cls] = self.fakes[cls](self.store)
        return self._main[cls]

    def other(self, cls: type[BaseRepository[Any]]) -> Any:
        return self.fakes[cls](self.store)


class SQLBackend(Backend):
    def __init__(self, name: str, database: Database) -> None:
        self.name = name
        self.database = database
        self.session = database._sessions()
        self._sessions: list[Session] = [self.session]

    def repo(self, cls: type[BaseRepository[Any]]) -> Any:
        return cls(self.session)

    def other(self, cls: type[BaseRepository[Any]]) -> Any:
        session = self.database._sessions()
        self._sessions.append(session)
        return cls(session)

    def commit(self) -> None:
        self.session.commit()

    def close(self) -> None:
        # Each session's transaction is a SAVEPOINT on the one test connection. Ending an outer one ends the
        # inner ones with it, so a later session's savepoint may already be gone: the outer rollback that
        # follows undoes everything anyway.
        for session in reversed(self._sessions):
            with contextlib.suppress(exc.DBAPIError):
                session.close()


@pytest.fixture(params=["memory", *selected_engines()])
def backend(request: pytest.FixtureRequest, test_databases: TestDatabases) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    with test_databases.get(request.param).isolated() as database:
        sql = SQLBackend(request.param, database)
        try:
            yield sql
        finally:
            sql.close()


@pytest.fixture
def widgets(backend: Backend) -> Any:
    return backend.repo(WidgetRepository)


@pytest.fixture
def gadgets(backend: Backend) -> Any:
    return backend.repo(GadgetRepository)

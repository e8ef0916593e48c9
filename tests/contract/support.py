"""The backends the contract tests run on: the in-memory fake, and a real database on each engine.

A ``Backend`` hands out repositories. ``repo(cls)`` belongs to the test's main unit of work; ``other(cls)``
to a second, concurrent one (a second session on the database; a second fake sharing the fake's store).
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import exc
from sqlalchemy.orm import Session

from db import BaseRepository, Database
from tests.models import Gadget, Widget
from tests.support import GadgetRepository, WidgetRepository


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
        self.session = database.sessions()
        self._sessions: list[Session] = [self.session]

    def repo(self, cls: type[BaseRepository[Any]]) -> Any:
        return cls(self.session)

    def other(self, cls: type[BaseRepository[Any]]) -> Any:
        session = self.database.sessions()
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

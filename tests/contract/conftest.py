"""The same behavioural contract runs against InMemoryRepository and against BaseRepository on every engine
(the backends are in ``tests/contract/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.support import Backend, GadgetRepository, MemoryBackend, SQLBackend, WidgetRepository
from tests.support import TestDatabases, selected_engines


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

"""Real concurrency: several processes against one database, with commits (no test transaction to hide in)."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from db import Database
from tests.integration import workers

pytestmark = pytest.mark.slow
PROCESSES = 4


@pytest.fixture
def committed(session_database: Database) -> Iterator[Database]:
    """The engine's database without the rollback wrapper; the test's rows are removed afterwards."""
    yield session_database
    with session_database.unit_of_work() as uow:
        uow.repository(workers.GadgetRepository).delete_many({"owner__startswith": "race-"})
        uow.repository(workers.CounterRepository).delete_many({"name__startswith": "race-"}, hard=True)


def run_together(fn: Any, argument_lists: list[tuple[Any, ...]]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(len(argument_lists))
        with ProcessPoolExecutor(len(argument_lists), mp_context=context) as pool:
            futures = [pool.submit(fn, *arguments, start) for arguments in argument_lists]
            return [future.result(timeout=600) for future in futures]


def test_concurrent_read_modify_write_increments_end_with_the_exact_total(committed: Database) -> None:
    with committed.unit_of_work() as uow:
        counter = uow.repository(workers.CounterRepository).create(name=f"race-{uuid.uuid4().hex[:8]}")
    url = committed.url.render_as_string(hide_password=False)
    run_together(workers.increment, [(url, str(counter.id), 250)] * PROCESSES)
    with committed.unit_of_work() as uow:
        final = uow.repository(workers.CounterRepository).get_by_id(counter.id)
    assert final is not None
    assert final.value == PROCESSES * 250
    assert final.version == PROCESSES * 250 + 1


def test_concurrent_get_or_create_on_one_key_yields_one_row(committed: Database) -> None:
    owner = f"race-{uuid.uuid4().hex[:8]}"
    url = committed.url.render_as_string(hide_password=False)
    results = run_together(workers.get_or_create, [(url, owner)] * PROCESSES)
    assert len({gadget_id for gadget_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with committed.unit_of_work() as uow:
        assert uow.repository(workers.GadgetRepository).count({"owner": owner}) == 1


def test_concurrent_upserts_on_one_key_yield_one_row(committed: Database) -> None:
    owner = f"race-{uuid.uuid4().hex[:8]}"
    url = committed.url.render_as_string(hide_password=False)
    ids = run_together(workers.upsert, [(url, owner, f"label-{i}") for i in range(PROCESSES)])
    assert len(set(ids)) == 1
    with committed.unit_of_work() as uow:
        gadgets = uow.repository(workers.GadgetRepository).list(filters={"owner": owner})
    assert len(gadgets) == 1
    assert gadgets[0].label in {f"label-{i}" for i in range(PROCESSES)}

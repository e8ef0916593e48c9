"""Code run in child processes by the concurrency tests (importable, so 'spawn' can find it)."""

from __future__ import annotations

from typing import Any

from db import BaseRepository, Database, UnitOfWork
from tests.models import Counter, Gadget


class CounterRepository(BaseRepository[Counter]):
    model = Counter


class GadgetRepository(BaseRepository[Gadget]):
    model = Gadget


def increment(url: str, counter_id: str, times: int, start: Any) -> int:
    """Read-modify-write ``times`` increments, each in its own retried transaction; returns the retries."""
    database = Database(url, attempts=50)
    start.wait(120)

    def bump(uow: UnitOfWork) -> None:
        counters = uow.repository(CounterRepository)
        counter = counters.get_by_id(counter_id, for_update=True)
        assert counter is not None
        counters.update(counter, value=counter.value + 1)

    for _ in range(times):
        database.run_in_transaction(bump)
    database.dispose()
    return 0


def get_or_create(url: str, owner: str, start: Any) -> tuple[str, bool]:
    database = Database(url, attempts=20)
    start.wait(120)

    def work(uow: UnitOfWork) -> tuple[str, bool]:
        gadget, created = uow.repository(GadgetRepository).get_or_create(owner=owner, code="k", defaults={"hits": 1})
        return str(gadget.id), created

    result = database.run_in_transaction(work)
    database.dispose()
    return result


def upsert(url: str, owner: str, label: str, start: Any) -> str:
    database = Database(url, attempts=20)
    start.wait(120)

    def work(uow: UnitOfWork) -> str:
        return str(uow.repository(GadgetRepository).upsert({"owner": owner, "code": "k", "label": label},
                                                            match=["owner", "code"]).id)

    result = database.run_in_transaction(work)
    database.dispose()
    return result


def upsert_many(url: str, owner: str, label: str, keys: int, start: Any) -> list[str]:
    """Upsert ``keys`` gadgets of ``owner`` in one call (the codes every racer shares); returns their ids."""
    database = Database(url, attempts=20)
    start.wait(120)

    def work(uow: UnitOfWork) -> list[str]:
        rows = ({"owner": owner, "code": f"k{n}", "label": label} for n in range(keys))
        written = uow.repository(GadgetRepository).upsert_many(rows, match=["owner", "code"], returning=True)
        return [str(gadget.id) for gadget in written]

    result = database.run_in_transaction(work)
    database.dispose()
    return result

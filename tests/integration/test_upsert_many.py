"""``upsert_many``: many upserts in batches of one statement each, on every engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from db import BaseRepository, Conflict, Database, InvalidFilter, UnitOfWork, ValidationError
from db.repositories.account_repository import AccountRepository
from tests.integration import workers
from tests.integration.test_concurrency import PROCESSES, committed, run_together
from tests.models import Note
from tests.support import GadgetRepository, WidgetRepository

__all__ = ["committed"]  # the fixture, shared with the other race tests


class NoteRepository(BaseRepository[Note]):
    model = Note


class SmallBatches(WidgetRepository):
    batch_size = 4


@pytest.fixture
def uow(database: Database) -> Iterator[UnitOfWork]:
    with database.unit_of_work() as unit:
        yield unit


def widgets(uow: UnitOfWork) -> WidgetRepository:
    return uow.repository(WidgetRepository)


def test_inserts_and_updates_mixed_in_one_call(uow: UnitOfWork) -> None:
    kept = widgets(uow).create(name="kept", quantity=1)
    count = widgets(uow).upsert_many([{"name": "kept", "quantity": 5}, {"name": "new", "quantity": 7}],
                                     match=["name"])
    assert count == 2
    rows = {w.name: w for w in widgets(uow).list()}
    assert rows["kept"].id == kept.id and rows["kept"].quantity == 5
    assert rows["new"].quantity == 7 and rows["new"].version == 1


def test_a_generator_of_more_than_one_batch(uow: UnitOfWork) -> None:
    gadgets = uow.repository(GadgetRepository)
    gadgets.create_many({"owner": "o", "code": f"c{n}", "hits": 0} for n in range(0, 12_000, 2))
    rows = ({"owner": "o", "code": f"c{n}", "hits": n} for n in range(12_000))
    assert gadgets.upsert_many(rows, match=["owner", "code"]) == 12_000
    assert gadgets.count() == 12_000
    assert gadgets.count({"hits__gt": 0}) == 11_999
    assert gadgets.list(filters={"code": "c11998"})[0].hits == 11_998


def test_an_update_bumps_version_and_updated_at_and_keeps_id_and_created_at(uow: UnitOfWork) -> None:
    first = widgets(uow).create(name="w", quantity=1)
    before = (first.id, first.created_at, first.updated_at, first.version)
    widgets(uow).upsert_many([{"name": "w", "quantity": 2}, {"name": "x"}], match=["name"])
    after = widgets(uow).get_by_id(before[0])
    assert after is not None and after.quantity == 2
    assert (after.id, after.created_at) == before[:2]
    assert after.updated_at >= before[2] and after.version == before[3] + 1
    (made,) = widgets(uow).list(filters={"name": "x"})
    assert made.version == 1 and made.created_at == made.updated_at and made.deleted_at is None


def test_a_soft_deleted_row_is_brought_back(uow: UnitOfWork) -> None:
    gone = widgets(uow).create(name="gone")
    widgets(uow).delete(gone)
    widgets(uow).upsert_many([{"name": "gone", "quantity": 3}], match=["name"])
    back = widgets(uow).get_by_id(gone.id)
    assert back is not None and back.deleted_at is None and back.quantity == 3


@pytest.mark.parametrize("bad", [{"name": "b", "quantity": "many"}, {"name": "b", "no_such_field": 1},
                                 {"name": "b", "version": 3}, {"quantity": 1}, {"name": None}, "not a mapping"])
def test_a_bad_row_writes_nothing(uow: UnitOfWork, bad: Any) -> None:
    widgets(uow).create(name="kept", quantity=1)
    rows = [*({"name": f"r{n}"} for n in range(9)), {"name": "kept", "quantity": 2}, bad]
    with pytest.raises(ValidationError):
        uow.repository(SmallBatches).upsert_many(rows, match=["name"])
    assert [(w.name, w.quantity) for w in widgets(uow).list()] == [("kept", 1)]


def test_values_are_converted_as_create_many_converts_them(uow: UnitOfWork) -> None:
    (made,) = widgets(uow).upsert_many([{"name": "p", "price": "1.005", "released_at": "2024-01-02T03:04:05+02:00"}],
                                       match=["name"], returning=True)
    assert str(made.price) == "1.01" and made.released_at.isoformat() == "2024-01-02T01:04:05+00:00"


@pytest.mark.parametrize("match", [["quantity"], ["no_such_field"], []])
def test_a_match_that_is_not_a_unique_key_is_refused(uow: UnitOfWork, match: list[str]) -> None:
    with pytest.raises(InvalidFilter):
        widgets(uow).upsert_many([{"name": "a", "quantity": 1}], match=match)
    assert widgets(uow).count() == 0


def test_a_row_clashing_on_another_unique_key_is_a_conflict(uow: UnitOfWork) -> None:
    first = widgets(uow).create(name="a")
    with pytest.raises(Conflict):
        widgets(uow).upsert_many([{"name": "ok"}, {"id": first.id, "name": "b"}], match=["name"])
    assert [w.name for w in widgets(uow).list()] == ["a"]


def test_returning_gives_the_rows_in_input_order(uow: UnitOfWork) -> None:
    old = widgets(uow).create(name="n3")
    names = [f"n{n}" for n in (5, 1, 3, 9, 0, 7)]
    written = uow.repository(SmallBatches).upsert_many(({"name": name} for name in names), match=["name"],
                                                        returning=True)
    assert [w.name for w in written] == names
    assert written[2].id == old.id and written[2].version == 2


def test_an_audited_model_gets_one_bulk_entry_per_batch(uow: UnitOfWork) -> None:
    class NoteBatches(NoteRepository):
        batch_size = 4

    notes = uow.repository(NoteBatches)
    old = notes.create(title="old")
    rows = [{"id": old.id, "title": "changed"}, *({"id": uuid.uuid4(), "title": f"n{n}"} for n in range(6))]
    assert notes.upsert_many(rows, match=["id"]) == 7
    uow.flush()
    recorded = [e for e in uow.audit.list(filters={"entity_type": "note"}, order_by=["seq"])
                if e.action == "upsert_many"]
    assert len(recorded) == 2
    listed = [ident for entry in recorded for ident in json.loads(entry.changes or "{}")["ids"]]
    assert listed == [str(row["id"]) for row in rows]
    assert notes.get_by_id(old.id).title == "changed"  # type: ignore[union-attr]


@pytest.mark.slow
def test_concurrent_upsert_many_of_the_same_keys_end_with_one_row_per_key(committed: Database) -> None:
    owner = f"race-{uuid.uuid4().hex[:8]}"
    url = committed.url.render_as_string(hide_password=False)
    keys = 300
    results = run_together(workers.upsert_many, [(url, owner, f"label-{i}", keys) for i in range(PROCESSES)])
    assert all(ids == results[0] for ids in results)  # every racer wrote the same rows
    with committed.unit_of_work() as uow:
        gadgets = uow.repository(GadgetRepository).list(filters={"owner": owner})
    assert len(gadgets) == keys
    assert sorted(str(g.id) for g in gadgets) == sorted(results[0])



def test_an_accounts_rows_are_checked_as_create_many_checks_them(uow: UnitOfWork) -> None:
    accounts = uow.repository(AccountRepository)
    accounts.upsert_many([{"name": "A", "slug": "a"}], match=["slug"])
    with pytest.raises(ValidationError):
        accounts.upsert_many([{"name": "A2", "slug": "a"}, {"name": "B", "slug": "b", "plan": "no such plan"}],
                             match=["slug"])
    assert [(a.slug, a.name) for a in accounts.list()] == [("a", "A")]

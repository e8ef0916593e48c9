"""What is particular to the in-memory fake: shared stores, copies on read, stored values and constraints.

The behaviour the fake shares with the SQL repository is checked in ``tests/contract``.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import ForeignKey, Index, MetaData, String
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db import BaseRepository, Conflict, DatabaseError, InvalidFilter, StaleVersion, ValidationError
from db.base import NAMING_CONVENTION, TYPE_ANNOTATION_MAP
from db.models.base import Timestamps, UUIDPrimaryKey
from db.repositories import query_spec as qs
from db.testing.memory_repository import InMemoryRepository, InMemoryStore, matches
from tests.models import Counter, Gadget, Part, Widget

UTC = dt.UTC


class Widgets(InMemoryRepository[Widget]):
    model = Widget


class Gadgets(InMemoryRepository[Gadget]):
    model = Gadget


class Parts(InMemoryRepository[Part]):
    model = Part


class Counters(InMemoryRepository[Counter]):
    model = Counter


# Models of the fake's own: what the shared test models do not have.


class LocalBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


class Doc(UUIDPrimaryKey, Timestamps, LocalBase):
    __tablename__ = "doc"
    __table_args__ = (Index("ix_doc_slug_lang", "slug", "lang", unique=True),)

    slug: Mapped[str] = mapped_column(String(20))
    lang: Mapped[str | None] = mapped_column(String(5))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Note(UUIDPrimaryKey, LocalBase):
    __tablename__ = "note"

    doc_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doc.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(String(50))


class Tag(UUIDPrimaryKey, LocalBase):
    __tablename__ = "tag"

    doc_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("doc.id", ondelete="SET NULL"))


class Ticket(LocalBase):
    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


class Docs(InMemoryRepository[Doc]):
    model = Doc


class Notes(InMemoryRepository[Note]):
    model = Note


class Tags(InMemoryRepository[Tag]):
    model = Tag


class Tickets(InMemoryRepository[Ticket]):
    model = Ticket


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


# --- stores ------------------------------------------------------------------------------------------------


def test_repositories_sharing_a_store_see_each_others_writes(store: InMemoryStore) -> None:
    mine, theirs = Widgets(store), Widgets(store)
    created = mine.create(name="alpha")
    assert theirs.get_by_id(created.id).name == "alpha"
    theirs.update(created.id, quantity=3)
    assert mine.get_by_id(created.id).quantity == 3
    assert set(store.tables) >= {"widget"} and len(store.rows("widget")) == 1


def test_each_repository_without_a_store_has_its_own() -> None:
    Widgets().create(name="alpha")
    assert Widgets().count() == 0


def test_the_store_keeps_plain_row_snapshots(store: InMemoryStore) -> None:
    created = Widgets(store).create(name="alpha")
    (row,) = store.rows("widget").values()
    assert type(row) is dict and row["name"] == "alpha" and row["id"] == created.id
    store.clear()
    assert Widgets(store).count() == 0


# --- copies on read ------------------------------------------------------------------------------------------


def test_every_read_hands_out_a_fresh_detached_instance(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha")
    first, second = widgets.get_by_id(created.id), widgets.get_by_id(created.id)
    assert first is not second and first is not created
    assert sa_inspect(first).detached and sa_inspect(first).identity == (created.id,)
    first.name = "changed locally"
    assert widgets.get_by_id(created.id).name == "alpha"
    assert widgets.list()[0] is not widgets.list()[0]


def test_mutable_values_are_copied_in_and_out(store: InMemoryStore) -> None:
    docs = Docs(store)
    body = {"tags": ["a"]}
    created = docs.create(slug="s", body=body)
    body["tags"].append("from the caller")
    created.body["tags"].append("from an instance")
    assert docs.get_by_id(created.id).body == {"tags": ["a"]}
    assert docs.create(slug="t").body == {}


def test_an_update_through_one_copy_leaves_other_copies_as_they_were(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha")
    other = widgets.get_by_id(created.id)
    widgets.update(created, quantity=5)
    assert created.quantity == 5 and created.version == 2
    assert other.quantity == 0 and other.version == 1


# --- versions and stale copies ----------------------------------------------------------------------------------


def test_a_stale_copy_is_refused_reloaded_and_the_first_write_survives(store: InMemoryStore) -> None:
    mine, theirs = Widgets(store), Widgets(store)
    created = mine.create(name="alpha")
    my_copy, their_copy = mine.get_by_id(created.id), theirs.get_by_id(created.id)
    theirs.update(their_copy, quantity=100)
    with pytest.raises(StaleVersion):
        mine.update(my_copy, quantity=1, name="mine")
    assert (my_copy.quantity, my_copy.name, my_copy.version) == (100, "alpha", 2)  # reloaded, as after a rollback
    assert theirs.get_by_id(created.id).quantity == 100
    assert mine.update(my_copy, quantity=1).version == 3


def test_a_stale_copy_cannot_be_soft_or_hard_deleted(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha")
    stale, also_stale = widgets.get_by_id(created.id), widgets.get_by_id(created.id)
    widgets.update(created, quantity=1)
    with pytest.raises(StaleVersion):
        widgets.delete(stale)
    with pytest.raises(StaleVersion):
        widgets.delete(also_stale, hard=True)
    assert widgets.count() == 1
    widgets.delete(stale)  # reloaded by the failure, so no longer stale
    assert widgets.count() == 0


def test_a_row_deleted_by_someone_else_cannot_be_updated(store: InMemoryStore) -> None:
    gadgets = Gadgets(store)
    gadget = gadgets.create(owner="o", code="c")
    Gadgets(store).delete(gadget.id)
    with pytest.raises(StaleVersion):
        gadgets.update(gadget, label="x")
    gadgets.delete(gadget)  # deleting it again is quietly nothing, as with a session


def test_changes_made_on_the_instance_are_saved_with_the_update(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha")
    created.quantity = 7
    widgets.update(created, category="tools")
    stored = widgets.get_by_id(created.id)
    assert (stored.quantity, stored.category, stored.version) == (7, "tools", 2)


def test_an_update_that_changes_nothing_writes_nothing(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha", price=Decimal("9.50"))
    same = widgets.update(created.id, price=Decimal("9.5"), quantity=0)
    assert same.version == 1 and same.updated_at == created.updated_at


def test_update_bumps_version_and_updated_at_and_keeps_created_at(store: InMemoryStore) -> None:
    counters = Counters(store)
    counter = counters.create(name="c")
    assert counters.update(counter, value=1).version == 2
    widget = Widgets(store).create(name="alpha")
    changed = Widgets(store).update(widget.id, quantity=1)
    assert changed.updated_at >= widget.updated_at and changed.created_at == widget.created_at


def test_a_never_stored_instance_given_to_update_is_inserted_as_a_session_would(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    fresh = Widget(name="new")
    assert widgets.update(fresh, quantity=2) is fresh
    assert fresh.id is not None and fresh.version == 1 and sa_inspect(fresh).detached
    assert widgets.get_by_id(fresh.id).quantity == 2


# --- stored values -------------------------------------------------------------------------------------------


def test_values_are_stored_as_the_engines_return_them(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    created = widgets.create(name="alpha", released_at=moment, price=Decimal("1.005"), ratio=3, active=True)
    assert created.released_at == moment and created.released_at.utcoffset() == dt.timedelta(0)
    assert created.price == Decimal("1.01") and str(created.price) == "1.01"
    assert type(created.ratio) is float and created.active is True
    assert widgets.create(name="beta", price="2.5").price == Decimal("2.50")


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x" * 101},
        {"name": "nul\x00"},
        {"name": 5},
        {"quantity": 2**63},
        {"quantity": True},
        {"quantity": "5"},
        {"price": Decimal("1e10")},
        {"price": "many"},
        {"ratio": float("nan")},
        {"active": "yes"},
        {"released_at": dt.datetime(2026, 1, 1)},
        {"released_at": "2026-01-01T00:00:00"},
        {"id": b"\x01" * 16},
        {"price": 1.5},
        {"active": 1},
    ],
)
def test_values_an_engine_would_refuse_are_refused(store: InMemoryStore, fields: dict[str, Any]) -> None:
    widgets = Widgets(store)
    with pytest.raises(ValidationError) as raised:
        widgets.create(**{"name": "alpha", **fields})
    assert raised.value.field == next(iter(fields))
    assert widgets.count() == 0


def test_iso_and_uuid_text_are_stored_parsed_as_every_engine_stores_them(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha", released_at="2026-01-01T12:00:00+02:00",
                             id="0192f0c4-0000-7000-8000-000000000000")
    assert created.released_at == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert created.id == uuid.UUID("0192f0c4-0000-7000-8000-000000000000")


def test_none_takes_the_default_in_create_but_is_refused_in_update(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    created = widgets.create(name="alpha", quantity=None, id=None)
    assert created.quantity == 0 and created.id is not None
    with pytest.raises(ValidationError, match="quantity"):
        widgets.update(created, quantity=None)
    with pytest.raises(ValidationError, match="name"):
        widgets.create(quantity=1)


# --- bulk ----------------------------------------------------------------------------------------------------


def test_create_many_stores_nothing_when_any_row_fails(store: InMemoryStore) -> None:
    widgets = Widgets(store)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "a"}, {"name": "b", "released_at": dt.datetime(2026, 1, 1)}])
    with pytest.raises(Conflict):
        widgets.create_many([{"name": "a"}, {"name": "b"}, {"name": "a"}])
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "a"}, {"name": "b", "quantity": None}])
    assert widgets.count(include_deleted=True) == 0


def test_create_many_stamps_one_instant_per_call_and_distinct_ids(store: InMemoryStore) -> None:
    rows = Widgets(store).create_many(({"name": f"w{i}"} for i in range(3)), returning=True)
    assert len({row.created_at for row in rows}) == 1
    assert len({row.id for row in rows}) == 3


def test_update_many_on_a_table_with_nothing_to_stamp_needs_fields(store: InMemoryStore) -> None:
    gadget = Gadgets(store).create(owner="o", code="c")
    parts = Parts(store)
    parts.create(gadget_id=gadget.id, name="p")
    with pytest.raises(DatabaseError):
        parts.update_many({"name": "p"})
    assert parts.update_many({"name": "p"}, name="q") == 1


# --- constraints ---------------------------------------------------------------------------------------------


def test_a_unique_index_and_a_composite_key_are_enforced_and_nulls_never_collide(store: InMemoryStore) -> None:
    docs = Docs(store)
    docs.create(slug="a", lang="en")
    with pytest.raises(Conflict) as raised:
        docs.create(slug="a", lang="en")
    assert raised.value.constraint == "ix_doc_slug_lang"
    docs.create(slug="a", lang=None)
    docs.create(slug="a", lang=None)
    assert docs.upsert({"slug": "a", "lang": "en", "body": {"v": 2}}, match=["slug", "lang"]).body == {"v": 2}
    assert docs.count() == 3


def test_a_conflicting_update_leaves_the_row_as_it_was(store: InMemoryStore) -> None:
    gadgets = Gadgets(store)
    gadgets.create(owner="o", code="a")
    other = gadgets.create(owner="o", code="b", label="keep")
    with pytest.raises(Conflict, match="uq_gadget_owner_code"):
        gadgets.update(other, code="a", label="lost")
    assert other.label == "keep" and gadgets.get_by_id(other.id).code == "b"


def test_foreign_keys_hold_between_repositories_sharing_a_store(store: InMemoryStore) -> None:
    gadgets, parts = Gadgets(store), Parts(store)
    with pytest.raises(Conflict, match="fk_part_gadget_id_gadget"):
        parts.create(gadget_id=uuid.uuid4(), name="orphan")
    gadget = gadgets.create(owner="o", code="c")
    part = parts.create(gadget_id=gadget.id, name="p")
    with pytest.raises(Conflict) as raised:
        gadgets.delete(gadget)
    assert raised.value.entity == "gadget" and raised.value.constraint == "fk_part_gadget_id_gadget"
    parts.delete(part)
    gadgets.delete(gadget)
    assert gadgets.count() == 0


def test_foreign_keys_can_be_switched_off() -> None:
    store = InMemoryStore(enforce_foreign_keys=False)
    assert Parts(store).create(gadget_id=uuid.uuid4(), name="orphan").name == "orphan"


def test_ondelete_cascade_and_set_null_apply_to_hard_deletes(store: InMemoryStore) -> None:
    docs, notes, tags = Docs(store), Notes(store), Tags(store)
    doc = docs.create(slug="a")
    notes.create(doc_id=doc.id, text="n")
    tag = tags.create(doc_id=doc.id)
    docs.delete(doc)
    assert notes.count() == 0 and tags.get_by_id(tag.id).doc_id is None


def test_an_integer_primary_key_is_numbered_by_the_store(store: InMemoryStore) -> None:
    tickets = Tickets(store)
    assert [tickets.create(title="a").id, tickets.create(title="b").id] == [1, 2]
    tickets.create(id=10, title="c")
    assert tickets.create_many([{"title": "d"}], returning=True)[0].id == 11
    tickets.delete(11)
    assert tickets.create(title="e").id == 12
    assert tickets.get_by_id(1).title == "a"


# --- rules shared with the SQL repository --------------------------------------------------------------------


def test_the_policy_is_built_exactly_as_for_the_sql_repository() -> None:
    class Real(BaseRepository[Widget]):
        model = Widget
        sortable = frozenset({"name"})

    class Fake(InMemoryRepository[Widget]):
        model = Widget
        sortable = frozenset({"name"})

    assert Fake.policy() == Real.policy()
    with pytest.raises(InvalidFilter):
        Fake().list(order_by=["quantity"])


NULL = None


@pytest.mark.parametrize(
    ("op", "operand", "value", "expected"),
    [
        ("eq", 1, NULL, False),
        ("ne", 1, NULL, False),
        ("ne", 1, 2, True),
        ("lt", 1, NULL, False),
        ("in", (), 1, False),
        ("in", (1, 2), NULL, False),
        ("not_in", (), NULL, True),
        ("not_in", (1,), NULL, False),
        ("not_in", (1,), 2, True),
        ("between", (1, 3), 3, True),
        ("between", (3, 1), 2, False),
        ("contains", "ETA", "Zeta", True),
        ("contains", "%", "delta_x", False),
        ("contains", "_", "delta_x", True),
        ("startswith", "eps", "Epsilon", True),
        ("startswith", "", NULL, False),
        ("isnull", True, NULL, True),
        ("isnull", False, NULL, False),
        ("isnull", True, 0, False),
    ],
)
def test_matches_follows_sql(op: str, operand: Any, value: Any, expected: bool) -> None:
    assert matches(qs.Condition("field", op, operand), value) is expected


def test_concurrent_get_or_create_makes_one_row(store: InMemoryStore) -> None:
    results: list[tuple[Any, bool]] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(Counters(store).get_or_create(name="shared"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(created for _, created in results) == 1
    assert len({item.id for item, _ in results}) == 1

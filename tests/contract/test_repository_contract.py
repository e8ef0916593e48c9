"""What every repository promises, checked on the in-memory fake and on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from db import Conflict, InvalidFilter, NotFound, StaleVersion, ValidationError
from tests.contract.conftest import Backend, GadgetRepository, WidgetRepository

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

SEED: list[dict[str, Any]] = [
    {"name": "alpha", "category": "tools", "quantity": 5, "price": Decimal("9.50"), "ratio": 0.5,
     "released_at": T0},
    {"name": "beta", "category": "tools", "quantity": 0, "price": Decimal("1.00"), "ratio": None,
     "released_at": T0 + dt.timedelta(days=1)},
    {"name": "gamma", "category": None, "quantity": 12, "price": Decimal("3.25"), "ratio": 1.5,
     "released_at": None},
    {"name": "delta_%x", "category": "toys", "quantity": 7, "price": Decimal("7.00"), "ratio": 2.0,
     "released_at": T0 - dt.timedelta(days=3), "active": False},
    {"name": "Epsilon", "category": "toys", "quantity": 5, "price": Decimal("0.10"), "ratio": 0.5,
     "released_at": T0 + dt.timedelta(hours=5)},
    {"name": "zeta", "category": None, "quantity": 3, "price": Decimal("2.00"), "ratio": None,
     "released_at": None, "secret_token": "s3cr3t"},
]


@pytest.fixture
def seeded(widgets: Any) -> Any:
    widgets.create_many(SEED)
    return widgets


def names(items: list[Any]) -> list[str]:
    return [item.name for item in items]


# --- create -----------------------------------------------------------------------------------------------


def test_create_fills_a_uuid7_id_utc_timestamps_and_version_one(widgets: Any) -> None:
    before = dt.datetime.now(UTC)
    widget = widgets.create(name="alpha")
    assert isinstance(widget.id, uuid.UUID) and widget.id.version == 7
    assert widget.created_at.tzinfo is not None and widget.created_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= widget.created_at <= dt.datetime.now(UTC) + dt.timedelta(seconds=1)
    assert widget.version == 1 and widget.deleted_at is None and widget.quantity == 0


def test_a_created_row_reads_back_with_aware_datetimes(widgets: Any, backend: Backend) -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    created = widgets.create(name="alpha", released_at=moment)
    backend.commit()
    again = backend.other(WidgetRepository).get_by_id(created.id)
    assert again.released_at == moment and again.released_at.utcoffset() == dt.timedelta(0)


def test_a_duplicate_unique_value_is_a_conflict_naming_the_entity_and_the_repository_stays_usable(
    widgets: Any,
) -> None:
    widgets.create(name="alpha")
    with pytest.raises(Conflict) as raised:
        widgets.create(name="alpha")
    assert "widget" in str(raised.value)
    assert widgets.create(name="beta").name == "beta"
    assert widgets.count() == 2


def test_an_unknown_field_is_a_validation_error(widgets: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="alpha", colour="red")


def test_a_naive_datetime_is_refused(widgets: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="alpha", released_at=dt.datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "beta", "released_at": dt.datetime(2026, 1, 1)}])
    assert widgets.count() == 0


def test_create_many_consumes_a_generator_and_returns_the_count(widgets: Any) -> None:
    count = widgets.create_many({"name": f"w{i}", "quantity": i} for i in range(1234))
    assert count == 1234
    assert widgets.count() == 1234
    assert widgets.count({"quantity__gte": 1000}) == 234


def test_create_many_fills_distinct_ids_timestamps_and_defaults(widgets: Any) -> None:
    widgets.create_many([{"name": "a"}, {"name": "b", "quantity": 2}])
    rows = widgets.list(order_by=["name"])
    assert len({row.id for row in rows}) == 2
    assert all(row.id.version == 7 and row.created_at.tzinfo and row.version == 1 for row in rows)
    assert [row.quantity for row in rows] == [0, 2]
    assert all(row.active is True and row.deleted_at is None for row in rows)


def test_create_many_returning_gives_the_instances_in_input_order(widgets: Any) -> None:
    created = widgets.create_many(({"name": f"w{i:03}"} for i in reversed(range(30))), returning=True)
    assert names(created) == [f"w{i:03}" for i in reversed(range(30))]
    assert all(isinstance(item.id, uuid.UUID) for item in created)


def test_create_many_is_all_or_nothing(widgets: Any) -> None:
    widgets.create(name="taken")
    rows = [{"name": f"w{i}"} for i in range(50)] + [{"name": "taken"}]
    with pytest.raises(Conflict):
        widgets.create_many(rows)
    assert widgets.count() == 1


def test_create_many_names_a_missing_required_field(widgets: Any) -> None:
    with pytest.raises(ValidationError, match="name"):
        widgets.create_many([{"quantity": 1}])


def test_create_many_refuses_unknown_fields(widgets: Any) -> None:
    with pytest.raises(ValidationError, match="colour"):
        widgets.create_many([{"name": "a", "colour": "red"}])


# --- read -------------------------------------------------------------------------------------------------


def test_get_by_id_finds_the_row_and_returns_none_for_a_missing_id(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    assert seeded.get_by_id(alpha.id).name == "alpha"
    assert seeded.get_by_id(str(alpha.id)).name == "alpha"
    assert seeded.get_by_id(uuid.uuid4()) is None


def test_get_by_id_refuses_a_malformed_id(seeded: Any) -> None:
    with pytest.raises(InvalidFilter):
        seeded.get_by_id("not-a-uuid")


def test_get_many_keeps_the_order_asked_and_skips_missing_ids(seeded: Any) -> None:
    by_name = {row.name: row.id for row in seeded.list()}
    asked = [by_name["zeta"], uuid.uuid4(), by_name["alpha"], by_name["gamma"]]
    assert names(seeded.get_many(asked)) == ["zeta", "alpha", "gamma"]


def test_exists_and_count_apply_filters(seeded: Any) -> None:
    assert seeded.exists(name="alpha")
    assert not seeded.exists(name="nope")
    assert seeded.count() == 6
    assert seeded.count({"category": "tools"}) == 2


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"category": "tools"}, {"alpha", "beta"}),
        ({"category__eq": "toys"}, {"delta_%x", "Epsilon"}),
        ({"category__ne": "tools"}, {"delta_%x", "Epsilon"}),
        ({"quantity__lt": 5}, {"beta", "zeta"}),
        ({"quantity__lte": 5}, {"alpha", "beta", "Epsilon", "zeta"}),
        ({"quantity__gt": 7}, {"gamma"}),
        ({"quantity__gte": 7}, {"gamma", "delta_%x"}),
        ({"quantity__in": [0, 12, 99]}, {"beta", "gamma"}),
        ({"quantity__in": []}, set()),
        ({"quantity__not_in": [5, 7]}, {"beta", "gamma", "zeta"}),
        ({"quantity__between": (3, 5)}, {"alpha", "Epsilon", "zeta"}),
        ({"name__contains": "ETA"}, {"beta", "zeta"}),
        ({"name__contains": "%"}, {"delta_%x"}),
        ({"name__contains": "_"}, {"delta_%x"}),
        ({"name__startswith": "eps"}, {"Epsilon"}),
        ({"category__isnull": True}, {"gamma", "zeta"}),
        ({"ratio__isnull": False, "ratio__lt": 1.0}, {"alpha", "Epsilon"}),
        ({"price__gte": Decimal("3.25")}, {"alpha", "gamma", "delta_%x"}),
        ({"active": False}, {"delta_%x"}),
        ({"released_at__gte": T0}, {"alpha", "beta", "Epsilon"}),
        ({"released_at__between": ("2026-01-01T12:00:00+00:00", T0 + dt.timedelta(hours=5))}, {"alpha", "Epsilon"}),
    ],
)
def test_filters_select_exactly_the_matching_rows(seeded: Any, filters: dict[str, Any], expected: set[str]) -> None:
    assert set(names(seeded.list(filters=filters))) == expected
    assert seeded.count(filters) == len(expected)


@pytest.mark.parametrize(
    "filters",
    [
        {"colour": "red"},
        {"secret_token": "s3cr3t"},
        {"secret_token__isnull": False},
        {"name__like": "a%"},
        {"name__": "a"},
        {"quantity__in": "12"},
        {"quantity__between": [1]},
        {"quantity": "five"},
        {"quantity": True},
        {"quantity": 2**70},
        {"ratio": float("nan")},
        {"name": "nul\x00byte"},
        {"name__contains": 5},
        {"released_at__gt": dt.datetime(2026, 1, 1)},
        {"name": None},
        {"category__isnull": "yes"},
    ],
)
def test_bad_filters_are_refused_with_invalid_filter(seeded: Any, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        seeded.list(filters=filters)
    with pytest.raises(InvalidFilter):
        seeded.count(filters)
    with pytest.raises(InvalidFilter):
        seeded.page(filters=filters)


@pytest.mark.parametrize("order_by", [["secret_token"], ["-secret_token"], ["colour"], ["name", "name"], [5]])
def test_sorting_on_a_secret_or_unknown_field_is_refused(seeded: Any, order_by: list[Any]) -> None:
    with pytest.raises(InvalidFilter):
        seeded.list(order_by=order_by)
    with pytest.raises(InvalidFilter):
        seeded.page(order_by=order_by)


def test_an_error_message_never_echoes_a_secret_value(seeded: Any) -> None:
    with pytest.raises(InvalidFilter) as raised:
        seeded.list(filters={"secret_token": "s3cr3t"})
    assert "s3cr3t" not in str(raised.value)


def test_null_sorts_first_ascending_and_last_descending(seeded: Any) -> None:
    ascending = [row.category for row in seeded.list(order_by=["category", "name"])]
    assert ascending == [None, None, "tools", "tools", "toys", "toys"]
    descending = [row.category for row in seeded.list(order_by=["-category", "name"])]
    assert descending == ["toys", "toys", "tools", "tools", None, None]


def test_list_orders_limits_and_offsets(seeded: Any) -> None:
    assert names(seeded.list(order_by=["-quantity", "name"], limit=3)) == ["gamma", "delta_%x", "Epsilon"]
    assert names(seeded.list(order_by=["-quantity", "name"], limit=2, offset=2)) == ["Epsilon", "alpha"]


@pytest.mark.parametrize("window", [{"limit": -1}, {"offset": -5}, {"limit": "3"}])
def test_a_bad_window_is_refused(seeded: Any, window: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        seeded.list(**window)


@pytest.mark.parametrize(
    "order_by", [[], ["name"], ["-quantity"], ["category", "-quantity"], ["-category"], ["ratio", "-released_at"],
                 ["released_at"], ["-price", "active"]]
)
@pytest.mark.parametrize("size", [1, 2, 4])
def test_paging_visits_every_row_once_in_list_order(seeded: Any, order_by: list[str], size: int) -> None:
    expected = names(seeded.list(order_by=order_by))
    seen: list[str] = []
    page = seeded.page(order_by=order_by, size=size)
    while True:
        seen += names(page.items)
        assert len(page.items) <= size
        if page.next_cursor is None:
            break
        page = seeded.page(order_by=order_by, size=size, after=page.next_cursor)
    assert seen == expected


def test_paging_applies_filters_on_every_page(seeded: Any) -> None:
    first = seeded.page(filters={"quantity__gte": 3}, order_by=["quantity"], size=2)
    second = seeded.page(filters={"quantity__gte": 3}, order_by=["quantity"], size=2, after=first.next_cursor)
    third = seeded.page(filters={"quantity__gte": 3}, order_by=["quantity"], size=2, after=second.next_cursor)
    assert names(first.items + second.items + third.items) == ["zeta", "alpha", "Epsilon", "delta_%x", "gamma"]
    assert third.next_cursor is None


def test_a_tampered_or_foreign_cursor_is_refused(seeded: Any, backend: Backend) -> None:
    cursor = seeded.page(order_by=["name"], size=2).next_cursor
    assert cursor
    bad = [
        cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB"),
        "garbage!",
        "",
        cursor + "x" * 5000,
        "eyJlIjoid2lkZ2V0IiwiayI6WyJuYW1lIiwiaWQiXSwidiI6WzEsMl19",  # right keys, wrong value types
    ]
    for after in bad:
        with pytest.raises(InvalidFilter):
            seeded.page(order_by=["name"], size=2, after=after)
    with pytest.raises(InvalidFilter):
        seeded.page(order_by=["-name"], size=2, after=cursor)
    gadgets = backend.repo(GadgetRepository)
    with pytest.raises(InvalidFilter):
        gadgets.page(order_by=["name"], size=2, after=cursor)


def test_the_last_page_has_no_cursor(seeded: Any) -> None:
    page = seeded.page(size=6)
    assert len(page.items) == 6 and page.next_cursor is None
    assert seeded.page(size=1000).next_cursor is None


@pytest.mark.parametrize("size", [0, -1, 1001, "10"])
def test_a_bad_page_size_is_refused(seeded: Any, size: Any) -> None:
    with pytest.raises(InvalidFilter):
        seeded.page(size=size)


# --- update -----------------------------------------------------------------------------------------------


def test_update_changes_only_the_given_fields_and_bumps_the_version(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    updated_before = alpha.updated_at
    changed = seeded.update(alpha.id, quantity=42)
    assert changed.quantity == 42 and changed.category == "tools" and changed.version == 2
    assert changed.updated_at >= updated_before
    assert seeded.get_by_id(alpha.id).quantity == 42


def test_update_with_an_outdated_expected_version_is_stale(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    seeded.update(alpha.id, quantity=1)
    with pytest.raises(StaleVersion):
        seeded.update(alpha.id, quantity=2, version=1)
    assert seeded.get_by_id(alpha.id).quantity == 1


def test_a_stale_update_is_rejected_and_the_first_write_survives(seeded: Any, backend: Backend) -> None:
    backend.commit()
    mine = backend.repo(WidgetRepository)
    theirs = backend.other(WidgetRepository)
    my_copy = mine.list(filters={"name": "alpha"})[0]
    their_copy = theirs.list(filters={"name": "alpha"})[0]
    theirs.update(their_copy, quantity=100)
    if hasattr(theirs, "session"):
        theirs.session.commit()
    with pytest.raises(StaleVersion):
        mine.update(my_copy, quantity=1)
    assert backend.other(WidgetRepository).get_by_id(my_copy.id).quantity == 100


def test_update_refuses_unknown_fields_and_the_primary_key(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    with pytest.raises(ValidationError):
        seeded.update(alpha.id, colour="red")
    with pytest.raises(ValidationError):
        seeded.update(alpha.id, id=uuid.uuid4())


def test_update_of_a_missing_row_is_not_found(seeded: Any) -> None:
    with pytest.raises(NotFound):
        seeded.update(uuid.uuid4(), quantity=1)


def test_update_to_a_taken_unique_value_is_a_conflict(seeded: Any) -> None:
    with pytest.raises(Conflict):
        seeded.update(seeded.list(filters={"name": "alpha"})[0].id, name="beta")
    assert seeded.count({"name": "beta"}) == 1


def test_update_many_changes_the_matching_rows_and_counts_them(seeded: Any) -> None:
    assert seeded.update_many({"category": "tools"}, quantity=0) == 2
    assert {row.quantity for row in seeded.list(filters={"category": "tools"})} == {0}
    assert {row.version for row in seeded.list(filters={"category": "tools"})} == {2}
    assert seeded.count({"quantity": 0}) == 2


def test_bulk_changes_without_filters_are_refused(seeded: Any) -> None:
    with pytest.raises(InvalidFilter):
        seeded.update_many({}, quantity=0)
    with pytest.raises(InvalidFilter):
        seeded.delete_many({})
    assert seeded.count() == 6


# --- delete -----------------------------------------------------------------------------------------------


def test_soft_deleted_rows_are_invisible_unless_asked_for(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    seeded.delete(alpha.id)
    assert seeded.get_by_id(alpha.id) is None
    assert "alpha" not in names(seeded.list())
    assert not seeded.exists(name="alpha")
    assert seeded.count() == 5
    assert seeded.get_by_id(alpha.id, include_deleted=True).deleted_at is not None
    assert seeded.count(include_deleted=True) == 6
    assert "alpha" in names(seeded.page(include_deleted=True, size=10).items)
    with pytest.raises(NotFound):
        seeded.update(alpha.id, quantity=1)
    with pytest.raises(NotFound):
        seeded.delete(alpha.id)


def test_hard_delete_removes_the_row(seeded: Any) -> None:
    alpha = seeded.list(filters={"name": "alpha"})[0]
    seeded.delete(alpha, hard=True)
    assert seeded.get_by_id(alpha.id, include_deleted=True) is None


def test_delete_many_soft_deletes_and_counts_and_hard_purges(seeded: Any) -> None:
    assert seeded.delete_many({"category": "toys"}) == 2
    assert seeded.count() == 4
    assert seeded.update_many({"category": "toys"}, quantity=1) == 0
    assert seeded.delete_many({"deleted_at__isnull": False}, hard=True, include_deleted=True) == 2
    assert seeded.count(include_deleted=True) == 4


def test_a_model_without_soft_delete_is_deleted_for_real(gadgets: Any) -> None:
    gadget = gadgets.create(owner="o", code="c")
    gadgets.delete(gadget.id)
    assert gadgets.get_by_id(gadget.id) is None
    assert gadgets.count() == 0


# --- upsert and get_or_create -----------------------------------------------------------------------------


def test_upsert_inserts_then_updates_the_same_row(widgets: Any) -> None:
    first = widgets.upsert({"name": "alpha", "quantity": 1}, match=["name"])
    second = widgets.upsert({"name": "alpha", "quantity": 2}, match=["name"])
    assert second.id == first.id and second.quantity == 2 and second.version == 2
    assert second.created_at == first.created_at
    assert widgets.count() == 1


def test_upsert_on_a_composite_unique_key(gadgets: Any) -> None:
    one = gadgets.upsert({"owner": "o", "code": "c", "label": "x"}, match=["owner", "code"])
    two = gadgets.upsert({"owner": "o", "code": "c", "label": "y"}, match=["code", "owner"])
    gadgets.upsert({"owner": "p", "code": "c", "label": "z"}, match=["owner", "code"])
    assert one.id == two.id and two.label == "y"
    assert gadgets.count() == 2


def test_upsert_brings_back_a_soft_deleted_row(widgets: Any) -> None:
    gone = widgets.create(name="alpha")
    widgets.delete(gone)
    back = widgets.upsert({"name": "alpha", "quantity": 3}, match=["name"])
    assert back.id == gone.id and back.deleted_at is None and back.quantity == 3


def test_upsert_must_match_a_unique_key(widgets: Any) -> None:
    with pytest.raises(InvalidFilter):
        widgets.upsert({"name": "alpha", "category": "x"}, match=["category"])
    with pytest.raises(ValidationError):
        widgets.upsert({"quantity": 1}, match=["name"])


def test_get_or_create_creates_once_then_finds(widgets: Any) -> None:
    made, created = widgets.get_or_create(name="alpha", defaults={"quantity": 9})
    found, created_again = widgets.get_or_create(name="alpha", defaults={"quantity": 1})
    assert created and not created_again
    assert found.id == made.id and found.quantity == 9
    assert widgets.count() == 1


def test_a_repository_can_narrow_what_is_filterable_and_sortable(backend: Backend) -> None:
    class Narrow(WidgetRepository):
        filterable = frozenset({"name"})
        sortable = frozenset({"created_at"})

    from db.testing import InMemoryRepository
    from tests.models import Widget

    class FakeNarrow(InMemoryRepository[Widget]):
        model = Widget
        filterable = frozenset({"name"})
        sortable = frozenset({"created_at"})

    repo = FakeNarrow() if backend.name == "memory" else backend.repo(Narrow)
    repo.create(name="alpha", quantity=1)
    assert names(repo.list(filters={"name": "alpha"}, order_by=["-created_at"])) == ["alpha"]
    with pytest.raises(InvalidFilter):
        repo.list(filters={"quantity": 1})
    with pytest.raises(InvalidFilter):
        repo.list(order_by=["name"])


def test_a_repository_cannot_allow_a_secret_field() -> None:
    from tests.models import Widget

    class Leaky(WidgetRepository):
        model = Widget
        sortable = frozenset({"secret_token"})

    with pytest.raises(TypeError):
        Leaky.policy()


def test_a_missing_or_null_required_field_is_a_validation_error(widgets: Any) -> None:
    with pytest.raises(ValidationError, match="name"):
        widgets.create(quantity=1)
    alpha = widgets.create(name="alpha")
    with pytest.raises(ValidationError):
        widgets.update(alpha.id, name=None)
    with pytest.raises(ValidationError):
        widgets.upsert({"name": "beta", "quantity": None}, match=["name"])
    assert widgets.get_by_id(alpha.id).name == "alpha"


def test_the_version_is_maintained_by_the_layer_not_the_caller(widgets: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="alpha", version=7)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "alpha", "version": 7}])
    assert widgets.count() == 0


def test_a_new_row_was_created_and_updated_at_the_same_instant(widgets: Any) -> None:
    one = widgets.create(name="alpha")
    widgets.create_many([{"name": "beta"}])
    two = widgets.list(filters={"name": "beta"})[0]
    assert one.created_at == one.updated_at
    assert two.created_at == two.updated_at


def test_bulk_hard_delete_leaves_other_loaded_rows_intact(gadgets: Any) -> None:
    keep = gadgets.create(owner="o", code="keep")
    gadgets.create(owner="o", code="drop")
    assert gadgets.delete_many({"code": "drop"}, hard=True) == 1
    gadgets.update(keep, label="still here")
    assert gadgets.get_by_id(keep.id).label == "still here"
    assert gadgets.count() == 1


def test_update_many_needs_a_field_to_set(seeded: Any) -> None:
    with pytest.raises(ValidationError):
        seeded.update_many({"name": "alpha"})


def test_an_integer_beyond_64_bits_is_a_validation_error(widgets: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="alpha", quantity=2**70)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "alpha", "quantity": 2**70}])


def test_get_or_create_refuses_a_malformed_value_the_same_way_everywhere(widgets: Any) -> None:
    with pytest.raises(InvalidFilter):
        widgets.get_or_create(id="not-a-uuid", defaults={"name": "x"})


def test_upsert_that_clashes_on_another_unique_key_is_a_conflict(widgets: Any) -> None:
    first = widgets.create(name="alpha")
    with pytest.raises(Conflict):
        widgets.upsert({"id": first.id, "name": "gamma", "quantity": 9}, match=["name"])
    assert widgets.get_by_id(first.id).quantity == 0
    assert widgets.count() == 1


def test_datetimes_at_the_edges_of_a_day_and_of_a_second_round_trip_exactly(widgets: Any, backend: Backend) -> None:
    moments = [
        dt.datetime(2026, 1, 1, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC),
        dt.datetime(1999, 12, 31, 19, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ]
    widgets.create_many({"name": f"m{i}", "released_at": moment} for i, moment in enumerate(moments))
    backend.commit()
    stored = [w.released_at for w in backend.other(WidgetRepository).list(order_by=["name"])]
    assert stored == moments
    assert all(moment.tzinfo is not None and moment.utcoffset() == dt.timedelta(0) for moment in stored)
    assert [w.name for w in widgets.list(filters={"released_at__gte": moments[1]}, order_by=["name"])] == ["m1"]


@pytest.mark.parametrize(
    "fields",
    [{"name": "x" * 101}, {"name": "nul\x00"}, {"name": 5}, {"quantity": "5"}, {"quantity": 1.5},
     {"quantity": True}, {"ratio": float("nan")}, {"active": "yes"}, {"released_at": "not a date"}],
    ids=["too-long", "nul", "int-for-str", "str-for-int", "float-for-int", "bool-for-int", "nan", "str-for-bool",
         "bad-date"],
)
def test_a_value_the_column_cannot_hold_is_refused_the_same_way_everywhere(
    widgets: Any, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        widgets.create(**{"name": "alpha", **fields})
    alpha = widgets.create(name="alpha")
    with pytest.raises(ValidationError):
        widgets.update(alpha.id, **fields)
    assert widgets.get_by_id(alpha.id).quantity == 0 and widgets.count() == 1


REGEX_LOOKALIKES = ["a.c", "a+c", "(a)", "[a]", "a\\c", "^ac$", "a|c", "a{2}", "a*c", "a?c", "a c", "a-c", "é.Ü",
                    "x/%_"]


@pytest.mark.parametrize("needle", [".", "+", "(a", "[a]", "\\", "^a", "c$", "|", "{2}", "*", "?", "A C", "-", "É.ü",
                                    "/%", "A.C", "a"])
def test_contains_and_startswith_take_every_character_literally(widgets: Any, needle: str) -> None:
    for name in REGEX_LOOKALIKES:
        widgets.create(name=name)
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    wanted = needle.translate(fold)
    expected = {name for name in REGEX_LOOKALIKES if wanted in name.translate(fold)}
    assert set(names(widgets.list(filters={"name__contains": needle}))) == expected
    starting = {name for name in REGEX_LOOKALIKES if name.translate(fold).startswith(wanted)}
    assert set(names(widgets.list(filters={"name__startswith": needle}))) == starting

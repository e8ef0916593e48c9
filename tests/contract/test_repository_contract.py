"""What every repository promises, checked on the in-memory fake and on SQLite, PostgreSQL and MariaDB.

The generic promises are the shipped suite, ``db.testing.RepositoryContract``, run here as an application runs it
(``TestWidgetRepository``, ``TestGadgetRepository``); the tests below it need this project's test models.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from db import InvalidFilter, StaleVersion, ValidationError
from db.testing import RepositoryContract
from tests.contract.support import Backend
from tests.support import GadgetRepository, WidgetRepository

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


# --- the shipped contract, on a soft-deleted versioned model and on a plain one with a composite key ----------


class TestWidgetRepository(RepositoryContract):
    @pytest.fixture
    def repository(self, widgets: Any) -> Any:
        return widgets

    def valid_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"widget {n:07}", "category": f"c{n % 3}" if n % 4 else None, "ratio": n / 4,
                "released_at": T0 + dt.timedelta(minutes=n)}


class TestGadgetRepository(RepositoryContract):
    @pytest.fixture
    def repository(self, gadgets: Any) -> Any:
        return gadgets

    def valid_fields(self, n: int) -> dict[str, Any]:
        return {"owner": f"owner {n % 2}", "code": f"code {n}", "label": f"label {n}", "hits": n}


# --- create -----------------------------------------------------------------------------------------------


def test_a_created_row_reads_back_with_aware_datetimes(widgets: Any, backend: Backend) -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    created = widgets.create(name="alpha", released_at=moment)
    backend.commit()
    again = backend.other(WidgetRepository).get_by_id(created.id)
    assert again.released_at == moment and again.released_at.utcoffset() == dt.timedelta(0)


# --- read -------------------------------------------------------------------------------------------------


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


# --- update -----------------------------------------------------------------------------------------------


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


# --- the rules of a repository class ------------------------------------------------------------------------


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


def test_an_integer_beyond_64_bits_is_a_validation_error(widgets: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="alpha", quantity=2**70)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "alpha", "quantity": 2**70}])


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

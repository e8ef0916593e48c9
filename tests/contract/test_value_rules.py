"""The documented value rules (README, "Values" and "Filters"), the same on the fake and on every engine.

Every write (create, create_many, update, update_many, upsert, get_or_create) converts a value the same way, and a
filter parses it with the same parsers: text forms are accepted where the README says so, and everything else is
refused with the same ``db.errors`` class everywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from db import InvalidFilter, ValidationError
from tests.contract.support import Backend
from tests.support import WidgetRepository

UTC = dt.UTC
AN_ID = uuid.UUID("0192f0c4-0000-7000-8000-000000000001")


def stored(backend: Backend, name: str) -> Any:
    """The row as a fresh read gives it back (the database's values, not the instance's)."""
    backend.commit()
    return backend.other(WidgetRepository).list(filters={"name": name})[0]


# --- datetimes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ["create", "create_many", "update", "upsert"])
def test_iso_text_with_an_offset_is_stored_as_that_instant_in_utc(widgets: Any, backend: Backend, write: str) -> None:
    text, instant = "2026-03-04T05:06:07.123456+02:00", dt.datetime(2026, 3, 4, 3, 6, 7, 123456, tzinfo=UTC)
    if write == "create":
        assert widgets.create(name="w", released_at=text).released_at == instant
    elif write == "create_many":
        widgets.create_many([{"name": "w", "released_at": text}])
    elif write == "update":
        widgets.update(widgets.create(name="w"), released_at=text)
    else:
        widgets.upsert({"name": "w", "released_at": text}, match=["name"])
    assert stored(backend, "w").released_at == instant


@pytest.mark.parametrize("value", ["2026-03-04T05:06:07", "2026-03-04", "yesterday", "", dt.datetime(2026, 1, 1),
                                   dt.date(2026, 1, 1), 1767225600, "0001-01-01T00:00:00+01:00"],
                         ids=["naive-text", "date-text", "garbage", "empty", "naive", "date", "epoch", "before-year-1"])
def test_a_datetime_without_a_zone_or_that_is_not_one_is_refused_everywhere(widgets: Any, value: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        widgets.create(name="w", released_at=value)
    assert raised.value.field == "released_at"
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "w", "released_at": value}])
    with pytest.raises(InvalidFilter):
        widgets.list(filters={"released_at__gte": value})
    assert widgets.count() == 0


def test_a_filter_takes_the_same_iso_text_as_a_write(widgets: Any) -> None:
    widgets.create(name="w", released_at="2026-01-01T12:00:00Z")
    assert widgets.count({"released_at": "2026-01-01T13:00:00+01:00"}) == 1
    assert widgets.count({"released_at__gt": "2026-01-01T12:00:00.000001+00:00"}) == 0


# --- UUIDs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [str(AN_ID), AN_ID.hex, "{" + str(AN_ID) + "}", str(AN_ID).upper()])
def test_a_uuid_given_as_text_is_accepted_everywhere(widgets: Any, backend: Backend, text: str) -> None:
    created, made = widgets.get_or_create(name="a", defaults={"id": text})
    assert made and created.id == AN_ID
    widgets.create_many([{"name": "b", "id": uuid.UUID(int=AN_ID.int + 1).hex}])
    assert widgets.get_by_id(text).name == "a"
    assert stored(backend, "b").id == uuid.UUID(int=AN_ID.int + 1)


@pytest.mark.parametrize("value", [AN_ID.bytes, AN_ID.int, "not-a-uuid", str(AN_ID)[:-1],
                                   uuid.UUID("85750621-02fb-cd4f-357f-bc5af71a1bfc")],
                         ids=["bytes", "int", "garbage", "short", "unstorable-on-mariadb"])
def test_a_uuid_as_bytes_an_int_or_bad_text_is_refused_everywhere(widgets: Any, value: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="a", id=value)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "a", "id": value}])
    with pytest.raises(ValidationError):
        widgets.get_or_create(name="a", defaults={"id": value})
    with pytest.raises(InvalidFilter):
        widgets.get_by_id(value)
    assert widgets.count() == 0


# --- booleans, numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte", "between"])
def test_ordering_operators_on_a_boolean_are_an_invalid_filter_everywhere(widgets: Any, op: str) -> None:
    widgets.create(name="w")
    value = (False, True) if op == "between" else True
    with pytest.raises(InvalidFilter, match="boolean"):
        widgets.list(filters={f"active__{op}": value})
    assert widgets.count({"active__in": [True], "active__ne": False}) == 1


@pytest.mark.parametrize(("field", "value"), [("active", 1), ("active", 0), ("active", "true"), ("quantity", True),
                                              ("quantity", 1.0), ("price", 1.5), ("ratio", Decimal("1.5"))])
def test_no_value_of_another_type_is_taken_for_a_bool_or_a_number(widgets: Any, field: str, value: Any) -> None:
    for write in (lambda: widgets.create(name="w", **{field: value}),
                  lambda: widgets.create_many([{"name": "w", field: value}])):
        with pytest.raises(ValidationError) as raised:
            write()
        assert raised.value.field == field
    assert widgets.count() == 0


def test_a_decimal_is_rounded_half_up_to_its_scale_everywhere(widgets: Any, backend: Backend) -> None:
    widgets.create(name="a", price=Decimal("1.005"))
    widgets.create_many([{"name": "b", "price": "-2.675"}, {"name": "c", "price": Decimal("-0.001")}])
    assert [stored(backend, name).price for name in "abc"] == [Decimal("1.01"), Decimal("-2.68"), Decimal("0")]


@pytest.mark.parametrize("value", [Decimal("10000000000"), Decimal("1E+20"), Decimal("NaN"), "1e400"],
                         ids=["above-precision", "huge", "nan", "overflow-text"])
def test_a_decimal_beyond_its_column_is_refused_everywhere(widgets: Any, value: Any) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="w", price=value)
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "w", "price": value}])
    assert widgets.count() == 0


def test_a_decimal_filter_value_has_at_most_15_significant_digits(widgets: Any) -> None:
    widgets.create(name="w", price=Decimal("1.00"))
    assert widgets.count({"price__lt": Decimal("1.00000000000001")}) == 1
    with pytest.raises(InvalidFilter):
        widgets.count({"price__lt": Decimal("1.000000000000001")})  # 16 digits: SQLite would compare it as 1.0


@pytest.mark.parametrize(("field", "value"), [("quantity", 2**63), ("quantity", -(2**63) - 1)])
def test_an_integer_beyond_64_bits_is_refused_everywhere(widgets: Any, field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        widgets.create(name="w", **{field: value})
    with pytest.raises(ValidationError):
        widgets.create_many([{"name": "w", field: value}])
    widgets.create(name="w", **{field: value + (1 if value < 0 else -1)})


# --- text -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "rule"), [("nul\x00", "nul"), ("lone \udc80", "encoding"), ("x" * 101, "max_length"),
                                             (b"bytes", "type"), (["a"], "type")])
def test_text_a_database_cannot_hold_is_refused_with_its_rule(widgets: Any, value: Any, rule: str) -> None:
    for write in (lambda: widgets.create(name=value), lambda: widgets.create_many([{"name": value}])):
        with pytest.raises(ValidationError) as raised:
            write()
        assert (raised.value.field, raised.value.rule) == ("name", rule)
    assert widgets.count() == 0


@pytest.mark.parametrize(("filters", "expected"), [
    ({"name__contains": "EMILE"}, []),            # É is not E: only A-Z ignore case
    ({"name__contains": "MILE"}, ["Émile"]),
    ({"name__contains": "k"}, []),               # the Kelvin sign is not k
    ({"name__contains": "\u212a"}, ["\u212aelvin"]),
    ({"name__startswith": "STRASSE"}, []),       # ß is not ss
    ({"name__startswith": "STRA"}, ["straße"]),
    ({"name__startswith": "istanbul"}, []),      # İ is not i
    ({"name__contains": "İ"}, ["İstanbul"]),
])
def test_contains_and_startswith_ignore_the_case_of_a_to_z_only(
    widgets: Any, filters: dict[str, str], expected: list[str]
) -> None:
    widgets.create_many([{"name": name} for name in ("Émile", "\u212aelvin", "straße", "İstanbul")])
    assert [w.name for w in widgets.list(filters=filters, order_by=["name"])] == expected

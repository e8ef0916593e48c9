"""A value as its column stores it: the one conversion behind every write, in SQL and in the in-memory fake.

``stored(entity, column, value)`` turns what a caller gives into what every engine stores and gives back, or refuses
it with ``ValidationError`` naming the field and the rule (never the value). ``BaseRepository`` (create, update,
update_many, upsert, get_or_create), its bulk path (create_many) and ``InMemoryRepository`` all call it, so SQLite,
PostgreSQL, MariaDB and the fake accept, refuse and store the same things. Text forms are parsed by the same parsers
as filter values (``query_spec.COERCERS``): a value means the same in a write and in a filter.

The rules, per Python type of the column (README, "Values"):

- ``str``: a str without NUL characters or lone surrogates, at most the column's length in characters; a ``Text``
  column holds what MariaDB's TEXT type behind it holds (65,535 bytes of UTF-8 for plain ``Text``).
- ``int``: an int (not a bool) within the column's width: 16, 32 or 64 bits.
- ``float``: an int or a float (not a bool), finite; -0.0 is stored as 0.0 (MariaDB keeps no negative zero).
- ``Decimal``: a Decimal, an int or numeric text (not a float: it is inexact), finite; rounded half up to the
  column's scale, at most ``precision - scale`` digits before the point and at most 15 significant digits, which is
  what SQLite, storing NUMERIC as a double, holds exactly.
- ``bool``: True or False (not 0 or 1).
- ``datetime``: a timezone-aware datetime, or ISO-8601 text with an offset; stored in UTC. Naive ones are refused.
- ``date``: a date (not a datetime), or ISO-8601 date text.
- ``UUID``: a ``uuid.UUID``, or text ``uuid.UUID()`` accepts; not bytes or an int, nor the few UUIDs MariaDB's UUID
  type refuses (the NCS variant with a version nibble of 8 or more).

Columns of other types (JSON, binary, custom types) take values as they are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import InstanceState
from sqlalchemy.sql.schema import Column

from db.dialects.types import text_byte_limit
from db.errors import ValidationError
from db.repositories import query_spec as qs

Convert = Callable[[Any], Any]

EXPECTED: dict[type, str] = {
    str: "text without NUL characters or lone surrogates",
    int: "an integer (not a bool)",
    float: "a finite number (an int or a float, not a bool)",
    Decimal: "a finite Decimal, int or numeric text (not a float, which is inexact)",
    bool: "True or False",
    dt.datetime: "a timezone-aware datetime, or ISO-8601 text with an offset",
    dt.date: "a date, or ISO-8601 date text",
    uuid.UUID: "a UUID, or its text form",
}


def stored(entity: str, column: Column[Any], value: Any, *, compare: bool = False) -> Any:
    """``value`` as ``column`` stores it, or ``ValidationError``; None stays None (NOT NULL is checked elsewhere).

    ``compare`` is for values only compared with stored ones (get_or_create's match): they are parsed, not
    rounded or checked against the column's length or range.
    """
    return converter(entity, column, compare=compare)(value)


@functools.cache
def converter(entity: str, column: Column[Any], *, compare: bool = False) -> Convert:
    """``stored`` for one column, as a function: the bulk path calls it for every value, so common values take a
    shortcut (an exact type already in range) and everything else the full parse."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return unchanged
    parse = qs.COERCERS.get(kind)
    if parse is None:
        return unchanged
    limit = _unlimited if compare else _LIMITS[kind](entity, column)
    refused = _refusal(entity, column.key, kind)

    def full(value: Any) -> Any:
        if value is None:
            return None
        parsed = parse(value)
        if parsed is qs.INVALID:
            raise refused(value)
        return limit(parsed)

    fast = None if compare else _SHORTCUTS.get(kind, _no_shortcut)(column)
    if fast is None:
        return full

    def shortcut(value: Any) -> Any:
        return value if fast(value) else full(value)

    return shortcut


def unchanged(value: Any) -> Any:
    """The converter of a column this module has no rules for: the value as it is."""
    return value


def _unlimited(value: Any) -> Any:
    return value


def _refusal(entity: str, field: str, kind: type) -> Callable[[Any], ValidationError]:
    def refused(value: Any) -> ValidationError:
        rule, why = _why(kind, value)
        return ValidationError(f"{entity}.{field}: {why}", field=field, rule=rule)

    return refused


def _why(kind: type, value: Any) -> tuple[str, str]:
    """The rule a value the parser refused breaks, and how to say it without showing the value."""
    if isinstance(value, str) and kind is str:
        if "\x00" in value:
            return "nul", "a NUL character cannot be stored"
        return "encoding", "not valid Unicode text (a lone surrogate)"
    if kind is dt.datetime and isinstance(value, dt.datetime) and value.utcoffset() is None:
        return "naive_datetime", "naive datetime refused: pass a timezone-aware datetime (UTC preferred)"
    if kind is Decimal and isinstance(value, int | Decimal | str) and not isinstance(value, bool):
        return "range", (f"expected {EXPECTED[Decimal]} of at most {qs.DECIMAL_DIGITS} significant digits and "
                         f"below 10**{qs.DECIMAL_MAX_DIGITS}")
    if kind is uuid.UUID and isinstance(value, uuid.UUID | str):
        return "range", f"expected {EXPECTED[uuid.UUID]} that every engine stores (MariaDB refuses the NCS variant " \
                        "with a version nibble of 8 or more)"
    if kind in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return "range", f"expected {EXPECTED[kind]} within range"
    return "type", f"expected {EXPECTED[kind]}, not {type(value).__name__}"


def _out_of_range(entity: str, column: Column[Any], what: str) -> ValidationError:
    return ValidationError(f"{entity}.{column.key}: {what}", field=column.key, rule="range")


# --- limits of the column: applied after parsing ------------------------------------------------------------------


def _text_limit(entity: str, column: Column[Any]) -> Convert:
    length = getattr(column.type, "length", None)
    max_bytes = text_byte_limit(column.type)

    def limit(value: str) -> str:
        if isinstance(length, int) and len(value) > length:
            raise ValidationError(f"{entity}.{column.key}: longer than {length} characters", field=column.key,
                                  rule="max_length")
        if max_bytes is not None and len(value) > max_bytes // 4 and len(value.encode()) > max_bytes:
            raise ValidationError(f"{entity}.{column.key}: more than {max_bytes:,} bytes of UTF-8 (MariaDB's TEXT)",
                                  field=column.key, rule="max_length")
        return value

    return limit


def _int_limit(entity: str, column: Column[Any]) -> Convert:
    bits = _int_bits(column.type)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    refused = _out_of_range(entity, column, f"outside the {bits}-bit integer range")

    def limit(value: int) -> int:
        if not low <= value <= high:
            raise refused
        return value

    return limit


def _int_bits(type_: Any) -> int:
    if isinstance(type_, BigInteger):
        return 64
    if isinstance(type_, SmallInteger):
        return 16
    return 32 if isinstance(type_, Integer) else 64


def _decimal_limit(entity: str, column: Column[Any]) -> Convert:
    scale, precision = getattr(column.type, "scale", None), getattr(column.type, "precision", None)
    quantum = Decimal(1).scaleb(-scale) if isinstance(scale, int) else None
    bound = Decimal(10) ** (precision - (scale or 0)) if isinstance(precision, int) else None
    refused = _out_of_range(entity, column, f"more digits than NUMERIC({precision}, {scale}) holds")

    def limit(value: Decimal) -> Decimal:
        if quantum is not None:
            try:
                value = value.quantize(quantum, rounding=ROUND_HALF_UP)
            except InvalidOperation:
                raise refused from None
        if (bound is not None and abs(value) >= bound) or qs.significant_digits(value) > qs.DECIMAL_DIGITS:
            raise refused
        return value + 0 if value.is_zero() else value  # no negative zero: the engines store 0

    return limit


def _no_limit(entity: str, column: Column[Any]) -> Convert:
    return _unlimited


_LIMITS: dict[type, Callable[[str, Column[Any]], Convert]] = {
    str: _text_limit, int: _int_limit, Decimal: _decimal_limit,
}
_LIMITS = {kind: _LIMITS.get(kind, _no_limit) for kind in EXPECTED}


# --- shortcuts: values already in their stored form, told apart without a full parse -----------------------------


def _no_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    return None


def _str_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    length = getattr(column.type, "length", None)
    if not isinstance(length, int):
        return None
    return lambda value: type(value) is str and len(value) <= length and value.isascii() and "\x00" not in value


def _int_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    bits = _int_bits(column.type)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda value: type(value) is int and low <= value <= high


def _float_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    return lambda value: type(value) is float and math.isfinite(value) and value != 0.0  # zero: its sign goes


def _bool_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    return lambda value: value is True or value is False


def _datetime_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    return lambda value: type(value) is dt.datetime and value.tzinfo is dt.UTC


def _uuid_shortcut(column: Column[Any]) -> Callable[[Any], bool] | None:
    return lambda value: type(value) is uuid.UUID and qs.storable_uuid(value)


_SHORTCUTS: dict[type, Callable[[Column[Any]], Callable[[Any], bool] | None]] = {
    str: _str_shortcut, int: _int_shortcut, float: _float_shortcut, bool: _bool_shortcut,
    dt.datetime: _datetime_shortcut, uuid.UUID: _uuid_shortcut,
}


__all__ = ["EXPECTED", "converter", "stored", "unchanged"]


def saved_id(value: Any) -> Any:
    """The primary key of a saved (flushed or loaded) mapped instance; None for anything else or an unsaved one."""
    state = sa_inspect(value, raiseerr=False)
    if not isinstance(state, InstanceState) or state.identity is None:
        return None
    return state.identity[0]


def id_of(value: Any, field: str, *, entity_only: bool = False) -> uuid.UUID:
    """The id a caller means by ``value``: a saved entity's (or an object's ``id`` attribute), or, unless
    ``entity_only``, a UUID given as such or as text. Anything else, an entity not saved yet included, is a
    ``ValidationError`` naming ``field`` (never the value)."""
    if sa_inspect(value, raiseerr=False) is not None:
        ident = saved_id(value)
        if not isinstance(ident, uuid.UUID):
            raise ValidationError(f"{field} must be saved first (it has no id yet)", field=field, rule="unsaved")
        return ident
    if entity_only and not hasattr(value, "id"):
        raise ValidationError(f"{field} must be a saved entity, not {type(value).__name__}", field=field, rule="id")
    ident = getattr(value, "id", value)
    if isinstance(ident, uuid.UUID):
        return ident
    with contextlib.suppress(ValueError):
        if isinstance(ident, str) and not entity_only:
            return uuid.UUID(ident)
    raise ValidationError(f"{field} must be a saved entity or its id", field=field, rule="id")

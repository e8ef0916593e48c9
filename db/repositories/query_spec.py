"""Filters, sort keys and page cursors: parsed and validated once, then run as SQL or in memory.

Both ``BaseRepository`` (SQL) and ``InMemoryRepository`` (Python) start from the same parsed form, so the
fake cannot drift from the real thing on what is accepted and what it means.

Filters are a mapping in the ``field__op`` form::

    {"age__gte": 18, "email__contains": "ada", "status__in": ["a", "b"], "deleted_at__isnull": True}

Semantics shared by every engine and the fake:

- ``contains`` and ``startswith`` match literally (``%`` and ``_`` are escaped) and ignore the case of the ASCII
  letters A-Z only (``ascii_fold``): every other character must match exactly, on every engine and in the fake
  (the engines' own Unicode case folding differs: SQLite folds ASCII only, PostgreSQL and MariaDB each their way).
- ``in`` with an empty list matches nothing; ``not_in`` with an empty list matches everything.
- Comparisons with NULL never match (as in SQL); use ``isnull``.
- Sorting: NULL is the smallest value: first in ascending order, last in descending order, on every engine.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import string
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from db.errors import InvalidFilter

OPERATORS = frozenset(
    {"eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "startswith", "isnull"}
)
_MAX_INT = 2**63 - 1
MAX_PAGE_SIZE = 1000
MAX_IN_VALUES = 10_000
ORDERED = frozenset({"lt", "lte", "gt", "gte", "between"})
# SQLite stores NUMERIC as a double: 15 significant digits, within a double's normal range, are what it holds and
# compares exactly, so that is what a decimal may have on every engine.
DECIMAL_DIGITS = 15
DECIMAL_MAX_DIGITS = 18  # digits before the point: NUMERIC(18, s) at most
_DECIMAL_MIN_EXPONENT = -300


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """What a repository lets callers filter and sort on, and each field's Python type."""

    entity: str
    types: Mapping[str, type]
    filterable: frozenset[str]
    sortable: frozenset[str]
    primary_key: str


def parse_filters(policy: FieldPolicy, filters: Mapping[str, Any] | None) -> list[Condition]:
    if filters is None:
        return []
    if not isinstance(filters, Mapping):
        raise InvalidFilter(f"{policy.entity}: filters must be a mapping of 'field__op' to value")
    return [_parse_condition(policy, key, value) for key, value in filters.items()]


def _parse_condition(policy: FieldPolicy, key: Any, value: Any) -> Condition:
    if not isinstance(key, str):
        raise InvalidFilter(f"{policy.entity}: a filter key must be a string")
    field, op = key, "eq"
    if "__" in key:
        field, op = key.rsplit("__", 1)
    if op not in OPERATORS:
        raise InvalidFilter(f"{policy.entity}: unknown filter operator {op!r}")
    if field not in policy.filterable:
        raise InvalidFilter(f"{policy.entity}: cannot filter on {_shown(field)}")
    return Condition(field, op, _coerce_operand(policy, field, op, value))


def _shown(name: str) -> str:
    return repr(name[:64] + ("…" if len(name) > 64 else ""))


def _coerce_operand(policy: FieldPolicy, field: str, op: str, value: Any) -> Any:
    kind = policy.types[field]
    if op in ORDERED and kind is bool:
        # SQL has no portable ordering of booleans (PostgreSQL compares them, SQLAlchemy refuses to): eq, ne, in.
        raise InvalidFilter(f"{policy.entity}.{field}__{op}: a boolean field takes eq, ne, in, not_in or isnull")
    if op == "isnull":
        if not isinstance(value, bool):
            raise InvalidFilter(f"{policy.entity}.{field}__isnull takes True or False")
        return value
    if op in ("in", "not_in"):
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise InvalidFilter(f"{policy.entity}.{field}__{op} takes a list of values")
        items = list(value)
        if len(items) > MAX_IN_VALUES:
            raise InvalidFilter(f"{policy.entity}.{field}__{op} takes at most {MAX_IN_VALUES} values")
        return tuple(coerce_value(policy, field, kind, item) for item in items)
    if op == "between":
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence) or len(value) != 2:
            raise InvalidFilter(f"{policy.entity}.{field}__between takes a pair (low, high)")
        return (coerce_value(policy, field, kind, value[0]), coerce_value(policy, field, kind, value[1]))
    if op in ("contains", "startswith"):
        if kind is not str or not isinstance(value, str):
            raise InvalidFilter(f"{policy.entity}.{field}__{op} takes a string on a text field")
        return coerce_value(policy, field, kind, value)
    if value is None:
        raise InvalidFilter(f"{policy.entity}.{field}__{op}: compare with None through __isnull")
    return coerce_value(policy, field, kind, value)


def coerce_value(policy: FieldPolicy, field: str, kind: type, value: Any) -> Any:
    """``value`` as the field's Python type, or InvalidFilter: bad values never reach the driver."""
    coerced = COERCERS.get(kind, _coerce_any)(value)
    if coerced is _INVALID or (kind is Decimal and not exact_as_double(coerced)):
        raise InvalidFilter(f"{policy.entity}.{field}: {type(value).__name__} is not a valid {kind.__name__}")
    return coerced


_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_fold(text: str) -> str:
    """``text`` with A-Z lowered and every other character unchanged: the case ``contains``/``startswith`` ignore."""
    return text.translate(_ASCII_FOLD)


def significant_digits(number: Decimal) -> int:
    """Digits from the first non-zero one to the last non-zero one (0 for zero)."""
    return 0 if number.is_zero() else len(number.normalize().as_tuple().digits)


def exact_as_double(number: Decimal) -> bool:
    """Whether SQLite, which keeps NUMERIC as a double, holds and compares ``number`` exactly."""
    if number.is_zero():
        return True
    return significant_digits(number) <= DECIMAL_DIGITS and number.adjusted() >= _DECIMAL_MIN_EXPONENT


_INVALID = object()
INVALID = _INVALID  # what a coercer returns for a value its type cannot hold


def _coerce_str(value: Any) -> Any:
    if not isinstance(value, str) or "\x00" in value:
        return _INVALID
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _INVALID
    return value


def _coerce_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not -_MAX_INT - 1 <= value <= _MAX_INT:
        return _INVALID
    return value


def _coerce_float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return _INVALID
    if isinstance(value, int) and abs(value) > _MAX_INT:
        return _INVALID
    return float(value) + 0.0  # -0.0 becomes 0.0: MariaDB stores no negative zero


def _coerce_decimal(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return _INVALID
    try:
        number = Decimal(value)
    except InvalidOperation:
        return _INVALID
    return number if number.is_finite() and abs(number) < Decimal(10) ** DECIMAL_MAX_DIGITS else _INVALID


def _coerce_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _INVALID


def _coerce_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return _INVALID
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        return _INVALID
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        return _INVALID


def _coerce_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return _INVALID
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        return _INVALID
    return value


def _coerce_uuid(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = uuid.UUID(value)
        except ValueError:
            return _INVALID
    if not isinstance(value, uuid.UUID) or not storable_uuid(value):
        return _INVALID
    return value


def storable_uuid(value: uuid.UUID) -> bool:
    """Whether every engine stores ``value``: MariaDB's UUID type refuses the NCS variant (variant bits 0xxx)
    with a version nibble of 8 or more, so those few UUIDs are refused everywhere."""
    return not (value.int >> 76 & 0xF >= 8 and value.int >> 60 & 0xF < 8)


def _coerce_any(value: Any) -> Any:
    return _INVALID


COERCERS: dict[type, Callable[[Any], Any]] = {
    str: _coerce_str,
    int: _coerce_int,
    float: _coerce_float,
    Decimal: _coerce_decimal,
    bool: _coerce_bool,
    dt.datetime: _coerce_datetime,
    dt.date: _coerce_date,
    uuid.UUID: _coerce_uuid,
}


def parse_order(policy: FieldPolicy, order_by: Sequence[str] | str) -> list[SortKey]:
    """``["-created_at", "name"]`` as sort keys, with the primary key appended as the final tiebreaker."""
    names = [order_by] if isinstance(order_by, str) else order_by
    if not isinstance(names, Sequence):
        raise InvalidFilter(f"{policy.entity}: order_by takes a list of field names")
    keys: list[SortKey] = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidFilter(f"{policy.entity}: a sort key must be a string")
        descending = name.startswith("-")
        field = name[1:] if descending else name
        if field not in policy.sortable and field != policy.primary_key:
            raise InvalidFilter(f"{policy.entity}: cannot sort on {_shown(field)}")
        if any(key.field == field for key in keys):
            raise InvalidFilter(f"{policy.entity}: {_shown(field)} appears twice in order_by")
        keys.append(SortKey(field, descending))
    if not any(key.field == policy.primary_key for key in keys):
        keys.append(SortKey(policy.primary_key, False))
    return keys


def check_window(policy: FieldPolicy, *, limit: Any = None, offset: Any = 0) -> None:
    """``list``'s window: ``limit`` None (no limit) or an integer ≥ 0, ``offset`` an integer ≥ 0 (None: 0)."""
    _check_whole(policy, "limit", limit, 0, _MAX_INT, optional=True)
    _check_whole(policy, "offset", offset, 0, _MAX_INT, optional=True)


def check_size(policy: FieldPolicy, size: Any) -> None:
    """``page``'s size: an integer from 1 to ``MAX_PAGE_SIZE``."""
    _check_whole(policy, "size", size, 1, MAX_PAGE_SIZE)


def _check_whole(policy: FieldPolicy, name: str, value: Any, low: int, high: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidFilter(f"{policy.entity}: {name} must be an integer from {low} to {high}")


# --- cursors -----------------------------------------------------------------------------------------------
# A cursor carries the sort keys and the last row's values. It is not signed and need not be: it only says
# where a page starts, every filter still applies to the next page, and a cursor that does not decode to
# exactly this entity's sort keys and well-typed values is refused as InvalidFilter.


def encode_cursor(policy: FieldPolicy, keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    payload = {
        "e": policy.entity,
        "k": [("-" if key.descending else "") + key.field for key in keys],
        "v": [_to_json(value) for value in values],
    }
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(policy: FieldPolicy, keys: Sequence[SortKey], cursor: Any) -> list[Any]:
    refused = InvalidFilter(f"{policy.entity}: invalid page cursor")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise refused from None
    expected = [("-" if key.descending else "") + key.field for key in keys]
    if not isinstance(payload, dict) or payload.get("e") != policy.entity or payload.get("k") != expected:
        raise refused
    values = payload.get("v")
    if not isinstance(values, list) or len(values) != len(keys):
        raise refused
    decoded: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            if key.field == policy.primary_key:
                raise refused
            decoded.append(None)
            continue
        try:
            decoded.append(coerce_value(policy, key.field, policy.types[key.field], _from_json(value)))
        except (InvalidFilter, OverflowError):  # OverflowError: a datetime moved out of range by its offset
            raise refused from None
    return decoded


def _to_json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"dt": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, uuid.UUID | Decimal):
        return {"s": str(value)}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, text), = value.items()
        if tag in ("dt", "d", "s") and isinstance(text, str):
            return text
    if isinstance(value, dict | list):
        return _INVALID
    return value

"""The declarative base every model derives from.

- A constraint naming convention, so that Alembic's autogenerate and batch migrations produce the same
  names on SQLite, PostgreSQL and MariaDB (an unnamed constraint cannot be dropped portably).
- A type map in which ``datetime`` is always timezone-aware UTC, stored with microseconds on every engine,
  and comes back aware on SQLite and MariaDB too (their column types have no time zone).
- A short repr that shows the class and primary key only: never a column that could hold a secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Dialect, Double, MetaData, Numeric, String, Uuid, inspect
from sqlalchemy.orm import DeclarativeBase, declared_attr
from sqlalchemy.types import TypeDecorator, TypeEngine

from db import dialects
from db.dialects.types import BIG_INTEGER, LONG_TEXT, TABLE_OPTIONS

__all__ = ["LONG_TEXT", "TABLE_OPTIONS", "Base", "UTCDateTime", "secret_columns"]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A datetime that is stored as UTC and always read back timezone-aware.

    A naive datetime is refused: its zone is unknowable, and guessing is how audit timestamps go wrong.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(dialects.dialect_of(dialect).datetime_type())

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware datetime (UTC preferred)")
        value = value.astimezone(dt.UTC)
        return value if dialects.dialect_of(dialect).stores_aware_datetimes else value.replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    # On SQLite the value is text, 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, as SQLAlchemy writes it. Reading it with
    # one fromisoformat() call is ten times cheaper than the generic parse-then-attach-zone path, which matters
    # when a query loads a hundred thousand rows.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if not dialects.dialect_of(dialect).datetimes_as_text:
            return super().bind_processor(dialect)
        convert = self.process_bind_param

        def process(value: dt.datetime | None) -> str | None:
            naive = convert(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if not dialects.dialect_of(dialect).datetimes_as_text:
            return super().result_processor(dialect, coltype)
        generic = super().result_processor(dialect, coltype) or (lambda value: value)
        parse = dt.datetime.fromisoformat

        def process(value: str | None) -> dt.datetime | None:
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except ValueError:  # written by another tool, with its own zone or format
                return generic(value)

        return process


TYPE_ANNOTATION_MAP: dict[Any, Any] = {
    dt.datetime: UTCDateTime(),
    uuid.UUID: Uuid(),
    str: String(255),
    Decimal: Numeric(18, 4),
    dict[str, Any]: JSON(),
    int: BIG_INTEGER,
    float: Double(),  # not Float: that is single precision on MariaDB
}


_SECRET_COLUMNS: dict[type[Any], frozenset[str]] = {}


def secret_columns(model: type[Any]) -> frozenset[str]:
    """Names of the columns marked ``info={"secret": True}``: never filtered, sorted, logged or shown.

    Cached per model: it is read on every audited flush, and a mapped model's columns do not change.
    """
    if model not in _SECRET_COLUMNS:
        _SECRET_COLUMNS[model] = frozenset(c.key for c in inspect(model).columns if c.info.get("secret"))
    return _SECRET_COLUMNS[model]


# A model that sets its own ``__table_args__`` ends the tuple with ``TABLE_OPTIONS`` (binary collations everywhere).


class ReprMixin:
    """``<User 0192f0c4-...>``: the class and the primary key, read without touching the database."""

    def __repr__(self) -> str:
        state = inspect(self)
        ident = state.identity
        if ident is None:
            keys = [column.key for column in state.mapper.primary_key]
            ident = tuple(state.dict.get(key) for key in keys)
        shown = ident[0] if len(ident) == 1 else ident
        return f"<{type(self).__name__} {'transient' if shown is None else shown}>"


class Base(ReprMixin, DeclarativeBase):
    """The declarative base of every model in ``db.models``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = TYPE_ANNOTATION_MAP

    @declared_attr.directive
    def __table_args__(cls) -> Any:  # noqa: N805 - declared_attr passes the class
        return dict(TABLE_OPTIONS)

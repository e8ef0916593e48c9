"""Models used only by the tests: they live on their own metadata, never in the application's schema."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, MetaData, Numeric, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from db.base import NAMING_CONVENTION, TABLE_OPTIONS, TYPE_ANNOTATION_MAP, ReprMixin
from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey, Versioned


class TestBase(ReprMixin, DeclarativeBase):
    __test__ = False
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    @declared_attr.directive
    def __table_args__(cls) -> dict[str, Any]:
        return dict(TABLE_OPTIONS)


class Widget(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, TestBase):
    """A soft-deletable, versioned entity with a unique name, a nullable category and a secret."""

    __tablename__ = "widget"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    category: Mapped[str | None] = mapped_column(String(50), index=True)
    quantity: Mapped[int] = mapped_column(default=0)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    ratio: Mapped[float | None]
    active: Mapped[bool] = mapped_column(default=True)
    released_at: Mapped[dt.datetime | None]
    secret_token: Mapped[str | None] = mapped_column(String(100), info={"secret": True})


class Gadget(UUIDPrimaryKey, Timestamps, TestBase):
    """A plain entity: hard delete only, no version; unique on (owner, code)."""

    __tablename__ = "gadget"
    __table_args__ = (UniqueConstraint("owner", "code"), TABLE_OPTIONS)

    owner: Mapped[str] = mapped_column(String(50))
    code: Mapped[str] = mapped_column(String(50))
    label: Mapped[str | None] = mapped_column(String(100))
    hits: Mapped[int] = mapped_column(default=0)


class Part(UUIDPrimaryKey, TestBase):
    """A child row: deleting its gadget while it exists is a foreign-key conflict."""

    __tablename__ = "part"

    gadget_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("gadget.id"))
    name: Mapped[str] = mapped_column(String(50))


class Counter(UUIDPrimaryKey, Versioned, TestBase):
    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    value: Mapped[int] = mapped_column(default=0)


class Note(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, Audited, TestBase):
    """An audited entity with a secret and an excluded noisy field."""

    __tablename__ = "note"
    __audit_exclude__ = frozenset({"views"})

    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(String(1000))
    pin: Mapped[str | None] = mapped_column(String(100), info={"secret": True})
    views: Mapped[int] = mapped_column(default=0)


class Secretive(UUIDPrimaryKey, TestBase):
    """A unique secret column: its duplicate must never show up in an error or its causes."""

    __tablename__ = "secretive"

    token: Mapped[str] = mapped_column(String(100), unique=True, info={"secret": True})

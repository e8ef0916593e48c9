"""Mixins that give a model its identity, timestamps, soft delete and optimistic locking.

Compose them in front of ``Base``::

    class Account(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, Base):
        __tablename__ = "account"
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from uuid_utils.compat import uuid7

# Columns whose default is evaluated once per statement, like SQL's CURRENT_TIMESTAMP, rather than once
# per row: a bulk insert stamps every row of a batch with the same instant and saves a call per row.
STATEMENT_DEFAULT = "statement_default"


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered (index-friendly), generated here so no RETURNING round trip is needed."""
    return uuid7()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UUIDPrimaryKey:
    """A client-generated, time-ordered UUIDv7 primary key, safe to expose and to merge across databases."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-100)


def _created_at_or_now(context: Any) -> dt.datetime:
    """A new row's ``updated_at`` is its ``created_at``: one instant, not two a few microseconds apart."""
    created = context.get_current_parameters().get("created_at") if context is not None else None
    return created if isinstance(created, dt.datetime) else utcnow()


class Timestamps:
    """``created_at`` and ``updated_at`` in UTC, set by the layer (never by the database's clock)."""

    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, info={STATEMENT_DEFAULT: True}, sort_order=90
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=_created_at_or_now, onupdate=utcnow, info={STATEMENT_DEFAULT: True}, sort_order=91
    )


class SoftDelete:
    """``deleted_at`` marks a row as deleted; repositories hide such rows unless asked to include them."""

    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True, sort_order=92)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Versioned:
    """An optimistic-locking counter: an UPDATE only applies if the row still has the version it was read at."""

    version: Mapped[int] = mapped_column(default=1, sort_order=93)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - declared_attr passes the class
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Audited:
    """Opt a model into the audit trail: every create, update and delete of it is recorded, in its transaction.

    Columns marked ``info={"secret": True}`` are recorded as redacted; ``__audit_exclude__`` names columns left
    out entirely (for example a counter that changes on every login).
    """

    __audit_exclude__: frozenset[str] = frozenset()


__all__ = [
    "STATEMENT_DEFAULT",
    "Audited",
    "SoftDelete",
    "Timestamps",
    "UUIDPrimaryKey",
    "Versioned",
    "new_id",
    "utcnow",
]

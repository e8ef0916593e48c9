"""The database's identity: one row, made with the table, that says which database this is.

A file storage root is bound to the database it serves by this identity (``db.storage_binding``): the root keeps
it in a marker file, and the layer refuses to store into, read from or remove anything in a root whose marker names
another database. The identity is not copied by a backup and restore (a restored database keeps its own, or gets a
new one), so a copy of a database never passes for the original.

The table holds at most one row (its key, ``singleton``, can only be 1). The migration that makes the table inserts
the row; so does ``Base.metadata.create_all`` (the ``after_create`` hook below).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Connection, SmallInteger, Table, event, insert
from sqlalchemy.orm import Mapped, mapped_column

from db.base import TABLE_OPTIONS, Base
from db.models.base import utcnow


class DatabaseIdentity(Base):
    __tablename__ = "database_identity"
    __table_args__ = (CheckConstraint("singleton = 1", name="one_row"), TABLE_OPTIONS)

    singleton: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, default=1)
    id: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def identity_row(identity: uuid.UUID | None = None) -> dict[str, Any]:
    """The one row of a new identity (random unless ``identity`` is given)."""
    return {"singleton": 1, "id": identity or uuid.uuid4(), "created_at": utcnow()}


@event.listens_for(DatabaseIdentity.__table__, "after_create")
def _identify_new_database(table: Table, connection: Connection, **_: Any) -> None:
    connection.execute(insert(table), identity_row())


__all__ = ["DatabaseIdentity", "identity_row"]

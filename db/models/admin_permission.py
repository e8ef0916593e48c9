"""A permission: a dotted name such as ``users.deactivate`` that privileged operations require.

``*`` is the wildcard: a role holding it has every permission, present and future (``superadmin``).
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.base import Audited, Timestamps, UUIDPrimaryKey


class Permission(UUIDPrimaryKey, Timestamps, Audited, Base):
    __tablename__ = "admin_permission"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))


__all__ = ["Permission"]

"""An administrative role: a named set of permissions granted to users (``UserRole``).

Built-in roles (``built_in=True``) are defined by ``db.admin_catalog`` and kept in line with it by
``seed_builtin_roles``; ``RoleRepository`` refuses to change or delete them.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.base import Audited, Timestamps, UUIDPrimaryKey


class Role(UUIDPrimaryKey, Timestamps, Audited, Base):
    __tablename__ = "admin_role"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    built_in: Mapped[bool] = mapped_column(default=False)


__all__ = ["Role"]

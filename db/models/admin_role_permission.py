"""A permission included in a role; removed with either (``ON DELETE CASCADE``)."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import TABLE_OPTIONS, Base
from db.models.base import Audited, Timestamps, UUIDPrimaryKey


class RolePermission(UUIDPrimaryKey, Timestamps, Audited, Base):
    __tablename__ = "admin_role_permission"
    __table_args__ = (UniqueConstraint("role_id", "permission_id"), TABLE_OPTIONS)

    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("admin_role.id", ondelete="CASCADE"))
    permission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("admin_permission.id", ondelete="CASCADE"), index=True
    )


__all__ = ["RolePermission"]

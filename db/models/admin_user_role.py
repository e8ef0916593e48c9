"""A grant of a role to a user: who granted it and why. Revoking deletes the row (the audit log keeps history).

Deleting the user removes their grants (``CASCADE``); a role that is still granted cannot be deleted (``RESTRICT``:
revoke it first, with a reason); deleting the granter keeps the grant (``granted_by`` becomes NULL).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import TABLE_OPTIONS, Base
from db.models.base import Audited, Timestamps, UUIDPrimaryKey

if TYPE_CHECKING:
    from db.models.admin_role import Role


class UserRole(UUIDPrimaryKey, Timestamps, Audited, Base):
    __tablename__ = "admin_user_role"
    __table_args__ = (UniqueConstraint("user_id", "role_id"), TABLE_OPTIONS)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("admin_role.id", ondelete="RESTRICT"), index=True)
    granted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"), index=True)
    reason: Mapped[str] = mapped_column(String(500))

    role: Mapped[Role] = relationship()


__all__ = ["UserRole"]

"""A user's membership of an account, with a role: owner, admin, member or viewer.

Every account keeps at least one owner: ``AccountRepository`` enforces it under concurrency (it locks the account
row before counting owners). Memberships are deleted with their account or their user (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from db.base import TABLE_OPTIONS, Base
from db.errors import ValidationError
from db.models.base import Audited, Timestamps, UUIDPrimaryKey

if TYPE_CHECKING:
    from db.models.account import Account
    from db.models.user import User

ROLES = ("owner", "admin", "member", "viewer")  # most to least privileged


class Membership(UUIDPrimaryKey, Timestamps, Audited, Base):
    """``user`` belongs to ``account`` as ``role``; at most one membership per (account, user)."""

    __tablename__ = "membership"
    __table_args__ = (
        # Its index (account_id first) serves members(account) and the owner count; ix_membership_user_id
        # serves accounts_of(user).
        UniqueConstraint("account_id", "user_id"),
        CheckConstraint("role IN ('owner', 'admin', 'member', 'viewer')", name="role"),
        TABLE_OPTIONS,
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    account: Mapped[Account] = relationship()
    user: Mapped[User] = relationship()

    @validates("role")
    def _check_role(self, _key: str, value: str) -> str:
        if value not in ROLES:
            raise ValidationError(f"membership.role must be one of {', '.join(ROLES)}", field="role", rule="role")
        return value


__all__ = ["ROLES", "Membership"]

"""``UserRoleRepository``: grants of roles to users (``UserRole``), and the permissions they hold through them.

Granting and revoking are ``uow.admin``'s operations (``db.services.admin``: permissions, reason, audit event);
this is their data: a grant is created, and deleted (hard: the audit log keeps the history) when revoked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, exists, select, true

from db.models.admin_permission import Permission
from db.models.admin_role import Role
from db.models.admin_role_permission import RolePermission
from db.models.admin_user_role import UserRole
from db.models.user import User
from db.repositories.base_repository import WriteRepository, translated


class UserRoleRepository(WriteRepository[UserRole]):
    model = UserRole

    @translated
    def grant_of(self, user_id: uuid.UUID, role_id: uuid.UUID, *, for_update: bool = False) -> UserRole | None:
        """The user's grant of the role, or None; ``for_update`` locks it until the transaction ends."""
        statement = select(UserRole).where(UserRole.user_id == user_id, UserRole.role_id == role_id)
        return self.session.scalar(statement.with_for_update() if for_update else statement)

    @translated
    def holders(self, role_name: str) -> list[User]:
        """The users granted ``role_name`` (active or not), by email."""
        statement = (
            select(User).join(UserRole, UserRole.user_id == User.id).join(Role, Role.id == UserRole.role_id)
            .where(Role.name == role_name)
        )
        return list(self.session.scalars(statement.order_by(User.email_key)))

    @translated
    def holds_any(self, user_id: uuid.UUID, permissions: Iterable[str]) -> bool:
        """Whether the user, if active and not soft-deleted, holds one of ``permissions`` through a grant."""
        statement = self._held(user_id).where(Permission.name.in_(list(permissions)))
        return bool(self.session.scalar(select(exists(statement))))

    @translated
    def permissions_held(self, user_id: uuid.UUID) -> set[str]:
        """The names of the permissions the user holds through grants; none if inactive or soft-deleted."""
        return set(self.session.scalars(self._held(user_id).with_only_columns(Permission.name).distinct()))

    def _held(self, user_id: uuid.UUID) -> Select[Any]:
        """The user's grants joined to their permissions, if the user is active and not soft-deleted (filter it
        on ``Permission.name``)."""
        return (
            select(UserRole.id)
            .join(RolePermission, RolePermission.role_id == UserRole.role_id)
            .join(Permission, Permission.id == RolePermission.permission_id)
            .join(User, User.id == UserRole.user_id)
            .where(UserRole.user_id == user_id, User.is_active == true(), User.deleted_at.is_(None))
        )


__all__ = ["UserRoleRepository"]

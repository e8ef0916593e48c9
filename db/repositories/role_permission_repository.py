"""``RolePermissionRepository``: the permissions included in each role (``RolePermission``)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from db.models.admin_permission import Permission
from db.models.admin_role_permission import RolePermission
from db.repositories.base_repository import WriteRepository, translated


class RolePermissionRepository(WriteRepository[RolePermission]):
    model = RolePermission

    @translated
    def permission_names(self, role_id: uuid.UUID) -> set[str]:
        """The names of the permissions the role includes."""
        statement = (
            select(Permission.name).join(RolePermission, RolePermission.permission_id == Permission.id)
            .where(RolePermission.role_id == role_id)
        )
        return set(self.session.scalars(statement))


__all__ = ["RolePermissionRepository"]

"""``PermissionRepository``: the permissions roles may include (``Permission``), read only.

The catalogue's permissions are written by ``db.admin_catalog.seed_builtin_roles`` (and migrations), an
application's own ones by its migrations.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from db.models.admin_permission import Permission
from db.repositories.base_repository import ReadRepository, translated


class PermissionRepository(ReadRepository[Permission]):
    model = Permission

    @translated
    def named(self, names: Iterable[str]) -> dict[str, Permission]:
        """The permissions with these names, by name; a name no permission has is left out."""
        statement = select(Permission).where(Permission.name.in_(list(names)))
        return {permission.name: permission for permission in self.session.scalars(statement)}


__all__ = ["PermissionRepository"]

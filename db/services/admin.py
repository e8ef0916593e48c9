"""``AdminService`` (``uow.admin``): permission checks and the privileged operations, done as the unit of work's
actor.

    with database.unit_of_work(actor=admin_user) as uow:
        uow.admin.deactivate_user(mallory, reason="ticket 4711: account takeover")
        token = uow.admin.force_password_reset(ada, reason="requested by phone, identity checked")

Every privileged operation:

1. requires a permission of the actor (``PermissionDenied`` before anything is read from or written to the target);
2. requires a non-blank ``reason`` (``ValidationError``), at most 500 characters, stored stripped;
3. re-reads its target in this transaction, locked (``SELECT … FOR UPDATE``): the object passed in may come from
   another session and be stale; it is not refreshed;
4. records an event with ``data={"reason": ..., ...}`` through ``db.audit.record_event``, in the same transaction
   (a rolled-back operation leaves no entry): ``admin.user.deactivate`` / ``.reactivate`` / ``.unlock`` /
   ``.force_password_reset``, ``admin.account.soft_delete`` / ``.restore``, ``admin.purge`` (entity type: the
   table), ``admin.role.grant`` / ``.revoke`` (entity: the user; data: the role), ``admin.role.create`` /
   ``.delete``.

| operation | permission |
|---|---|
| ``deactivate_user`` (also revokes the user's outstanding tokens) | ``users.deactivate`` |
| ``reactivate_user`` | ``users.reactivate`` |
| ``unlock_user`` | ``users.unlock`` |
| ``force_password_reset`` (returns the raw token; never recorded) | ``users.force_password_reset`` |
| ``soft_delete_account`` / ``restore_account`` | ``accounts.delete`` / ``accounts.restore`` |
| ``purge_soft_deleted`` / ``purge_deleted_rows`` | ``data.purge`` |
| ``grant_role`` / ``revoke_role`` | ``roles.grant`` / ``roles.revoke``, and every permission of the role |
| ``create_role`` / ``delete_role`` | ``roles.manage``, and every permission of the role |

The actor (``Database.unit_of_work(actor=...)``) must be a persisted ``User`` that is active and not soft-deleted,
as the database says now (not as a possibly stale object says). Anything else (None, a string such as
``"system"``, a new unsaved user) has no permission at all. The one exception is the explicit ``SYSTEM`` object
(``db.admin_catalog``): a unit of work whose actor *is* ``SYSTEM`` may do everything, and is recorded as
``system``. It is meant for operations scripts and bootstrapping the first superadmin; it cannot come from request
data.

Granting or revoking a role also requires holding every permission of that role (an admin cannot make anyone a
superadmin, nor take it away). ``superadmin`` holds the wildcard ``*``: every permission, present and future.

The roles' data is ``RoleRepository``'s (``uow.repository(RoleRepository)``), which never changes a built-in role
and checks no permission: the operations here are the ones that check who acts.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from db import audit
from db.admin_catalog import SYSTEM, WILDCARD
from db.errors import Conflict, NotFound, PermissionDenied, ValidationError
from db.models.account import Account
from db.models.admin_role import Role
from db.models.admin_user_role import UserRole
from db.models.base import utcnow
from db.models.user import User
from db.repositories.account_repository import AccountRepository
from db.repositories.base_repository import translated
from db.repositories.bulk import batched
from db.repositories.permission_repository import PermissionRepository
from db.repositories.role_permission_repository import RolePermissionRepository
from db.repositories.role_repository import RoleRepository, check_not_built_in
from db.repositories.soft_deleted_repository import soft_deleted_repository
from db.repositories.user_role_repository import UserRoleRepository
from db.repositories.values import id_of, saved_id
from db.services.base import Service
from db.services.users import UserService

MAX_REASON = 500
ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class AdminService(Service):
    entity = "admin_role"  # what a driver error escaping an operation is reported against (``translated``)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._roles = RoleRepository(session)
        self._grants = UserRoleRepository(session)
        self._role_permissions = RolePermissionRepository(session)
        self._permissions = PermissionRepository(session)
        self._accounts = AccountRepository(session)
        self._users = UserService(session)

    # --- who may do what ---------------------------------------------------------------------------------------

    @translated
    def has_permission(self, user: object, permission: str) -> bool:
        """Whether ``user`` holds ``permission`` (or ``*``) through a role. An inactive, soft-deleted, unsaved or
        non-``User`` actor holds none. Read from the database, in this transaction."""
        ident = _saved_user_id(user)
        return ident is not None and self._grants.holds_any(ident, [permission, WILDCARD])

    @translated
    def permissions_of(self, user: object) -> set[str]:
        """The names of the permissions ``user`` holds (``*`` means all); empty for an inactive user."""
        ident = _saved_user_id(user)
        return set() if ident is None else self._grants.permissions_held(ident)

    @translated
    def roles_of(self, user: User) -> list[Role]:
        """The roles granted to ``user`` (whether or not the user is active), by name."""
        return self._roles.granted_to(user.id)

    @translated
    def holders(self, role_name: str) -> list[User]:
        """The users granted ``role_name`` (active or not), by email."""
        return self._grants.holders(role_name)

    @translated
    def role(self, name: str) -> Role | None:
        return self._roles.named(name)

    @translated
    def permissions_of_role(self, role: Role) -> set[str]:
        return self._role_permissions.permission_names(role.id)

    # --- roles -------------------------------------------------------------------------------------------------

    @translated
    def grant_role(self, user: User, role_name: str, *, reason: str) -> UserRole:
        """Grant ``role_name`` to ``user``; a ``Conflict`` if they hold it already. Needs ``roles.grant`` and
        every permission of the role."""
        reason = self._authorize("roles.grant", reason)
        role = self._existing_role(role_name)
        self._require_all_of(role)
        grant = self._grants.create(
            user_id=_target_id(user), role_id=role.id, granted_by=_saved_user_id(self.actor), reason=reason
        )
        self._event("admin.role.grant", "user", user.id, reason, role=role.name)
        return grant

    @translated
    def revoke_role(self, user: User, role_name: str, *, reason: str) -> None:
        """Take ``role_name`` from ``user``; ``NotFound`` if they do not hold it. Needs ``roles.revoke`` and every
        permission of the role."""
        reason = self._authorize("roles.revoke", reason)
        role = self._existing_role(role_name)
        self._require_all_of(role)
        grant = self._grants.grant_of(_target_id(user), role.id, for_update=True)
        if grant is None:
            raise NotFound("admin_user_role", f"{role.name} of user {user.id}")
        self._grants.delete(grant, hard=True)
        self._event("admin.role.revoke", "user", user.id, reason, role=role.name)

    @translated
    def create_role(
        self, name: str, *, permissions: Iterable[str], description: str | None = None, reason: str
    ) -> Role:
        """A custom role with these (existing) permissions. Needs ``roles.manage`` and every permission given."""
        reason = self._authorize("roles.manage", reason)
        if not isinstance(name, str) or not ROLE_NAME.fullmatch(name):
            raise ValidationError("admin_role.name must be 1-64 lowercase letters, digits, '_' or '-'", field="name")
        wanted = set(permissions)
        found = self._permissions.named(wanted)
        if wanted - found.keys():
            raise ValidationError(f"unknown permissions {sorted(wanted - found.keys())}", field="permissions")
        self._require_all(wanted)
        role = self._roles.create(name=name, description=description, built_in=False)
        for permission in sorted(found.values(), key=lambda p: p.name):
            self._role_permissions.create(role_id=role.id, permission_id=permission.id)
        self._event("admin.role.create", "admin_role", role.id, reason, name=name, permissions=sorted(wanted))
        return role

    @translated
    def delete_role(self, name: str, *, reason: str) -> None:
        """Delete a custom role; a ``Conflict`` if it is built in or still granted to someone."""
        reason = self._authorize("roles.manage", reason)
        role = self._existing_role(name)
        check_not_built_in(role)
        self._require_all(self.permissions_of_role(role))
        self._roles.delete(role, hard=True)
        self._event("admin.role.delete", "admin_role", role.id, reason, name=name)

    # --- privileged operations on users ------------------------------------------------------------------------

    @translated
    def deactivate_user(self, user: User, *, reason: str) -> None:
        """The user can no longer sign in, holds no permission, and their outstanding tokens are revoked."""
        reason = self._authorize("users.deactivate", reason)
        target = self._current_user(user)
        self._users.set_active(target, False)
        self._users.revoke_tokens(target)
        self._event("admin.user.deactivate", "user", user.id, reason)

    @translated
    def reactivate_user(self, user: User, *, reason: str) -> None:
        reason = self._authorize("users.reactivate", reason)
        self._users.set_active(self._current_user(user), True)
        self._event("admin.user.reactivate", "user", user.id, reason)

    @translated
    def unlock_user(self, user: User, *, reason: str) -> None:
        """Clear the user's login lockout and failed-login count."""
        reason = self._authorize("users.unlock", reason)
        self._users.unlock(self._current_user(user))
        self._event("admin.user.unlock", "user", user.id, reason)

    @translated
    def force_password_reset(self, user: User, *, reason: str) -> str:
        """Make the user choose a new password. Returns the raw reset token for the caller to send; it is stored
        hashed and never recorded."""
        reason = self._authorize("users.force_password_reset", reason)
        token = self._users.require_password_reset(self._current_user(user))
        self._event("admin.user.force_password_reset", "user", user.id, reason)
        return token

    # --- privileged operations on accounts and data ------------------------------------------------------------

    @translated
    def soft_delete_account(self, account: Account, *, reason: str) -> None:
        """Soft-delete the account (``NotFound`` if it already is); its slug stays reserved, for ``restore``."""
        reason = self._authorize("accounts.delete", reason)
        self._accounts.delete(self._current_account(account))
        self._event("admin.account.soft_delete", "account", account.id, reason)

    @translated
    def restore_account(self, account: Account, *, reason: str) -> None:
        """Bring a soft-deleted account back; a ``Conflict`` if it is not deleted."""
        reason = self._authorize("accounts.restore", reason)
        locked = self._current_account(account, include_deleted=True)
        if locked.deleted_at is None:
            raise Conflict(f"account {account.id} is not deleted", entity="account")
        with self.session.begin_nested():
            locked.deleted_at = None
        self._event("admin.account.restore", "account", account.id, reason)

    @translated
    def purge_soft_deleted(self, model: str | type[Any], *, older_than: dt.timedelta, reason: str) -> int:
        """Hard-delete the rows of a soft-deletable model (a class, its name or its table's) that were soft-deleted
        more than ``older_than`` ago; returns how many. Irreversible: needs ``data.purge``."""
        reason = self._authorize("data.purge", reason)
        rows = soft_deleted_repository(model)(self.session)
        if not isinstance(older_than, dt.timedelta) or older_than < dt.timedelta(0):
            raise ValidationError("older_than must be a non-negative timedelta", field="older_than")
        cutoff = utcnow() - older_than
        count = rows.purge({"deleted_at__lt": cutoff})
        self._event("admin.purge", rows.entity, None, reason, cutoff=cutoff.isoformat(), count=count,
                    older_than_seconds=older_than.total_seconds())
        return count

    @translated
    def soft_deleted_before(self, model: str | type[Any], before: dt.datetime) -> list[tuple[uuid.UUID, dt.datetime]]:
        """(id, deleted_at) of the rows of a soft-deletable model soft-deleted before ``before``, oldest first."""
        return soft_deleted_repository(model)(self.session).deleted_before(before)

    @translated
    def purge_deleted_rows(self, model: str | type[Any], ids: Iterable[Any], *, deleted_before: dt.datetime,
                           reason: str) -> int:
        """Hard-delete these rows of a soft-deletable model, those of them still soft-deleted before
        ``deleted_before`` (a restored row stays, and so does one restored and deleted again since); returns how
        many. What a cleanup plan listed, by id. Irreversible: needs ``data.purge``."""
        reason = self._authorize("data.purge", reason)
        rows, count = soft_deleted_repository(model)(self.session), 0
        for chunk in batched(ids, 1_000):
            count += rows.purge({"id__in": chunk, "deleted_at__lt": deleted_before})
        self._event("admin.purge", rows.entity, None, reason, count=count, by="id")
        return count

    # --- helpers -----------------------------------------------------------------------------------------------

    def _require(self, permission: str) -> None:
        """``PermissionDenied`` unless the actor holds ``permission``."""
        if self.actor is not SYSTEM and not self.has_permission(self.actor, permission):
            raise PermissionDenied(permission, self.actor)

    def _authorize(self, permission: str, reason: Any) -> str:
        """The permission first (nothing is said about the reason to an actor who may not act), then the reason."""
        self._require(permission)
        return _reason(reason)

    def _require_all_of(self, role: Role) -> None:
        self._require_all(self.permissions_of_role(role))

    def _require_all(self, permissions: Iterable[str]) -> None:
        """The actor must hold each of ``permissions``: nobody hands out (or takes away) more than they have."""
        if self.actor is SYSTEM:
            return
        held = self.permissions_of(self.actor)
        if WILDCARD in held:
            return
        missing = sorted(set(permissions) - held)
        if missing:
            raise PermissionDenied(missing[0], self.actor)

    def _current_user(self, user: User) -> User:
        """The target as the database has it now, locked: the caller's object may come from another session."""
        found = self._users.get_by_id(_target_id(user), for_update=True)
        if found is None:
            raise NotFound("user", user.id)
        return found

    def _current_account(self, account: Account, *, include_deleted: bool = False) -> Account:
        found = self._accounts.get_by_id(account.id, include_deleted=include_deleted, for_update=True)
        if found is None:
            raise NotFound("account", account.id)
        return found

    def _existing_role(self, name: str) -> Role:
        role = self.role(name)
        if role is None:
            raise NotFound("admin_role", name)
        return role

    def _event(self, action: str, entity_type: str, entity_id: Any, reason: str, **data: Any) -> None:
        audit.record_event(self.session, action, entity_type=entity_type, entity_id=entity_id,
                           data={"reason": reason, **data})


def _saved_user_id(user: object) -> uuid.UUID | None:
    """The id of a ``User`` that has been saved (flushed or loaded), else None."""
    return saved_id(user) if isinstance(user, User) else None


def _target_id(user: User) -> uuid.UUID:
    return id_of(user, "user", entity_only=True)


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("a reason is required for a privileged operation", field="reason", rule="required")
    if len(reason.strip()) > MAX_REASON:
        raise ValidationError(f"the reason is longer than {MAX_REASON} characters", field="reason")
    return reason.strip()


__all__ = ["AdminService"]

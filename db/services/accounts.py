"""``uow.accounts``: accounts and their members, keeping at least one owner per account.

    account = uow.accounts.create(name="Acme", slug="acme", owner=ada)      # ada becomes its owner
    uow.accounts.add_member(account, bob, "admin")
    uow.accounts.change_role(account, ada, "member")   # Conflict if ada is the last owner
    [(m.user, m.role) for m in uow.accounts.members(account)]

Every membership change locks the account row (``SELECT … FOR UPDATE``) before it reads the memberships, and reads
them with locking reads, so two transactions demoting or removing two different owners at once are serialized and
the second sees the first's change (on MariaDB too, whose REPEATABLE READ snapshot a plain read would reuse).
SQLite serializes writing transactions anyway (the locking read takes its write lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from db.errors import Conflict, StaleVersion, ValidationError
from db.models.account import Account
from db.models.membership import ROLES, Membership
from db.models.user import User
from db.repositories.account_repository import AccountRepository
from db.repositories.membership_repository import MembershipRepository
from db.repositories.values import id_of
from db.services.base import EntityService

OWNER = "owner"


class AccountService(EntityService[Account]):
    @cached_property
    def repository(self) -> AccountRepository:
        return AccountRepository(self.session)

    @cached_property
    def memberships(self) -> MembershipRepository:
        return MembershipRepository(self.session)

    # --- accounts ----------------------------------------------------------------------------------------------

    def create(self, *, owner: User, **fields: Any) -> Account:
        """A new account (``name``, ``slug``, optional ``plan``, ``status``, ``storage_quota_bytes``) owned by
        ``owner``, in the same transaction. A slug in use (by a soft-deleted account too) is a ``Conflict``."""
        owner_id = _id(owner)
        try:
            with self.session.begin_nested():  # both rows or neither, even if the caller goes on after an error
                account = self.repository.create(**fields)
                self.memberships.create(account_id=account.id, user_id=owner_id, role=OWNER)
        except Conflict as error:
            if isinstance(error, StaleVersion) or "slug" not in (error.constraint or ""):
                raise
            raise Conflict(f"account.slug {fields.get('slug')!r} already exists", entity="account",
                           constraint=error.constraint) from None
        return account

    def update(self, instance_or_id: Any, **fields: Any) -> Account:
        return self.repository.update(instance_or_id, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        return self.repository.update_many(filters, **fields)

    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        self.repository.delete(instance_or_id, hard=hard)

    # --- memberships -------------------------------------------------------------------------------------------

    def add_member(self, account: Account, user: User, role: str) -> Membership:
        """Make ``user`` a member of ``account`` as ``role``; a ``Conflict`` if they already are one."""
        _check_role(role)
        locked = self.repository.locked(account.id)
        return self.memberships.create(account_id=locked.id, user_id=_id(user), role=role)

    def change_role(self, account: Account, user: User, role: str) -> Membership:
        """Give a member another role; demoting the last owner is a ``Conflict``."""
        _check_role(role)
        membership = self._locked_membership(account, user)
        if membership.role == OWNER and role != OWNER:
            self._keep_an_owner(membership, "demote")
        if membership.role != role:
            self.memberships.update(membership, role=role)
        return membership

    def remove_member(self, account: Account, user: User) -> None:
        """End a membership; removing the last owner is a ``Conflict``."""
        membership = self._locked_membership(account, user)
        if membership.role == OWNER:
            self._keep_an_owner(membership, "remove")
        self.memberships.delete(membership, hard=True)

    def members(self, account: Account) -> list[Membership]:
        """The account's memberships with their ``user`` loaded: owners first, then admins, members, viewers, each
        in the order they joined. Members whose user is deactivated are included (they keep their role)."""
        return self.memberships.of_account(account.id)

    def accounts_of(self, user: User) -> list[Account]:
        """The accounts ``user`` belongs to (soft-deleted ones hidden), by name."""
        return self.repository.of_user(_id(user))

    def role_of(self, account: Account, user: User) -> str | None:
        """``user``'s role in ``account``, or None if they are not a member."""
        return self.memberships.role_of(account.id, _id(user))

    # --- locking -----------------------------------------------------------------------------------------------

    def _locked_membership(self, account: Account, user: User) -> Membership:
        locked = self.repository.locked(account.id)
        return self.memberships.locked(locked.id, _id(user))

    def _keep_an_owner(self, membership: Membership, verb: str) -> None:
        """Refuse to take away the account's last owner. Runs with the account row locked: the count is exact."""
        if len(self.memberships.locked_ids_with_role(membership.account_id, OWNER)) <= 1:
            raise Conflict(f"account {membership.account_id}: cannot {verb} its last owner", entity="membership",
                           constraint="last_owner")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"membership.role must be one of {', '.join(ROLES)}", field="role", rule="role")


def _id(user: User) -> uuid.UUID:
    return id_of(user, "user_id", entity_only=True)


__all__ = ["OWNER", "AccountService"]

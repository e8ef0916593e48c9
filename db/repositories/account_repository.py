"""``AccountRepository``: accounts and their memberships, keeping at least one owner per account.

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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import case, select
from sqlalchemy.orm import selectinload

from db.errors import Conflict, NotFound, StaleVersion, ValidationError
from db.models.account import FIELD_CHECKS, PLANS, Account
from db.models.membership import ROLES, Membership
from db.models.user import User
from db.repositories.base_repository import BaseRepository, translated

OWNER = "owner"


class _Memberships(BaseRepository[Membership]):
    """Generic writes of memberships, for ``AccountRepository`` only: they do not guard the owner invariant."""

    model = Membership


class AccountRepository(BaseRepository[Account]):
    model = Account
    plans: ClassVar[frozenset[str]] = frozenset(PLANS)  # a subclass may offer other plans

    # --- accounts ----------------------------------------------------------------------------------------------

    @translated
    def create(self, *, owner: User, **fields: Any) -> Account:  # type: ignore[override]
        """A new account (``name``, ``slug``, optional ``plan``, ``status``, ``storage_quota_bytes``) owned by
        ``owner``, in the same transaction. A slug in use (by a soft-deleted account too) is a ``Conflict``."""
        self._check_fields(fields)
        owner_id = _id(owner)
        try:
            with self.session.begin_nested():  # both rows or neither, even if the caller goes on after an error
                account = super().create(**fields)
                self._memberships.create(account_id=account.id, user_id=owner_id, role=OWNER)
        except Conflict as error:
            if isinstance(error, StaleVersion) or "slug" not in (error.constraint or ""):
                raise
            raise Conflict(f"account.slug {fields.get('slug')!r} already exists", entity="account",
                           constraint=error.constraint) from None
        return account

    def update(self, instance_or_id: Any, **fields: Any) -> Account:
        self._check_fields(fields)
        return super().update(instance_or_id, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        self._check_fields(fields)
        return super().update_many(filters, **fields)

    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> Account:
        """Accounts made by ``upsert`` (or ``create_many``) have no owner: add one in the same transaction."""
        self._check_fields(values)
        return super().upsert(values, match=match)

    def _check_fields(self, fields: Mapping[str, Any]) -> None:
        if "plan" in fields and fields["plan"] not in self.plans:
            raise ValidationError(f"account.plan must be one of {', '.join(sorted(self.plans))}", field="plan")
        for key, check in FIELD_CHECKS.items():
            if key in fields:
                check(fields[key])

    # --- memberships -------------------------------------------------------------------------------------------

    @translated
    def add_member(self, account: Account, user: User, role: str) -> Membership:
        """Make ``user`` a member of ``account`` as ``role``; a ``Conflict`` if they already are one."""
        _check_role(role)
        locked = self._lock(account)
        return self._memberships.create(account_id=locked.id, user_id=_id(user), role=role)

    @translated
    def change_role(self, account: Account, user: User, role: str) -> Membership:
        """Give a member another role; demoting the last owner is a ``Conflict``."""
        _check_role(role)
        membership = self._locked_membership(account, user)
        if membership.role == OWNER and role != OWNER:
            self._keep_an_owner(membership, "demote")
        if membership.role != role:
            self._memberships.update(membership, role=role)
        return membership

    @translated
    def remove_member(self, account: Account, user: User) -> None:
        """End a membership; removing the last owner is a ``Conflict``."""
        membership = self._locked_membership(account, user)
        if membership.role == OWNER:
            self._keep_an_owner(membership, "remove")
        self._memberships.delete(membership, hard=True)

    @translated
    def members(self, account: Account) -> list[Membership]:
        """The account's memberships with their ``user`` loaded: owners first, then admins, members, viewers, each
        in the order they joined. Members whose user is deactivated are included (they keep their role)."""
        rank = case({role: position for position, role in enumerate(ROLES)}, value=Membership.role)
        statement = (
            select(Membership).where(Membership.account_id == account.id)
            .options(selectinload(Membership.user))
            .order_by(rank, Membership.created_at, Membership.id)
        )
        return list(self.session.scalars(statement))

    @translated
    def accounts_of(self, user: User) -> list[Account]:
        """The accounts ``user`` belongs to (soft-deleted ones hidden), by name."""
        statement = (
            select(Account).join(Membership, Membership.account_id == Account.id)
            .where(Membership.user_id == _id(user), Account.deleted_at.is_(None))
            .order_by(Account.name, Account.id)
        )
        return list(self.session.scalars(statement))

    @translated
    def role_of(self, account: Account, user: User) -> str | None:
        """``user``'s role in ``account``, or None if they are not a member."""
        statement = select(Membership.role).where(Membership.account_id == account.id,
                                                  Membership.user_id == _id(user))
        return self.session.scalar(statement)

    # --- locking -----------------------------------------------------------------------------------------------

    @property
    def _memberships(self) -> _Memberships:
        return _Memberships(self.session)

    def _lock(self, account: Account) -> Account:
        """The account row, locked until the transaction ends; ``NotFound`` if it is gone or soft-deleted."""
        statement = select(Account).where(Account.id == account.id, Account.deleted_at.is_(None)).with_for_update()
        locked = self.session.scalars(statement.execution_options(populate_existing=True)).one_or_none()
        if locked is None:
            raise NotFound("account", account.id)
        return locked

    def _locked_membership(self, account: Account, user: User) -> Membership:
        locked = self._lock(account)
        statement = (
            select(Membership).where(Membership.account_id == locked.id, Membership.user_id == _id(user))
            .with_for_update().execution_options(populate_existing=True)
        )
        membership = self.session.scalars(statement).one_or_none()
        if membership is None:
            raise NotFound("membership", f"of user {_id(user)} in account {locked.id}")
        return membership

    def _keep_an_owner(self, membership: Membership, verb: str) -> None:
        """Refuse to take away the account's last owner. Runs with the account row locked: the count is exact."""
        owners = self.session.scalars(
            select(Membership.id)
            .where(Membership.account_id == membership.account_id, Membership.role == OWNER)
            .with_for_update()
        ).all()
        if len(owners) <= 1:
            raise Conflict(f"account {membership.account_id}: cannot {verb} its last owner", entity="membership",
                           constraint="last_owner")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"membership.role must be one of {', '.join(ROLES)}", field="role", rule="role")


def _id(user: User) -> uuid.UUID:
    """The user's id; anything without one (not a user, or a ``User`` not yet flushed) is refused."""
    ident = getattr(user, "id", None)
    if ident is None and isinstance(user, User):
        raise ValidationError("the user must be saved first (it has no id yet)", field="user_id")
    if not isinstance(ident, uuid.UUID):
        raise ValidationError(f"a user is needed here, not {type(user).__name__}", field="user_id")
    return ident


__all__ = ["OWNER", "AccountRepository"]

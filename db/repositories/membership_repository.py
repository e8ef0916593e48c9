"""``MembershipRepository``: who belongs to which account, in which role.

The rule that every account keeps an owner is the accounts service's (``db.services.accounts``): it locks the
account row before it changes memberships. These are the queries it runs, the locking reads among them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import case, select
from sqlalchemy.orm import selectinload

from db.errors import NotFound
from db.models.membership import ROLES, Membership
from db.repositories.base_repository import WriteRepository, translated


class MembershipRepository(WriteRepository[Membership]):
    model = Membership

    @translated
    def of_account(self, account_id: uuid.UUID) -> list[Membership]:
        """The account's memberships with their ``user`` loaded: owners first, then admins, members, viewers, each
        in the order they joined."""
        rank = case({role: position for position, role in enumerate(ROLES)}, value=Membership.role)
        statement = (
            select(Membership).where(Membership.account_id == account_id)
            .options(selectinload(Membership.user))
            .order_by(rank, Membership.created_at, Membership.id)
        )
        return list(self.session.scalars(statement))

    @translated
    def role_of(self, account_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
        statement = select(Membership.role).where(Membership.account_id == account_id,
                                                  Membership.user_id == user_id)
        return self.session.scalar(statement)

    @translated
    def locked(self, account_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
        """The membership, read with a locking read (the latest committed row); ``NotFound`` if there is none."""
        statement = (
            select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
            .with_for_update().execution_options(populate_existing=True)
        )
        membership = self.session.scalars(statement).one_or_none()
        if membership is None:
            raise NotFound("membership", f"of user {user_id} in account {account_id}")
        return membership

    @translated
    def locked_ids_with_role(self, account_id: uuid.UUID, role: str) -> Sequence[uuid.UUID]:
        """The ids of the account's memberships in ``role``, locked until the transaction ends."""
        statement = (
            select(Membership.id).where(Membership.account_id == account_id, Membership.role == role)
            .with_for_update()
        )
        return self.session.scalars(statement).all()


__all__ = ["MembershipRepository"]

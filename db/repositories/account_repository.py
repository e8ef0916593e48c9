"""``AccountRepository``: accounts' rows, with their plan and fields checked on every write path.

Owners and members are the accounts service's business (``db.services.accounts``, reached as ``uow.accounts``): an
account made here directly, by ``create``, ``create_many`` or ``upsert``, has no owner until one is added in the
same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import and_, select

from db.errors import NotFound, ValidationError
from db.models.account import FIELD_CHECKS, PLANS, Account
from db.models.membership import Membership
from db.repositories.base_repository import BaseRepository, translated


class AccountRepository(BaseRepository[Account]):
    model = Account
    plans: ClassVar[frozenset[str]] = frozenset(PLANS)  # a subclass may offer other plans

    def create(self, **fields: Any) -> Account:
        self._check_fields(fields)
        return super().create(**fields)

    def _prepared(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        self._check_fields(row)
        return row

    def update(self, instance_or_id: Any, **fields: Any) -> Account:
        self._check_fields(fields)
        return super().update(instance_or_id, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        self._check_fields(fields)
        return super().update_many(filters, **fields)

    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> Account:
        self._check_fields(values)
        return super().upsert(values, match=match)

    @translated
    def of_user(self, user_id: uuid.UUID) -> list[Account]:
        """The accounts the user belongs to (soft-deleted ones hidden), by name."""
        statement = (
            select(Account).join(Membership, Membership.account_id == Account.id)
            .where(Membership.user_id == user_id, Account.deleted_at.is_(None))
            .order_by(Account.name, Account.id)
        )
        return list(self.session.scalars(statement))

    @translated
    def live_with_role_of(self, account_id: uuid.UUID, user_id: uuid.UUID | None) -> tuple[bool, str | None]:
        """Whether the account exists and is not deleted, and ``user_id``'s role in it (None: not a member)."""
        found = self.session.execute(
            select(Account.id, Membership.role)
            .outerjoin(Membership, and_(Membership.account_id == Account.id, Membership.user_id == user_id))
            .where(Account.id == account_id, Account.deleted_at.is_(None))
        ).first()
        return (False, None) if found is None else (True, found.role)

    @translated
    def locked(self, account_id: uuid.UUID) -> Account:
        """The account row, locked until the transaction ends; ``NotFound`` if it is gone or soft-deleted."""
        statement = select(Account).where(Account.id == account_id, Account.deleted_at.is_(None)).with_for_update()
        locked = self.session.scalars(statement.execution_options(populate_existing=True)).one_or_none()
        if locked is None:
            raise NotFound("account", account_id)
        return locked

    def _check_fields(self, fields: Mapping[str, Any]) -> None:
        if "plan" in fields and fields["plan"] not in self.plans:
            raise ValidationError(f"account.plan must be one of {', '.join(sorted(self.plans))}", field="plan")
        for key, check in FIELD_CHECKS.items():
            if key in fields:
                check(fields[key])


__all__ = ["AccountRepository"]

"""``UserTokenRepository``: the stored single-use tokens (their SHA-256 only) and the queries on them.

Tokens are written only through the operations below: added, claimed, revoked and purged. Minting the raw token,
choosing its lifetime and recording the audit events are ``UserService``'s (``db.services.users``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update

from db.models.base import utcnow
from db.models.user_token import UserToken
from db.repositories.base_repository import ReadRepository, translated
from db.repositories.bulk import batched


class UserTokenRepository(ReadRepository[UserToken]):
    model = UserToken

    @translated
    def add(self, *, user_id: uuid.UUID, purpose: str, token_hash: str, expires_at: dt.datetime) -> UserToken:
        """A new token row, flushed (its id is known)."""
        token = UserToken(user_id=user_id, purpose=purpose, token_hash=token_hash, expires_at=expires_at)
        self.session.add(token)
        self.session.flush()
        return token

    @translated
    def claim(self, token_hash: str, purpose: str) -> UserToken | None:
        """Mark the live token (unused, unrevoked, unexpired) with this hash and purpose used; None if there is none.

        One conditional UPDATE: of two concurrent claims of one token, exactly one gets it.
        """
        now = utcnow()
        claimed = self.session.execute(
            update(UserToken)
            .where(UserToken.token_hash == token_hash, UserToken.purpose == purpose, UserToken.used_at.is_(None),
                   UserToken.revoked_at.is_(None), UserToken.expires_at > now)
            .values(used_at=now)
        )
        if _rowcount(claimed) != 1:
            return None
        return self.session.scalars(select(UserToken).where(UserToken.token_hash == token_hash)).one()

    @translated
    def revoke_outstanding(self, user_id: uuid.UUID, purpose: str | None) -> int:
        """Revoke the user's unused, unrevoked tokens (of ``purpose``, or all); returns how many."""
        criteria = [UserToken.user_id == user_id, UserToken.used_at.is_(None), UserToken.revoked_at.is_(None)]
        if purpose is not None:
            criteria.append(UserToken.purpose == purpose)
        return _rowcount(self.session.execute(update(UserToken).where(*criteria).values(revoked_at=utcnow())))

    @translated
    def owner_id(self, token_hash: str, purpose: str) -> uuid.UUID | None:
        """The id of the user a token of this hash and purpose was issued to, live or not."""
        statement = select(UserToken.user_id).where(UserToken.token_hash == token_hash, UserToken.purpose == purpose)
        return self.session.scalar(statement)

    @translated
    def stale(self, before: dt.datetime) -> Sequence[UserToken]:
        """Tokens that expired, were used or were revoked before ``before``, oldest first."""
        finished = or_(UserToken.expires_at < before, UserToken.used_at < before, UserToken.revoked_at < before)
        statement = select(UserToken).where(finished).order_by(UserToken.created_at, UserToken.id)
        return self.session.scalars(statement).all()

    @translated
    def delete_ids(self, ids: Iterable[uuid.UUID]) -> int:
        """Remove these tokens for good, a thousand ids per statement; returns how many went."""
        count = 0
        for chunk in batched(ids, 1_000):
            count += _rowcount(self.session.execute(delete(UserToken).where(UserToken.id.in_(chunk))))
        return count


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


__all__ = ["UserTokenRepository"]

"""A single-use token mailed to a user: email verification or password reset.

Only the SHA-256 of the token is stored: the raw token (256 random bits) is handed out once, when it is issued,
and a database dump cannot be used to verify an address or reset a password. A plain hash is enough (no slow
hash as for passwords): the token is random, so there is no dictionary to try.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import TABLE_OPTIONS, Base
from db.models.base import Timestamps, UUIDPrimaryKey

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"
TOKEN_PURPOSES = frozenset({VERIFY_EMAIL, PASSWORD_RESET})


def token_digest(raw_token: str) -> str:
    """The stored form of a token: SHA-256, 64 hex digits."""
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


class UserToken(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "user_token"
    __table_args__ = (
        # Revoking a user's outstanding tokens of a purpose; also the index MariaDB needs for the foreign key.
        Index("ix_user_token_user_id_purpose", "user_id", "purpose"),
        TABLE_OPTIONS,
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, info={"secret": True})
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


__all__ = ["PASSWORD_RESET", "TOKEN_PURPOSES", "VERIFY_EMAIL", "UserToken", "token_digest"]

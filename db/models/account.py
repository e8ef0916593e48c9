"""An account (a tenant: a team or an organisation) and the users who belong to it.

``Membership`` is in ``db/models/membership.py``. Rules checked here hold on every write path that goes through
the ORM (constructor or attribute assignment): a bad slug or status is a ``ValidationError`` before any SQL runs.
The plan is checked by ``AccountRepository`` (``plans``), so that an application can add plans without a migration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from db.base import TABLE_OPTIONS, Base
from db.errors import ValidationError
from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey, Versioned

SLUG_PATTERN = re.compile(r"[a-z0-9-]{1,80}")
PLANS = ("free", "pro", "enterprise")
STATUSES = ("active", "suspended", "closed")
DEFAULT_STORAGE_QUOTA = 10 * 2**30  # 10 GiB


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValidationError("account.name must be 1-200 characters, not blank", field="name")
    return value


def check_slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG_PATTERN.fullmatch(value):
        raise ValidationError("account.slug must be 1-80 lowercase letters, digits or hyphens", field="slug",
                              rule="slug")
    return value


def check_status(value: Any) -> str:
    if value not in STATUSES:
        raise ValidationError(f"account.status must be one of {', '.join(STATUSES)}", field="status")
    return str(value)


def check_quota(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError("account.storage_quota_bytes must be a non-negative integer",
                              field="storage_quota_bytes")
    return value


# Checked on every ORM write (constructor, attribute assignment); AccountRepository applies them to bulk writes.
FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": check_name, "slug": check_slug, "status": check_status, "storage_quota_bytes": check_quota,
}


class Account(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, Audited, Base):
    """A tenant. Its slug stays reserved while it is soft-deleted, so ``restore`` can never clash."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint(f"status IN ({_one_of(STATUSES)})", name="status"),
        CheckConstraint("storage_quota_bytes >= 0", name="storage_quota_bytes"),
        TABLE_OPTIONS,
    )

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    plan: Mapped[str] = mapped_column(String(32), default="free")
    status: Mapped[str] = mapped_column(String(16), default="active")
    storage_quota_bytes: Mapped[int] = mapped_column(BigInteger, default=DEFAULT_STORAGE_QUOTA)

    @validates(*FIELD_CHECKS)
    def _check(self, key: str, value: Any) -> Any:
        return FIELD_CHECKS[key](value)


__all__ = [
    "DEFAULT_STORAGE_QUOTA", "FIELD_CHECKS", "PLANS", "SLUG_PATTERN", "STATUSES",
    "Account", "check_name", "check_quota", "check_slug", "check_status",
]

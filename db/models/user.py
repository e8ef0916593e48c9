"""A person who can sign in: email, optional username, profile, password hash and login bookkeeping.

Email and username are stored as given (without surrounding whitespace) and, next to them, in a normalised form
that carries the UNIQUE constraint, so that ``Ada@Example.com`` and ``ada@example.com`` are one user on every
engine (``db.base`` gives MariaDB a binary collation, so no engine folds case by itself). The normalisation:

1. strip surrounding whitespace;
2. Unicode NFKC (compatibility forms such as full-width letters become their plain equivalents);
3. lower-case the whole address. The local part is case-sensitive by the letter of RFC 5321, but mail providers
   in practice do not tell ``Ada`` from ``ada``, and a person who types either expects one account. ``lower``,
   not ``casefold``: casefold turns ``ß`` into ``ss`` and would merge addresses that mail systems keep apart.

Dots and ``+tags`` are kept (``a.da+x@gmail.com`` is not ``ada@gmail.com``). A soft-deleted user keeps the key:
the address cannot be registered again until the row is purged.

The field checks run on every ORM write (constructor, attribute assignment); ``UserService`` applies them to
bulk writes. Setting ``email`` sets ``email_key`` (and a changed address is no longer verified); setting
``username`` sets ``username_key`` (``UserRepository`` derives both on its bulk writes too).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Callable
from typing import Any

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from db.base import TABLE_OPTIONS, Base
from db.errors import ValidationError
from db.lookalikes import lookalike_problem
from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey, Versioned

EMAIL_MAX_LENGTH = 320
USERNAME_MAX_LENGTH = 64
DISPLAY_NAME_MAX_LENGTH = 200
_NOT_ALLOWED = r"@\s\x00-\x1f\x7f"
EMAIL_PATTERN = re.compile(rf"[^{_NOT_ALLOWED}]{{1,64}}@[^{_NOT_ALLOWED}.]+(?:\.[^{_NOT_ALLOWED}.]+)*")
USERNAME_PATTERN = re.compile(r"[\w.-]{3,64}")  # letters (any script), digits, _ . -
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")  # BCP 47 style: en, en-GB, zh-Hant-TW


def normalise(value: str) -> str:
    """The comparison form of an email address or a username (see the module docstring)."""
    return unicodedata.normalize("NFKC", value.strip()).lower()


def email_key(email: str) -> str:
    return normalise(email)


def check_email(value: Any) -> str:
    if not isinstance(value, str) or not EMAIL_PATTERN.fullmatch(value.strip()) or _too_long(
        value, EMAIL_MAX_LENGTH
    ):
        raise ValidationError("user.email is not a valid email address", field="email", rule="format")
    _refuse_lookalike("email", value.strip())
    return value.strip()


def check_username(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not USERNAME_PATTERN.fullmatch(value.strip()) or _too_long(
        value, USERNAME_MAX_LENGTH
    ):
        raise ValidationError("user.username must be 3-64 letters, digits, '_', '.' or '-'", field="username",
                              rule="format")
    _refuse_lookalike("username", value.strip())
    return value.strip()


def check_display_name(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value.strip()) > DISPLAY_NAME_MAX_LENGTH or _has_control(value):
        raise ValidationError(f"user.display_name must be at most {DISPLAY_NAME_MAX_LENGTH} printable characters",
                              field="display_name", rule="format")
    return value.strip()


def check_locale(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 35 or not LOCALE_PATTERN.fullmatch(value):
        raise ValidationError("user.locale must be a language tag such as 'en' or 'en-GB'", field="locale",
                              rule="format")
    return value


def check_timezone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _is_zone(value):
        raise ValidationError("user.timezone must be an IANA time zone such as 'Europe/Paris'", field="timezone",
                              rule="format")
    return value


def check_flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"user.{name} must be True or False", field=name, rule="type")
        return value

    return check


def check_failed_login_count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError("user.failed_login_count must be a non-negative integer", field="failed_login_count",
                              rule="type")
    return value


# Checked on every ORM write (constructor, attribute assignment); UserService applies them to bulk writes.
FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": check_email,
    "username": check_username,
    "display_name": check_display_name,
    "locale": check_locale,
    "timezone": check_timezone,
    "is_active": check_flag("is_active"),
    "is_verified": check_flag("is_verified"),
    "must_change_password": check_flag("must_change_password"),
    "failed_login_count": check_failed_login_count,
}


def derived_fields(key: str, value: Any) -> dict[str, Any]:
    """The columns kept in step with ``key`` set to (already checked) ``value``: the normalised keys."""
    if key == "email":
        return {"email_key": email_key(value)}
    if key == "username":
        return {"username_key": None if value is None else normalise(value)}
    return {}


class User(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, Audited, Base):
    __tablename__ = "user"
    __table_args__ = (
        CheckConstraint("failed_login_count >= 0", name="failed_login_count"),
        Index("ix_user_created_at", "created_at"),  # sign-ups per period (reports)
        TABLE_OPTIONS,
    )
    # Both change at every login; the login.* events tell that story better than a diff would.
    __audit_exclude__ = frozenset({"failed_login_count", "last_login_at"})

    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    username: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    username_key: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX_LENGTH))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_verified: Mapped[bool] = mapped_column(default=False)
    must_change_password: Mapped[bool] = mapped_column(default=False)
    last_login_at: Mapped[dt.datetime | None]
    failed_login_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    password_changed_at: Mapped[dt.datetime | None]
    # None: no password (an invited user); nothing signs in until one is set through a password reset.
    password_hash: Mapped[str | None] = mapped_column(String(255), info={"secret": True})

    def is_locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    @validates(*FIELD_CHECKS)
    def _check(self, key: str, value: Any) -> Any:
        checked = FIELD_CHECKS[key](value)
        derived = derived_fields(key, checked)
        if "email_key" in derived and self.email_key is not None and self.email_key != derived["email_key"]:
            self.is_verified = False  # a new address is unproven until a verify_email token comes back
        for name, derived_value in derived.items():
            setattr(self, name, derived_value)
        return checked


def _refuse_lookalike(field: str, value: str) -> None:
    """Text built to pass for another address or name is refused (``db.lookalikes``: the policy and its reasons)."""
    problem = lookalike_problem(value)
    if problem is not None:
        rule, reason = problem
        raise ValidationError(f"user.{field} {reason}: it could pass for another {field}", field=field, rule=rule)


def _too_long(value: str, limit: int) -> bool:
    return len(value.strip()) > limit or len(normalise(value)) > limit  # NFKC can lengthen a string


def _has_control(value: str) -> bool:
    """Controls, and the bidirectional embeddings, overrides and isolates that reorder what follows them."""
    return any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in value)


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _is_zone(name: str) -> bool:
    if _zones():
        return name in _zones()
    try:  # no zone list on this system (no tzdata): ask zoneinfo directly
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


__all__ = [
    "DISPLAY_NAME_MAX_LENGTH", "EMAIL_MAX_LENGTH", "EMAIL_PATTERN", "FIELD_CHECKS", "USERNAME_MAX_LENGTH",
    "User", "check_email", "check_username", "derived_fields", "email_key", "normalise",
]

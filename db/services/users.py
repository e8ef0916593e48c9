"""``UserService`` (``uow.users``): users, their passwords, logins, lockout and single-use tokens.

    with database.unit_of_work() as uow:
        ada = uow.users.create(email="Ada@example.com", password=secret, display_name="Ada")
        raw = uow.users.issue_token(ada, "verify_email")           # mail it; only its SHA-256 is stored
    with database.unit_of_work() as uow:
        user = uow.users.authenticate("ada@example.com", secret)    # AuthenticationError if refused

**Logins.** Unknown email, wrong password, inactive user, locked user and user without a password all raise the
same ``AuthenticationError`` with the same message, and each spends one password verification's time
(``db.passwords.verify_evenly``; a dummy hash where there is nothing to verify), so neither the answer nor its
timing tells which. ``Settings.lockout_threshold`` consecutive wrong passwords lock the account for
``lockout_period``; while locked, even the right password is refused and attempts do not count; the first failure
after the lock has expired starts a new count. A success resets the count, records ``last_login_at`` and
re-hashes a password stored with out-of-date argon2 parameters.

**Attempts are counted before the password is verified, in transactions of their own** (``db.logins``): at most
``lockout_threshold`` wrong passwords are ever verified between two successes, however many logins race, a lock
once decided is never undone by a racing success, argon2 never runs under a lock, and the count survives the
rollback of the unit of work around ``authenticate`` (which raises). The natural code is therefore correct:

    try:
        with database.unit_of_work() as uow:
            user = uow.users.authenticate(email, password)
    except AuthenticationError:
        ...  # the failure is counted and logged; anything else the block wrote is rolled back

Call ``authenticate`` before the unit of work writes anything: in a transaction that has already written, the
attempt is counted in that transaction (and made again after a rollback), and verified under its locks.

Login bookkeeping (count, lock, last login, re-hash) is written by an UPDATE that leaves ``version`` and
``updated_at`` alone: a login never makes an administrator's pending edit of the user stale.

**Tokens** (``verify_email``, ``password_reset``): 256 random bits from ``secrets.token_urlsafe(32)``, returned
once; only the SHA-256 is stored. Issuing one revokes the user's older unused tokens of that purpose. Consuming is
one conditional UPDATE (unused, unrevoked, unexpired), so of two concurrent consumers exactly one succeeds.
Unknown, expired, used, revoked and wrong-purpose tokens all raise the same ``TokenError``.

Emails are unique case-insensitively (``db.models.user``). Writes that would bypass the normalisation or the
hashing are refused: ``password_hash`` and the ``*_key`` columns cannot be set directly, and there is no
``upsert`` or ``get_or_create`` (use ``get_by_email`` and ``create``). The rows themselves are written by
``UserRepository`` and ``UserTokenRepository``.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

from db import audit, logins, passwords
from db.errors import AuthenticationError, Conflict, StaleVersion, TokenError, ValidationError
from db.models.base import utcnow
from db.models.user import FIELD_CHECKS, User, email_key, normalise
from db.models.user_token import PASSWORD_RESET, TOKEN_PURPOSES, VERIFY_EMAIL, UserToken, token_digest
from db.repositories.base_repository import translated
from db.repositories.user_repository import UserRepository
from db.repositories.user_token_repository import UserTokenRepository
from db.services.base import EntityService
from db.settings import Settings

UserRef = User | uuid.UUID | str
T = TypeVar("T")

PROFILE_FIELDS = frozenset({"display_name", "locale", "timezone", "username"})
STATUS_FIELDS = frozenset({"is_active", "is_verified", "must_change_password"})
CREATE_FIELDS = PROFILE_FIELDS | STATUS_FIELDS
UPDATE_FIELDS = CREATE_FIELDS | {"email", "failed_login_count", "locked_until"}
BULK_UPDATE_FIELDS = (PROFILE_FIELDS - {"username"}) | STATUS_FIELDS
MAX_TOKEN_LENGTH = 256


class UserService(EntityService[User]):
    entity = "user"  # what a translated driver error names

    @functools.cached_property
    def repository(self) -> UserRepository:
        return UserRepository(self.session)

    @functools.cached_property
    def _tokens(self) -> UserTokenRepository:
        return UserTokenRepository(self.session)

    # --- users -----------------------------------------------------------------------------------------------

    @translated
    def create(self, *, email: str, password: str | None, **profile: Any) -> User:
        """A new user. ``password`` must pass the policy (``None``: no password until a reset sets one).

        ``profile``: ``display_name``, ``locale``, ``timezone``, ``username``, ``is_active``, ``is_verified``,
        ``must_change_password``. An email (or username) already taken, in any case, is a ``Conflict``.
        """
        fields = self._new_user_fields({"email": email, "password": password, **profile})
        if self.repository.key_taken("email", email_key(fields["email"])):
            raise _already_exists("email")
        if fields.get("username") and self.repository.key_taken("username", normalise(fields["username"])):
            raise _already_exists("username")
        return _unique(lambda: self.repository.create(**fields))

    @overload
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[False] = False) -> int: ...
    @overload
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[True]) -> list[User]: ...

    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: bool = False) -> int | list[User]:
        """Rows as ``create`` takes them (``email``, ``password``, profile), checked and hashed one by one."""
        prepared = (self._new_user_fields(row) for row in rows)
        if returning:
            return _unique(lambda: self.repository.create_many(prepared, returning=True))
        return _unique(lambda: self.repository.create_many(prepared))

    def get_by_email(self, email: str) -> User | None:
        """The (not deleted) user with this address, in any case and Unicode form; None if there is none."""
        return self.repository.get_by_email(email)

    def get_by_username(self, username: str) -> User | None:
        return self.repository.get_by_username(username)

    @translated
    def update(self, instance_or_id: Any, **fields: Any) -> User:
        """Change profile, status or email; never the password (``change_password``).

        A new email address is unverified, and the user's outstanding tokens (mailed to the old address) are
        revoked.
        """
        _check_allowed(fields, UPDATE_FIELDS | {"version"})
        user = self.repository.resolve(instance_or_id)
        new_key = email_key(FIELD_CHECKS["email"](fields["email"])) if "email" in fields else user.email_key
        if new_key != user.email_key and self.repository.key_taken("email", new_key, but=user.id):
            raise _already_exists("email")
        moving = new_key != user.email_key
        updated = _unique(lambda: self.repository.update(user, **fields))
        if moving:
            self._revoke(user.id, None)
        return updated

    def update_profile(self, user: UserRef, **fields: Any) -> User:
        """Change ``display_name``, ``locale``, ``timezone`` or ``username``; any other field is refused."""
        _check_allowed(fields, PROFILE_FIELDS)
        return self.update(user, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        """Bulk changes of display name, locale, time zone and status flags only."""
        _check_allowed(fields, BULK_UPDATE_FIELDS)
        return self.repository.update_many(filters, **_checked(fields))

    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        """Soft-delete the user (``hard``: remove the row). A soft-deleted user keeps the address until purged."""
        self.repository.delete(instance_or_id, hard=hard)

    def set_active(self, user: UserRef, active: bool) -> User:
        return self.update(user, is_active=active)

    def unlock(self, user: UserRef) -> User:
        """Lift a lockout now and forget the failed attempts."""
        return self.update(user, failed_login_count=0, locked_until=None)

    # --- passwords and logins -----------------------------------------------------------------------------

    @translated
    def authenticate(self, email: str, password: str) -> User:
        """The user with this email and password; ``AuthenticationError`` otherwise (see the module docstring)."""
        criterion = User.email_key == email_key(email) if isinstance(email, str) else None
        user = logins.check(self.session, criterion, password, self.settings, login=True)
        if user is None:
            raise AuthenticationError()
        return user

    @translated
    def change_password(self, user: UserRef, old_password: str, new_password: str) -> User:
        """Set a new password after checking the current one (a wrong one counts as a failed login).

        Outstanding password-reset tokens are revoked.
        """
        user_id = user.id if isinstance(user, User) else self.repository.resolve(user).id
        found = logins.check(self.session, User.id == user_id, old_password, self.settings, login=False)
        if found is None:
            raise AuthenticationError()
        passwords.check_password(new_password, self.settings, email=found.email)
        if _same_password(old_password, new_password):
            raise ValidationError("the new password must differ from the current one", field="password",
                                  rule="unchanged")
        return self._set_password(found, passwords.hash_password(new_password, self.settings), via="change")

    @translated
    def reset_password(self, raw_token: str, new_password: str) -> User:
        """Consume a ``password_reset`` token and set the password; unlocks the user, revokes other reset tokens.

        A password refused by the policy raises before the token is used, so the user can try another.
        """
        owner = self._token_owner(raw_token, PASSWORD_RESET)
        if owner is None:
            raise TokenError()
        passwords.check_password(new_password, self.settings, email=owner.email)
        new_hash = passwords.hash_password(new_password, self.settings)  # before any write: no lock held meanwhile
        user = self.consume_token(raw_token, PASSWORD_RESET)
        return self._set_password(user, new_hash, via="reset")

    @translated
    def require_password_reset(self, user: UserRef) -> str:
        """Mark the user as having to change their password and issue a fresh reset token (returned raw, once)."""
        found = self.repository.update(self.repository.resolve(user), must_change_password=True)
        return self.issue_token(found, PASSWORD_RESET)

    def _set_password(self, user: User, password_hash: str, *, via: str) -> User:
        now = utcnow()
        self.repository.update(
            user, password_hash=password_hash, password_changed_at=now,
            must_change_password=False, failed_login_count=0, locked_until=None,
        )
        self._revoke(user.id, PASSWORD_RESET)
        audit.record_event(self.session, "password.changed", entity_type="user", entity_id=user.id,
                           user_id=user.id, data={"via": via})
        return user

    # --- tokens ----------------------------------------------------------------------------------------------

    @translated
    def issue_token(self, user: UserRef, purpose: str) -> str:
        """A new single-use token for ``purpose``, returned raw (only now); older unused ones are revoked."""
        ttl = _ttl(self.settings, purpose)
        found = self.repository.resolve(user)
        self._revoke(found.id, purpose)
        raw = secrets.token_urlsafe(32)
        token = self._tokens.add(user_id=found.id, purpose=purpose, token_hash=token_digest(raw),
                                 expires_at=utcnow() + ttl)
        audit.record_event(self.session, "token.issued", entity_type="user_token", entity_id=token.id,
                           user_id=found.id, data={"purpose": purpose, "expires_at": token.expires_at.isoformat()})
        return raw

    @translated
    def consume_token(self, raw_token: str, purpose: str) -> User:
        """The token's user, marking the token used; ``TokenError`` if it is not a live token of ``purpose``.

        Consuming a ``verify_email`` token marks the user verified.
        """
        _ttl(self.settings, purpose)
        if not _plausible_token(raw_token):
            raise TokenError()
        token = self._tokens.claim(token_digest(raw_token), purpose)
        if token is None:
            raise TokenError()
        user = self.get_by_id(token.user_id)
        if user is None:
            raise TokenError()
        if purpose == VERIFY_EMAIL and not user.is_verified:
            self.repository.update(user, is_verified=True)
        audit.record_event(self.session, "token.consumed", entity_type="user_token", entity_id=token.id,
                           user_id=user.id, data={"purpose": purpose})
        return user

    @translated
    def revoke_tokens(self, user: UserRef, purpose: str | None = None) -> int:
        """Revoke the user's outstanding tokens (of ``purpose``, or all); returns how many."""
        if purpose is not None:
            _ttl(self.settings, purpose)
        return self._revoke(self.repository.resolve(user).id, purpose)

    def stale_tokens(self, before: dt.datetime) -> Sequence[UserToken]:
        """Tokens that expired, were used or were revoked before ``before`` (a retention cutoff), oldest first."""
        return self._tokens.stale(before)

    @translated
    def delete_tokens(self, ids: Iterable[uuid.UUID]) -> int:
        """Remove these tokens for good (retention); returns how many went. Recorded as one ``token.purged`` event."""
        count = self._tokens.delete_ids(ids)
        if count:
            audit.record_event(self.session, "token.purged", entity_type="user_token", data={"count": count})
        return count

    def _revoke(self, user_id: uuid.UUID, purpose: str | None) -> int:
        count = self._tokens.revoke_outstanding(user_id, purpose)
        if count:
            audit.record_event(self.session, "token.revoked", entity_type="user", entity_id=user_id,
                               user_id=user_id, data={"purpose": purpose, "count": count})
        return count

    def _token_owner(self, raw_token: str, purpose: str) -> User | None:
        if not _plausible_token(raw_token):
            return None
        user_id = self._tokens.owner_id(token_digest(raw_token), purpose)
        return None if user_id is None else self.get_by_id(user_id)

    # --- helpers ---------------------------------------------------------------------------------------------

    def _new_user_fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A new user's columns from ``email``, ``password`` and profile: checked and hashed (the repository derives
        the normalised keys)."""
        fields = dict(row)
        if "email" not in fields:
            raise ValidationError("user.email is required", field="email", rule="required")
        password = fields.pop("password", None)
        _check_allowed(fields, CREATE_FIELDS | {"email"})
        fields = _checked(fields)
        if password is not None:
            passwords.check_password(password, self.settings, email=fields["email"])
            fields["password_hash"] = passwords.hash_password(password, self.settings)
            fields["password_changed_at"] = utcnow()
        return fields


def _unique(write: Callable[[], T]) -> T:
    """Run ``write``; a unique violation on email or username (a concurrent insert) names the field."""
    try:
        return write()
    except Conflict as error:
        if isinstance(error, StaleVersion):
            raise
        for field in ("email", "username"):
            if f"{field}_key" in (error.constraint or str(error)):
                raise _already_exists(field) from None
        raise


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` through the model's checks, as an ORM write would put them (bulk writes bypass the model)."""
    return {key: FIELD_CHECKS[key](value) if key in FIELD_CHECKS else value for key, value in fields.items()}


def _check_allowed(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in fields:
        if key not in allowed:
            name = str(key)[:64]
            raise ValidationError(f"user.{name} cannot be set here", field=name, rule="not_allowed")


def _already_exists(field: str) -> Conflict:
    return Conflict(f"user.{field} already exists", entity="user", constraint=f"uq_user_{field}_key")


def _ttl(settings: Settings, purpose: str) -> dt.timedelta:
    if purpose not in TOKEN_PURPOSES or purpose not in settings.token_ttl:
        raise ValidationError(f"user_token.purpose must be one of {', '.join(sorted(TOKEN_PURPOSES))}",
                              field="purpose", rule="unknown")
    return settings.token_ttl[purpose]


def _plausible_token(raw_token: Any) -> bool:
    """Tokens are URL-safe base64 (``secrets.token_urlsafe``): anything else, a lone surrogate included, is no token."""
    return isinstance(raw_token, str) and 0 < len(raw_token) <= MAX_TOKEN_LENGTH and raw_token.isascii()


def _same_password(old: str, new: str) -> bool:
    return unicodedata.normalize("NFKC", old) == unicodedata.normalize("NFKC", new)


__all__ = ["PROFILE_FIELDS", "UserService"]

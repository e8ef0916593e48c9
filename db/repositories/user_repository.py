"""``UserRepository``: data access for users (rows as columns; the rules are ``UserService``'s).

Everything it writes is taken as given: ``UserService`` (``db.services.users``) checks the fields, hashes the
password, refuses taken addresses and records the events before it calls ``create`` or ``update`` here, and the
sample generator writes rows it made itself (``password_hash`` included). Users are never upserted, so the
repository offers neither ``upsert`` nor ``get_or_create`` (``WriteRepository``).

**The normalised keys are derived here, on every write.** ``email_key`` and ``username_key`` carry the UNIQUE
constraints that make ``Ada@Example.com`` and ``ada@example.com`` one user (``db.models.user``): a key out of step
with its column would let two rows hold one address, so keeping them in step is a data invariant, not a business
rule. The model derives them itself on ORM writes, but the bulk writes (``create_many``, ``update_many``) bypass
it; so ``create``, ``create_many``, ``update`` and ``update_many`` all derive them here (well under a microsecond a
row) and refuse them as input: nothing written through this repository can put a key out of step with its column.
The field checks (format, look-alikes) are not repeated here: the model runs them on ORM writes, and
``UserService`` on the rows it hands to the bulk writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal, cast

from sqlalchemy import select

from db.errors import ValidationError
from db.models.user import User, derived_fields, email_key, normalise
from db.repositories.base_repository import WriteRepository, translated

KEY_COLUMNS = {"email_key": "email", "username_key": "username"}  # derived column: the column it follows


class UserRepository(WriteRepository[User]):
    model = User
    filterable = frozenset({
        "id", "email", "email_key", "username", "username_key", "display_name", "locale", "timezone",
        "is_active", "is_verified", "must_change_password", "failed_login_count", "locked_until",
        "last_login_at", "password_changed_at", "created_at", "updated_at",
    })
    sortable = frozenset({
        "id", "email_key", "username_key", "display_name", "created_at", "updated_at", "last_login_at",
    })

    # --- writes: the columns as given, with the normalised keys derived -----------------------------------

    def create(self, **fields: Any) -> User:
        return super().create(**_with_keys(fields))

    def _prepared(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        return _with_keys(row)

    def update(self, instance_or_id: Any, **fields: Any) -> User:
        return super().update(instance_or_id, **_with_keys(fields))

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        return super().update_many(filters, **_with_keys(fields))

    # --- queries -------------------------------------------------------------------------------------------

    @translated
    def get_by_email(self, email: str) -> User | None:
        """The (not deleted) user with this address, in any case and Unicode form; None if there is none."""
        if not isinstance(email, str):
            return None
        return self._by_key(User.email_key, email_key(email))

    @translated
    def get_by_username(self, username: str) -> User | None:
        if not isinstance(username, str):
            return None
        return self._by_key(User.username_key, normalise(username))

    @translated
    def key_taken(self, field: Literal["email", "username"], key: str, *, but: uuid.UUID | None = None) -> bool:
        """Whether a user other than ``but`` holds this normalised email or username, soft-deleted users included
        (they keep their keys until purged)."""
        column = User.email_key if field == "email" else User.username_key
        statement = select(User.id).where(column == key)
        if but is not None:
            statement = statement.where(User.id != but)
        return self.session.scalar(statement.limit(1)) is not None

    def resolve(self, user: User | uuid.UUID | str) -> User:
        """The (not deleted) user given, or with this id; ``NotFound`` otherwise."""
        return cast(User, self._resolve(user))

    def _by_key(self, column: Any, key: str) -> User | None:
        statement = select(User).where(column == key, User.deleted_at.is_(None))
        return self.session.scalars(statement).first()


def _with_keys(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with the keys derived from ``email`` and ``username`` (after them: the model's own derivation,
    which also marks a moved address unverified, runs first on an ORM update); given keys are refused."""
    for key, column in KEY_COLUMNS.items():
        if key in fields:
            raise ValidationError(f"user.{key} cannot be set: it follows user.{column}", field=key,
                                  rule="not_allowed")
    derived: dict[str, Any] = {}
    for column in KEY_COLUMNS.values():
        if column in fields and _derivable(column, fields[column]):
            derived.update(derived_fields(column, fields[column]))
    return {**fields, **derived}


def _derivable(column: str, value: Any) -> bool:
    """A value the key can be derived from; anything else is left for the column's own checks to refuse."""
    return isinstance(value, str) or (value is None and column == "username")


__all__ = ["UserRepository"]

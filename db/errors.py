"""The errors a caller of the database layer sees.

Every repository method raises these and never a raw driver exception. Messages name the entity and the
field or constraint; they never carry a value that could be a secret (a password, a token, a hash).
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error raised by the database layer."""


class NotFound(DatabaseError):
    """The entity asked for does not exist (or is soft-deleted)."""

    def __init__(self, entity: str, ident: object) -> None:
        super().__init__(f"{entity} {ident} not found")
        self.entity = entity
        self.ident = ident


class Conflict(DatabaseError):
    """A unique or foreign-key constraint, or a domain invariant, refused the change."""

    def __init__(self, message: str, *, entity: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message)
        self.entity = entity
        self.constraint = constraint


class StaleVersion(Conflict):
    """An optimistic-locking check failed: somebody else changed the row since it was read."""

    def __init__(self, entity: str, ident: object) -> None:
        super().__init__(
            f"{entity} {ident} was changed by another transaction; reload it and try again", entity=entity
        )
        self.ident = ident


class AuditTampered(Conflict):
    """The audit log holds a row its hash chain does not account for (someone wrote to it past the layer), and an
    audited write ran into it: nothing was written. ``python -m db audit verify`` names the row."""

    def __init__(self, message: str) -> None:
        super().__init__(message, entity="audit_entry")


class AuditKeyError(DatabaseError):
    """The audit chain is keyed (HMAC) with a key this Database does not have (``DBLAYER_AUDIT_KEY`` unset or
    different): an audited write would break the chain, so nothing was written. The message names key ids only."""


class InvalidFilter(DatabaseError):
    """A filter, sort key, operator, value or cursor was refused before any SQL ran."""


class ValidationError(DatabaseError):
    """A value does not satisfy a rule of the model (length, type, range, policy)."""

    def __init__(self, message: str, *, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class TransientError(DatabaseError):
    """A failure that may succeed when retried: serialization failure, deadlock, lock timeout, busy file."""


class SchemaMissing(DatabaseError):
    """A table or column a statement needs does not exist: the database was never migrated, or is behind the code."""


class DiskFull(DatabaseError):
    """The disk that holds the database, the file storage or a backup is full: nothing was written (free space and
    try again)."""


class StorageMismatch(DatabaseError):
    """The file storage root is bound to another database (or may serve one): nothing was read, stored or removed
    there. ``root`` is the storage, ``database_id`` this database's identity, ``bound_to`` the identity the root's
    marker names (None: the root has no marker)."""

    def __init__(self, message: str, *, root: str, database_id: object = None, bound_to: object = None) -> None:
        super().__init__(message)
        self.root = root
        self.database_id = database_id
        self.bound_to = bound_to


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached or opened."""


class AuthenticationError(DatabaseError):
    """Login failed. One message for every reason (unknown email, wrong password, inactive, locked)."""

    def __init__(self, message: str = "invalid email or password") -> None:
        super().__init__(message)


class PermissionDenied(DatabaseError):
    """The unit of work's actor lacks the permission a privileged operation requires; nothing was written."""

    def __init__(self, permission: str, actor: object = None) -> None:
        who = "anonymous actor" if actor is None else f"actor {actor}"
        super().__init__(f"{who} lacks permission {permission!r}")
        self.permission = permission


class QuotaExceeded(DatabaseError):
    """Storing a file would take an account past its storage quota; nothing was stored."""

    def __init__(self, account_id: object, *, quota: int, used: int, size: int) -> None:
        super().__init__(
            f"account {account_id}: a file of {size} bytes exceeds the storage quota ({used} of {quota} bytes used)"
        )
        self.account_id = account_id
        self.quota = quota
        self.used = used
        self.size = size


class TokenError(DatabaseError):
    """A token is unknown, expired, already used or revoked. One message for every reason."""

    def __init__(self, message: str = "invalid or expired token") -> None:
        super().__init__(message)


class BackupError(DatabaseError):
    """A backup could not be made, or an archive is unusable: corrupt, truncated, unsafe or not a backup."""


class ConfirmationRequired(DatabaseError):
    """A destructive operation (a restore over existing data) needs an explicit confirmation or ``--yes``."""


class CheckFailed(DatabaseError):
    """An integrity check found a problem (the report lists each one)."""


__all__ = [
    "AuditKeyError",
    "AuditTampered",
    "AuthenticationError",
    "BackupError",
    "CheckFailed",
    "ConfirmationRequired",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "DiskFull",
    "InvalidFilter",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "SchemaMissing",
    "StaleVersion",
    "StorageMismatch",
    "TokenError",
    "TransientError",
    "ValidationError",
]

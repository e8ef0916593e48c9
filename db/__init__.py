"""A database layer for Python applications: SQLAlchemy 2, repositories, units of work, migrations.

    from db import Database
    database = Database()                      # DATABASE_URL, else the SQLite file db/data/app.db
    with database.unit_of_work() as uow:
        ...                                    # commit on success, rollback on an exception
"""

from db.errors import (
    AuditKeyError,
    AuditTampered,
    AuthenticationError,
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    DiskFull,
    InvalidFilter,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    SchemaMissing,
    StaleVersion,
    StorageMismatch,
    TokenError,
    TransientError,
    ValidationError,
)
from db.repositories import BaseRepository, Page
from db.session import Database, UnitOfWork

__all__ = [
    "AuditKeyError",
    "AuditTampered",
    "AuthenticationError",
    "BaseRepository",
    "Conflict",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "DiskFull",
    "InvalidFilter",
    "NotFound",
    "Page",
    "PermissionDenied",
    "QuotaExceeded",
    "SchemaMissing",
    "StaleVersion",
    "StorageMismatch",
    "TokenError",
    "TransientError",
    "UnitOfWork",
    "ValidationError",
]
